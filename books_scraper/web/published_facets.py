"""The books table's facets over the whole table, read from the counts its publication stored.

A Datasette column facet counts the rows of the page's query by value. Over a million books the
default facets, category_id and rating, cost ~135 ms each (a scan of a covering index); on the first
view after a start, with SQLite's page cache cold, both passed facet_time_limit_ms and the page said
"These facets timed out". Over the whole table those counts are known since publication:
aggregates.RATING_FIGURES holds the books of each (category, rating), both NOT NULL columns.

So metadata.yml gives the books table's facets the type `published`, which this class answers:
- when the page shows the whole table (its query is Datasette's unfiltered select of the table,
  with no parameters): from the stored counts, one query over a few hundred rows;
- otherwise (a filter, a search, a later page; Datasette 0.65 counts a later page's facets over
  the rows after its cursor) exactly as Datasette's column facet does, by counting the query's rows.

Either way the answer is a column facet's: the same fields, `"type": "column"`, the same order
(count descending, then value), labels and links. Should Datasette's unfiltered query change
shape, every page takes the second way: slower, never wrong (tests/test_published_facets.py).
"""

from __future__ import annotations

from datasette.facets import ColumnFacet
from datasette.utils import escape_sqlite, path_with_added_args, path_with_removed_args

from books_scraper.aggregates import RATING_FIGURES
from books_scraper.web.served_metadata import BOOKS_DATABASE

TABLE = "books"
# Per column: (value, count) of every book, from what the publication counted.
PUBLISHED_COUNTS = {
    column: f"select {column} as value, sum(books) as count from {RATING_FIGURES} group by {column}"
    for column in ("category_id", "rating")
}


class PublishedFacet(ColumnFacet):
    """A column facet of the books table whose whole-table counts were stored at publication."""

    type = "published"

    async def suggest(self) -> list:
        return []  # Datasette's column facet suggests columns already

    async def facet_results(self) -> tuple[list[dict], list[str]]:
        configs = self.get_configs()
        if not configs:  # every page of every table makes one of these: most have none to answer
            return [], []
        if await self.whole_table(configs):
            results, timed_out = [await self.published(entry) for entry in configs], []
        else:
            results, timed_out = await super().facet_results()
        for result in results:
            result["type"] = ColumnFacet.type
        return results, timed_out

    async def whole_table(self, configs: list[dict]) -> bool:
        """Whether the page's query is Datasette's select of every row of the books table, and
        every facet asked for (configs) has stored counts."""
        if (self.database, self.table) != (BOOKS_DATABASE, TABLE) or self.params:
            return False
        if any(facet_column(entry) not in PUBLISHED_COUNTS for entry in configs):
            return False
        columns = await self.ds.get_database(self.database).table_columns(self.table)
        every_row = f"select {', '.join(escape_sqlite(c) for c in columns)} from {escape_sqlite(self.table)} "
        return self.sql == every_row

    async def published(self, entry: dict) -> dict:
        """One facet's result, as ColumnFacet.facet_results builds it, from the stored counts."""
        column, size = facet_column(entry), self.get_facet_size()
        sql = f"select * from ({PUBLISHED_COUNTS[column]}) order by count desc, value limit {size + 1}"
        rows = (await self.ds.execute(self.database, sql)).rows
        shown = rows[:size]
        labels = await self.ds.expand_foreign_keys(self.database, self.table, column, [r["value"] for r in shown])
        argument = f"{column}__exact" if column.startswith("_") else column
        return {
            "name": column,
            "type": self.type,
            "hideable": entry["source"] != "metadata",
            "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {f"_facet_{self.type}": column})),
            "results": [
                {
                    "value": row["value"],
                    "label": labels.get((column, row["value"]), row["value"]),
                    "count": row["count"],
                    "toggle_url": self.ds.absolute_url(
                        self.request, self.ds.urls.path(path_with_added_args(self.request, {argument: row["value"]}))
                    ),
                    "selected": False,  # a selected value is a filter: not the whole table
                }
                for row in shown
            ],
            "truncated": len(rows) > size,
        }


def facet_column(entry: dict) -> str:
    """The column of a facet (an entry of get_configs: its source and its config, {"simple": column}
    or {"column": column})."""
    return entry["config"].get("column") or entry["config"]["simple"]
