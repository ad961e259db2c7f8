"""The publication in a real headless Chromium, against the real `python -m books_scraper.serve`."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browsing import BROWSER_TEST, TIMEOUT_MS
from playwright.sync_api import expect
from serving import ServeProcess, load_metadata
from support import query

from books_scraper.web.served_metadata import PUBLIC_SETTINGS

pytestmark = BROWSER_TEST


def rows(path: Path, sql: str) -> list[tuple]:
    return [tuple(row.values()) for row in query(path, sql)]


@pytest.fixture(scope="module")
def served(published_db, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with ServeProcess(published_db.path, published_db.operations_path, log) as server:
        yield server


@pytest.fixture
def page(browser, served):
    """A fresh page that records script errors, CSP refusals and every host it talks to."""
    context = browser.new_context(base_url=served.url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.errors, page.hosts = [], set()
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # The Content-Security-Policy must let every page work: a refused script or style is logged here.
    page.on("console", lambda message: page.errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("request", lambda request: page.hosts.add(urlsplit(request.url).netloc))
    yield page
    context.close()
    assert page.errors == []
    assert page.hosts <= {urlsplit(served.url).netloc}


def test_home_page(page):
    page.goto("/")
    assert page.title().startswith(load_metadata()["title"])
    assert page.locator("a[href='/books']").first.is_visible()
    assert page.locator("a[href='/-/dashboards']").count() == 1  # the plugin's menu entry


def test_books_table_and_category_facet(page, published_db):
    total = rows(published_db.path, "select count(*) from books")[0][0]
    page.goto("/books/books")
    assert page.locator("h3").first.inner_text().startswith(f"{total:,} rows")

    name, category_id, count = rows(
        published_db.path,
        "select c.name, c.id, count(*) from books b join categories c on c.id = b.category_id "
        "group by c.id order by count(*) desc, c.name limit 1 offset 1",
    )[0]
    page.locator("#facet-category_id li a", has_text=name).first.click()
    page.wait_for_url(f"**category_id={category_id}**")
    assert page.locator("h3").first.inner_text().startswith(f'{count:,} row{"s" if count != 1 else ""} where category = "{name}"')
    expect(page.locator("#facet-category_id .facet-info-name strong")).to_contain_text("category")
    expect(page.locator("#facet-category_id .facet-info-name strong")).not_to_contain_text("category_id")
    titles = page.locator("table.rows-and-columns td.col-title").all_inner_texts()
    assert len(titles) == min(count, 100)


def test_search_for_a_title(page, published_db):
    title = published_db.plain_title()
    page.goto("/books/books")
    page.fill("input[name=_search]", title)
    page.locator("input[name=_search]").press("Enter")
    page.wait_for_url("**_search=**")
    titles = page.locator("table.rows-and-columns td.col-title").all_inner_texts()
    assert title in [t.strip() for t in titles]


def test_run_sql_from_the_query_page(page, published_db):
    expected = rows(published_db.path, "select rating, count(*) from books group by rating order by rating")
    page.goto("/books")
    page.locator(".CodeMirror").click()  # Datasette 0.65's SQL editor is CodeMirror 5
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("select rating, count(*) as n from books group by rating order by rating")
    page.locator("input[type=submit][value='Run SQL']").click()
    page.wait_for_url("**sql=**")
    cells = page.locator("table.rows-and-columns tbody tr").all()
    shown = [tuple(int(td.inner_text()) for td in row.locator("td").all()) for row in cells]
    assert shown == expected


def test_follow_the_csv_link(page, published_db):
    total = rows(published_db.path, "select count(*) from books")[0][0]
    page.goto("/books/books")
    with page.expect_response(lambda response: ".csv" in response.url) as answer:
        page.locator("p.export-links a", has_text="CSV").first.click()
    response = answer.value
    assert response.status == 200
    table = list(csv.reader(io.StringIO(response.text())))
    assert table[0][:3] == ["id", "upc", "title"]
    # The link asks for one page of _size=max; streaming every row is the "advanced" option.
    assert len(table) - 1 == min(total, PUBLIC_SETTINGS["max_returned_rows"])


def test_dashboard_draws_its_charts(page, published_db):
    path = published_db.path
    total = rows(path, "select count(*) from books")[0][0]
    bars = {  # one bar per row each chart's query returns
        "books-per-category": rows(path, "select count(distinct category_id) from books")[0][0],
        "rating-distribution": rows(path, "select count(distinct rating) from books")[0][0],
        "price-histogram": rows(path, "select count(distinct cast(price / 5 as integer)) from books")[0][0],
        "average-price-by-rating": rows(path, "select count(distinct rating) from books")[0][0],
    }
    charts = load_metadata()["plugins"]["datasette-dashboards"]["books"]["charts"]
    assert {slug for slug, chart in charts.items() if chart["library"] == "vega-lite"} == set(bars)
    page.goto("/-/dashboards/books")
    for slug, count in bars.items():
        # Vega draws each bar as a path in the chart's SVG: drawn, with every bar, offline.
        expect(page.locator(f"#chart-{slug} svg.marks g.mark-rect path")).to_have_count(count)
        expect(page.locator(f"#chart-{slug} svg.marks g.mark-text.role-mark text")).to_have_count(0)  # no "no data"
    expect(page.locator("#chart-total-books p")).to_have_text(str(total))

    name, count = rows(
        path,
        "select c.name, count(*) from books b join categories c on c.id = b.category_id "
        "group by c.id order by count(*) desc, c.name limit 1",
    )[0]
    page.select_option("select[name=category]", name)
    page.locator("input[type=submit][value=Apply]").click()
    page.wait_for_url("**category=**")
    expect(page.locator("#chart-total-books p")).to_have_text(str(count))
    expect(page.locator("#chart-books-per-category svg.marks g.mark-rect path")).to_have_count(1)


def test_a_dashboard_filter_that_matches_nothing_says_so_in_every_chart(page):
    """Not bare axes: a bookmarked category the catalogue no longer has draws no bar and says why."""
    charts = load_metadata()["plugins"]["datasette-dashboards"]["books"]["charts"]
    drawn = [slug for slug, chart in charts.items() if chart["library"] == "vega-lite"]
    page.goto("/-/dashboards/books?category=No+such+category")
    expect(page.locator("#chart-total-books p")).to_have_text("0")
    for slug in drawn:
        expect(page.locator(f"#chart-{slug} svg.marks g.mark-text.role-mark text")).to_have_text("No data for these filters")
        expect(page.locator(f"#chart-{slug} svg.marks g.mark-rect path")).to_have_count(0)


def test_dashboard_category_filter_names_its_empty_choice(page, published_db):
    total = rows(published_db.path, "select count(*) from books")[0][0]
    page.goto("/-/dashboards/books")
    category = page.locator("select[name=category]")
    expect(category.locator("option:checked")).to_have_text("All categories")  # not a blank box
    name = rows(published_db.path, "select name from categories order by name limit 1")[0][0]
    category.select_option(name)
    page.locator("input[type=submit][value=Apply]").click()
    page.wait_for_url("**category=**")
    expect(category.locator("option:checked")).to_have_text(name)
    category.select_option(label="All categories")  # back to the whole catalogue
    page.locator("input[type=submit][value=Apply]").click()
    page.wait_for_url("**category=")
    expect(category.locator("option:checked")).to_have_text("All categories")
    expect(page.locator("#chart-total-books p")).to_have_text(str(total))


def test_operations_dashboard_draws_its_charts(page, published_db):
    ops = published_db.operations_path
    bars = {  # one bar per row each chart's query returns (the crawl journal of the session's crawl)
        "crawl-books": rows(ops, "select count(*) from crawl_runs")[0][0],
        "crawl-duration": rows(ops, "select count(*) from crawl_runs where finished_at is not null")[0][0],
        "crawl-drops": rows(ops, "select count(*) from crawl_runs r, json_each(coalesce(r.drops, '{}'))")[0][0],
        "predictions-per-model": rows(ops, "select count(distinct model) from predictions")[0][0],
        "model-mae": rows(ops, "select count(distinct model) from predictions")[0][0],
    }
    charts = load_metadata()["plugins"]["datasette-dashboards"]["operations"]["charts"]
    assert set(charts) == set(bars) and bars["crawl-books"] >= 1
    empty = {  # what a chart of no rows says instead (the session's crawl stored no predictions)
        "crawl-books": "No crawl recorded yet",
        "crawl-duration": "No finished crawl yet",
        "crawl-drops": "No book dropped by any crawl",
        "predictions-per-model": "No predictions stored yet",
        "model-mae": "No predictions scored yet",
    }
    assert any(count == 0 for count in bars.values()) and any(count > 0 for count in bars.values())
    page.goto("/-/dashboards/operations")
    for slug, count in bars.items():
        expect(page.locator(f"#chart-{slug} svg.marks")).to_have_count(1)  # drawn, even with no rows
        expect(page.locator(f"#chart-{slug} svg.marks g.mark-rect path")).to_have_count(count)
        said = page.locator(f"#chart-{slug} svg.marks g.mark-text.role-mark text")
        if count:
            expect(said).to_have_count(0)
        else:
            expect(said).to_have_text(empty[slug])


def test_the_books_table_shows_ten_rows_on_its_first_screen(browser, served, published_db):
    context = browser.new_context(base_url=served.url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto("/books/books")
    shown = page.locator("table.rows-and-columns tbody tr")
    boxes = [shown.nth(i).bounding_box() for i in range(min(shown.count(), 20))]
    visible = [box for box in boxes if box and box["y"] + box["height"] <= 1000]
    total = rows(published_db.path, "select count(*) from books")[0][0]
    assert len(visible) >= min(10, total)
    # The column descriptions are still there, folded until asked for.
    details = page.locator("details.column-descriptions")
    expect(details.locator("dt", has_text="price_incl_tax")).to_be_hidden()
    details.locator("summary").click()
    expect(details.locator("dt", has_text="price_incl_tax")).to_be_visible()
    context.close()
