"""Table pages name a labelled foreign key by its label: the category_id facet is headed "category",
?category_id=15 is described as 'category = "Poetry"' (web/facet_labels.py, web/templates/)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import datasette
import pytest
from serving import publication
from support import query

from books_scraper.web.facet_labels import exact_clause, relabeller
from books_scraper.web.worker import TEMPLATES


@pytest.fixture
def ds(published_db):
    return publication(published_db.path, published_db.operations_path)


def heading(page: str) -> str:
    """The table page's "N rows where ..." line, whitespace collapsed."""
    return " ".join(html.unescape(re.search(r"<h3>(.*?)</h3>", page, re.S).group(1)).split())


def title(page: str) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", page, re.S).group(1))


def facet_heading(page: str, column: str) -> str:
    block = re.search(rf'id="facet-{column}".*?<strong>(.*?)<span', page, re.S)
    return " ".join(block.group(1).split())


def a_category(path: Path) -> dict:
    return query(path, "select c.id, c.name, count(*) as books from books b join categories c "
                       "on c.id = b.category_id group by c.id order by books desc, c.name limit 1")[0]


@pytest.mark.parametrize("key", ["category_id", "category_id__exact"])
async def test_a_category_filter_is_described_by_its_name(ds, published_db, key):
    category = a_category(published_db.path)
    page = (await ds.client.get(f"/books/books?{key}={category['id']}")).text
    rows = f"{category['books']:,} row{'s' if category['books'] != 1 else ''}"
    assert heading(page).startswith(f'{rows} where category = "{category["name"]}"')
    assert f'where category = "{category["name"]}"' in title(page)
    assert "category_id =" not in heading(page) + title(page)


async def test_the_category_facet_is_headed_by_its_name(ds):
    page = (await ds.client.get("/books/books")).text
    assert facet_heading(page, "category_id") == "category"
    assert facet_heading(page, "rating") == "rating"
    assert 'data-column="category_id"' in page  # the facet's id and column stay the column's


async def test_other_filters_keep_their_wording(ds, published_db):
    category = a_category(published_db.path)
    page = (await ds.client.get(f"/books/books?category_id={category['id']}&rating=3")).text
    assert f'where category = "{category["name"]}" and rating = 3' in heading(page)


async def test_a_price_history_filter_names_the_book(ds, published_db):
    book = query(published_db.path, "select id, title from books order by id limit 1")[0]
    page = (await ds.client.get(f"/books/price_history?book_id={book['id']}")).text
    assert f'where book = "{book["title"]}"' in heading(page)


async def test_an_id_without_a_row_is_described_as_it_is(ds):
    page = (await ds.client.get("/books/books?category_id=999999")).text
    assert heading(page).startswith("0 rows where category_id = 999999")


async def test_json_keeps_datasettes_description(ds, published_db):
    category = a_category(published_db.path)
    data = (await ds.client.get(f"/books/books.json?category_id={category['id']}&_size=0")).json()
    assert data["human_description_en"].startswith(f"where category_id = {category['id']}")


@pytest.mark.parametrize("description,expected", [
    pytest.param("where category_id = 15", 'where category = "Poetry"', id="the-clause"),
    pytest.param("where category_id = 150", "where category_id = 150", id="not-a-longer-id"),
    pytest.param("where category_id = 15 and rating = 3", 'where category = "Poetry" and rating = 3',
                 id="beside-another-filter"),
])
def test_relabeller_replaces_whole_clauses(description, expected):
    describe = relabeller({exact_clause("category_id", "15"): exact_clause("category", "Poetry")})
    assert describe(description) == expected


def test_the_facet_template_is_datasettes_with_the_title_only():
    """web/templates/_facet_results.html is a copy: this fails when Datasette's own one changes."""
    ours = (TEMPLATES / "_facet_results.html").read_text(encoding="utf-8")
    upstream = (Path(datasette.__file__).parent / "templates" / "_facet_results.html").read_text(encoding="utf-8")
    ours = ours.split("\n", 1)[1]  # our comment line
    ours = ours.replace("{{ (facet_titles or {}).get(facet_info.name, facet_info.name) }}", "{{ facet_info.name }}")
    assert ours == upstream


def test_the_table_template_extends_datasettes():
    assert (TEMPLATES / "table.html").read_text(encoding="utf-8").startswith('{% extends "default:table.html" %}')
