"""The dashboard's category filter names its empty choice "All categories" (web/dashboard_filters.py);
the page in Chromium is checked in test_browser.py."""

from __future__ import annotations

import pytest
from serving import load_metadata, publication

from books_scraper.web.dashboard_filters import blank_labels, script_literal


@pytest.fixture
def ds(published_db):
    return publication(published_db.path, published_db.operations_path)


def test_the_books_dashboard_labels_its_category_filter():
    dashboard = load_metadata()["plugins"]["datasette-dashboards"]["books"]
    assert blank_labels(dashboard) == {"category": "All categories"}


@pytest.mark.parametrize("filters,expected", [
    pytest.param({}, {}, id="no-filters"),
    pytest.param({"q": {"type": "text"}}, {}, id="filter-without-label"),
    pytest.param({"q": {"type": "select", "blank_label": "Any"}}, {"q": "Any"}, id="labelled-filter"),
])
def test_blank_labels_come_from_the_filters_that_have_one(filters, expected):
    assert blank_labels({"filters": filters}) == expected


def test_a_label_cannot_close_the_script_element():
    literal = script_literal({"q": "</script><script>alert(1)</script><!--"})
    assert "<" not in literal and ">" not in literal


async def test_the_dashboard_page_carries_the_label(ds):
    response = await ds.client.get("/-/dashboards/books")
    assert response.status_code == 200
    assert '"All categories"' in response.text  # in the script that writes it into the empty option
    assert '<select id="category" name="category">' in response.text


@pytest.mark.parametrize("path", ["/-/dashboards/operations", "/-/dashboards", "/books/books"])
async def test_other_pages_do_not(ds, path):
    response = await ds.client.get(path)
    assert response.status_code == 200
    assert "All categories" not in response.text
