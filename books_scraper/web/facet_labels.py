"""A labelled foreign key is named by what it points at on the table pages: the facet on category_id
is headed "category", and ?category_id=15 is described as 'where category = "Poetry"', not by its id.

Datasette 0.65 heads a facet with its column's name and describes an exact filter with the raw value
(its filters.py: '{c} = {v}' for digits, else '{c} = "{v}"'). The extra_template_vars hook gives
table.html the facet titles and a function that rewrites that description; web/templates/table.html
(extending default:table.html) and web/templates/_facet_results.html use them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TABLE_TEMPLATE = "table.html"
EXACT_SUFFIX = "__exact"


def exact_clause(column: str, value: str) -> str:
    """An exact filter as Datasette 0.65 words it (filters.py, the "exact" filter's human template)."""
    return f"{column} = {value}" if value.isdigit() else f'{column} = "{value}"'


def title_for(column: str, other_table: str) -> str:
    """What a foreign-key column is called on the page: category_id -> category."""
    return column[: -len("_id")] if column.endswith("_id") and len(column) > 3 else other_table


def relabeller(replacements: dict[str, str]) -> Callable[[str], str]:
    """Replaces each whole clause (category_id = 15, not the start of category_id = 150)."""
    patterns = [(re.compile(re.escape(raw) + r"(?![\w\"])"), labelled) for raw, labelled in replacements.items()]

    def describe(description: str) -> str:
        for pattern, labelled in patterns:
            description = pattern.sub(lambda _: labelled, description)
        return description
    return describe


async def label_of(db, foreign_key: dict, label_column: str, value: str) -> str | None:
    sql = "select [{}] from [{}] where [{}] = :value limit 1".format(
        label_column, foreign_key["other_table"], foreign_key["other_column"]
    )
    row = (await db.execute(sql, {"value": value})).first()
    return None if row is None or row[0] is None else str(row[0])


async def facet_label_vars(datasette, database: str, table: str, request) -> dict[str, Any]:
    """facet_titles (column -> title) and describe_filters (the description with labels)."""
    db = datasette.get_database(database)
    titles: dict[str, str] = {}
    replacements: dict[str, str] = {}
    for foreign_key in await db.foreign_keys_for_table(table):
        label_column = await db.label_column_for_table(foreign_key["other_table"])
        if not label_column:
            continue
        column = foreign_key["column"]
        title = titles[column] = title_for(column, foreign_key["other_table"])
        for key in (column, column + EXACT_SUFFIX):
            for value in request.args.getlist(key) if request else []:
                label = await label_of(db, foreign_key, label_column, value)
                if label is not None:
                    replacements[exact_clause(column, value)] = exact_clause(title, label)
    return {"facet_titles": titles, "describe_filters": relabeller(replacements)}


async def table_page_vars(template: str, database, table, request, datasette) -> dict[str, Any]:
    if template != TABLE_TEMPLATE or not database or not table:
        return {}
    try:
        datasette.get_database(database)
    except KeyError:
        return {}
    return await facet_label_vars(datasette, database, table, request)
