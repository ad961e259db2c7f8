"""/api/v1/books*, /api/v1/categories: shapes, figures equal to the database's, keyset pages, capped
totals, the title index against Python's casefold, bad input (and a stopped query) as JSON 4xx/503."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import replace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlite_utils import Database
from api_support import assert_error, make_datasette, value
from conftest import PublishedDatabase
from support import query

from books_scraper import storage, title_search
from books_scraper.api import books, web
from books_scraper.api.errors import ApiError
from books_scraper.api.params import MAX_OFFSET, SORT_CHOICES, Cursor, Page, encode_cursor
from books_scraper.storage import BOOK_COLUMNS
from books_scraper.title_search import (
    FOLDED_TITLES, TITLE_INDEX, TITLE_TRIGRAMS, ensure_title_index, title_match,
)

BOOK_KEYS = set(BOOK_COLUMNS) | {"category", "category_slug"}
PAGE_KEYS = {"books", "total", "total_exact", "limit", "offset", "next"}


async def get_json(api, path):
    response = await api.client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def most_even_word(texts: list[str]) -> str:
    """The word of 4+ letters that splits these texts most evenly, found in some but not all if any:
    search terms drawn from the database itself, so the tests run on the real copy and a generated site."""
    counts = Counter(word for text in texts for word in set(re.findall(r"[a-z]{4,}", text.lower())))
    return min(counts, key=lambda word: (abs(counts[word] - len(texts) / 2), word))


def fragment(word: str) -> str:
    """The inside of a word, changed in case: a partial match that only case folding finds."""
    return word[1:-1].swapcase() if len(word) > 3 else word.swapcase()


async def test_list_pages_through_every_book_once(api, published_db):
    seen = []
    url = "/api/v1/books?limit=300"
    while url:
        page = await get_json(api, url.replace("http://localhost", ""))
        assert set(page) == PAGE_KEYS
        assert all(set(book) == BOOK_KEYS for book in page["books"])
        seen += [book["id"] for book in page["books"]]
        url = page["next"]
    expected = [r["id"] for r in query(published_db.path, "select id from books order by id")]
    assert seen == expected
    assert page["total"] == len(expected) and page["total_exact"] is True


async def test_list_filters_and_sort_match_sql(api, published_db):
    category = query(
        published_db.path,
        "select c.name from categories c join books b on b.category_id = c.id"
        " group by c.id order by count(*) desc limit 1",
    )[0]["name"]
    page = await get_json(
        api,
        f"/api/v1/books?category={category.upper()}&min_price=20&max_price=50&min_rating=3"
        "&in_stock=true&sort=-price&limit=1000",
    )
    expected = query(
        published_db.path,
        "select b.id from books b join categories c on c.id = b.category_id where c.name = ?"
        " and price between 20 and 50 and rating >= 3 and in_stock = 1 order by price desc, b.id desc",
        [category],
    )
    assert [b["id"] for b in page["books"]] == [r["id"] for r in expected]
    assert page["total"] == len(expected) > 0
    assert all(b["category"] == category for b in page["books"])


async def test_full_text_query_matches_fts(api, published_db):
    books = query(published_db.path, "select id, title, coalesce(description, '') as description from books")
    word = most_even_word([f"{b['title']} {b['description']}" for b in books])
    page = await get_json(api, f"/api/v1/books?q={word.upper()}&limit=1000&sort=id")
    expected = query(
        published_db.path,
        "select rowid as id from books_fts where books_fts match ? order by rowid",
        [f'"{word}"'],
    )
    assert [b["id"] for b in page["books"]] == [r["id"] for r in expected]
    assert 0 < page["total"] == len(expected) <= len(books)
    in_titles = {b["id"] for b in books if re.search(rf"\b{word}\b", b["title"], re.IGNORECASE)}
    assert in_titles <= {b["id"] for b in page["books"]}, word


async def test_book_columns_are_the_tables_and_the_api_answers_them(api, published_db):
    columns = [r["name"] for r in query(published_db.path, "pragma table_info(books)")]
    assert list(BOOK_COLUMNS) == columns
    book = await get_json(api, f"/api/v1/books/{value(published_db.path, 'select min(id) from books')}")
    assert list(book) == [*columns, "category", "category_slug"]
    document = await get_json(api, "/api/v1/openapi.json")
    assert set(document["components"]["schemas"]["Book"]["properties"]) == BOOK_KEYS


async def test_one_book_has_every_field_and_its_category(api, published_db):
    book_id = value(published_db.path, "select max(id) from books")
    book = await get_json(api, f"/api/v1/books/{book_id}")
    row = query(published_db.path, "select * from books where id = ?", [book_id])[0]
    category = query(published_db.path, "select * from categories where id = ?", [row["category_id"]])[0]
    assert book == {**row, "in_stock": bool(row["in_stock"]), "category": category["name"],
                    "category_slug": category["slug"]}


async def test_search_is_case_insensitive_and_partial(api, published_db):
    books = query(
        published_db.path,
        "select b.id, b.title, c.name as category from books b join categories c on c.id = b.category_id",
    )
    largest = Counter(b["category"] for b in books).most_common(1)[0][0]
    in_largest = [b for b in books if b["category"] == largest]
    title, category = fragment(most_even_word([b["title"] for b in in_largest])), fragment(largest)

    def matching(title=None, category=None):
        return sorted(
            b["id"] for b in books
            if (title is None or title.casefold() in b["title"].casefold())
            and (category is None or category.casefold() in b["category"].casefold())
        )

    both = await get_json(api, f"/api/v1/books/search?title={title}&category={category}&limit=1000")
    assert sorted(b["id"] for b in both["books"]) == matching(title, category)
    assert both["total"] == len(matching(title, category)) > 0, (title, category)
    title_only = await get_json(api, f"/api/v1/books/search?title={title}&limit=1000")
    assert sorted(b["id"] for b in title_only["books"]) == matching(title=title)
    category_only = await get_json(api, f"/api/v1/books/search?category={category}&limit=1000")
    assert sorted(b["id"] for b in category_only["books"]) == matching(category=category)


async def test_search_folds_case_beyond_ascii(api, published_db):
    titles = query(published_db.path, "select id, title from books")
    expected = sorted(r["id"] for r in titles if "café" in r["title"].casefold())
    for title in ("café", "CAFÉ", "Café"):
        page = await get_json(api, f"/api/v1/books/search?title={title}&limit=1000")
        assert sorted(b["id"] for b in page["books"]) == expected > [], title
    mystery = await get_json(api, "/api/v1/books/search?category=mystery&limit=1000")
    long_s = await get_json(api, "/api/v1/books/search?category=MYſTERY&limit=1000")  # ſ folds to s
    assert long_s["books"] == mystery["books"] and mystery["total"] > 0
    exact = await get_json(api, "/api/v1/books?category=MYſTERY&sort=title&limit=1000")
    assert exact["books"] == mystery["books"]


async def test_search_takes_like_wildcards_literally(api):
    page = await get_json(api, "/api/v1/books/search?title=%25%25%25")
    assert page["total"] == 0


async def test_top_rated(api, published_db):
    page = await get_json(api, "/api/v1/books/top-rated?limit=5")
    assert page["limit"] == 5 and len(page["books"]) == 5
    best = value(published_db.path, "select max(rating) from books")
    assert [b["rating"] for b in page["books"]] == [best] * 5
    assert page["total"] == value(published_db.path, "select count(*) from books")


async def test_price_range(api, published_db):
    page = await get_json(api, "/api/v1/books/price-range?min=10.5&max=20&limit=1000")
    expected = query(
        published_db.path, "select id from books where price between 10.5 and 20 order by price, id"
    )
    assert [b["id"] for b in page["books"]] == [r["id"] for r in expected]
    assert all(10.5 <= b["price"] <= 20 for b in page["books"])


# Every route that takes price bounds: its path and the names of its lower and upper bound.
PRICE_BOUNDS = [
    pytest.param("/api/v1/books", "min_price", "max_price", id="on-the-book-list"),
    pytest.param("/api/v1/books/price-range", "min", "max", id="on-the-price-range"),
]
PRICES = [
    pytest.param("min(price)", id="at-the-cheapest-price"),
    pytest.param("(select price from books order by price, id limit 1 offset (select count(*) / 2 from books))",
                 id="at-the-median-price"),
    pytest.param("max(price)", id="at-the-dearest-price"),
]


async def ids_priced(api, path, **bounds: float) -> list[int]:
    query_string = "".join(f"&{name}={price!r}" for name, price in bounds.items())
    page = await get_json(api, f"{path}?limit=1000{query_string}")
    assert page["total"] == len(page["books"])
    return sorted(b["id"] for b in page["books"])


@pytest.mark.parametrize("path,low,high", PRICE_BOUNDS)
@pytest.mark.parametrize("price_sql", PRICES)
async def test_both_bounds_at_a_books_price_return_the_books_at_that_price(
    api, published_db, path, low, high, price_sql
):
    price = value(published_db.path, f"select {price_sql} from books")
    at_price = [r["id"] for r in query(published_db.path, "select id from books where price = ? order by id", [price])]
    assert at_price and await ids_priced(api, path, **{low: price, high: price}) == at_price


@pytest.mark.parametrize("path,low,high", PRICE_BOUNDS)
async def test_each_bound_alone_takes_in_the_books_at_it(api, published_db, path, low, high):
    cheapest = value(published_db.path, "select min(price) from books")
    dearest = value(published_db.path, "select max(price) from books")
    everything = [r["id"] for r in query(published_db.path, "select id from books order by id")]
    assert await ids_priced(api, path, **{low: cheapest}) == everything
    assert await ids_priced(api, path, **{high: dearest}) == everything
    assert await ids_priced(api, path, **{low: cheapest, high: dearest}) == everything


async def test_categories_with_book_counts(api, published_db):
    page = await get_json(api, "/api/v1/categories")
    expected = query(
        published_db.path,
        "select c.id, c.name, c.slug, c.url, count(b.id) as book_count from categories c"
        " left join books b on b.category_id = c.id group by c.id order by c.name",
    )
    assert page["categories"] == expected
    assert page["total"] == len(expected) and page["next"] is None


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/v1/books?offset=9223372036854775808", 400, "bad_parameter"),  # past SQLite's INTEGER
        ("/api/v1/books?limit=0", 400, "bad_parameter"),
        ("/api/v1/books?limit=abc", 400, "bad_parameter"),
        ("/api/v1/books?limit=100000", 400, "bad_parameter"),
        ("/api/v1/books?offset=-1", 400, "bad_parameter"),
        ("/api/v1/books?min_price=cheap", 400, "bad_parameter"),
        ("/api/v1/books?min_price=nan", 400, "bad_parameter"),
        ("/api/v1/books?min_price=30&max_price=10", 400, "bad_range"),
        ("/api/v1/books?min_rating=6", 400, "bad_parameter"),
        ("/api/v1/books?in_stock=maybe", 400, "bad_parameter"),
        ("/api/v1/books?sort=upc", 400, "bad_parameter"),
        ("/api/v1/books?q=%22%28*", 400, "bad_parameter"),
        ("/api/v1/books/999999999", 404, "book_not_found"),
        ("/api/v1/books/99999999999999999999999", 404, "not_found"),
        ("/api/v1/books/abc", 404, "not_found"),
        ("/api/v1/books/search", 400, "bad_parameter"),
        pytest.param("/api/v1/books/search?title=" + "x" * 300, 400, "bad_parameter",
                     id="a-searched-title-over-200-characters"),
        ("/api/v1/books/top-rated?limit=-3", 400, "bad_parameter"),
        ("/api/v1/books/price-range?min=20&max=10", 400, "bad_range"),
        ("/api/v1/books/price-range?min=abc", 400, "bad_parameter"),
        ("/api/v1/books/price-range?max=1e999", 400, "bad_parameter"),
        ("/api/v1/categories?limit=x", 400, "bad_parameter"),
        ("/api/v1/nothing-here", 404, "not_found"),
        ("/api/v1/books.json", 404, "not_found"),
    ],
)
async def test_bad_input_is_a_json_error(api, path, status, code):
    assert_error(await api.client.get(path), status, code)


async def test_a_search_without_a_word_says_so_in_words(api):
    body = assert_error(await api.client.get("/api/v1/books?q=%21%21%21"), 400, "bad_parameter")
    assert body["error"] == "q must contain at least one word (a letter, digit or _); got '!!!'"


async def test_the_deepest_offset_is_an_empty_page_and_past_it_says_follow_next(api, published_db):
    assert value(published_db.path, "select count(*) from books") < MAX_OFFSET
    page = await get_json(api, f"/api/v1/books?offset={MAX_OFFSET}")
    assert page["books"] == [] and page["next"] is None and page["offset"] == MAX_OFFSET
    body = assert_error(await api.client.get(f"/api/v1/books?offset={MAX_OFFSET + 1}"), 400, "bad_parameter")
    assert body["details"] == {"parameter": "offset"} and "`next`" in body["error"], body


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
async def test_wrong_method_is_json_405_with_allow(api, method):
    response = await getattr(api.client, method)("/api/v1/books")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD"


async def test_search_route_is_not_taken_for_an_id(api):
    assert "books" in await get_json(api, "/api/v1/books/search?title=a")
    assert "books" in await get_json(api, "/api/v1/books/top-rated")
    assert "books" in await get_json(api, "/api/v1/books/price-range?min=1")


def local(url: str) -> str:
    return url.removeprefix("http://localhost")


async def follow(api, url: str) -> list[dict]:
    """Every book of a list, following `next` to the end; each next link carries a cursor, no offset."""
    seen = []
    while url:
        page = await get_json(api, url)
        seen += page["books"]
        url = page["next"] and local(page["next"])
        if url:
            query_string = parse_qs(urlsplit(url).query)
            assert "after" in query_string and "offset" not in query_string, url
    return seen


def sql_order(sort: str) -> str:
    """The documented order of a sort: its column, then the id, both the same way."""
    column, way = sort.lstrip("-"), "desc" if sort.startswith("-") else "asc"
    return f"order by b.{column} {way}, b.id {way}" if column != "id" else f"order by b.id {way}"


IN_E_CATEGORY = "b.category_id in (select id from categories where instr(lower(name), 'e'))"
WITH_THE = "b.id in (select rowid from books_fts where books_fts match 'the')"
# Lists in every order, in pages of 97 (pages end inside runs of equal prices, ratings and titles).
KEYSET_LISTS = [
    *(pytest.param(f"/api/v1/books?sort={sort}", "", sort, id=f"books-by-{sort}") for sort in SORT_CHOICES),
    pytest.param("/api/v1/books?min_rating=3&sort=-price", "b.rating >= 3", "-price", id="books-rated-3-up-by-price"),
    pytest.param("/api/v1/books?min_rating=3&max_price=40&sort=-title", "b.rating >= 3 and b.price <= 40", "-title",
                 id="books-rated-3-up-to-40-by-title"),
    *(pytest.param(f"/api/v1/books?q=the&sort={sort}", WITH_THE, sort, id=f"books-full-text-by-{sort}")
      for sort in ("id", "-id", "price")),
    pytest.param("/api/v1/books?q=the&min_rating=2&sort=-rating", f"{WITH_THE} and b.rating >= 2", "-rating",
                 id="books-full-text-rated-2-up-by-rating"),
    *(pytest.param(f"/api/v1/books?category=DEFAULT&min_rating={rating}&sort={sort}",
                   f"b.category_id in (select id from categories where name = 'Default') and b.rating >= {rating}",
                   sort, id=f"books-in-a-category-rated-{rating}-up-by-{sort}")
      for rating, sort in ((1, "-price"), (2, "price"))),
    pytest.param("/api/v1/books/price-range?min=20&max=40", "b.price between 20 and 40", "price", id="price-range"),
    pytest.param("/api/v1/books/price-range?min=20&sort=-title", "b.price >= 20", "-title", id="price-range-by-title"),
    pytest.param("/api/v1/books/top-rated?", "", "-rating", id="top-rated"),
    pytest.param("/api/v1/books/search?title=the", "instr(lower(b.title), 'the')", "title", id="search-the"),
    pytest.param("/api/v1/books/search?title=e&sort=rating", "instr(lower(b.title), 'e')", "rating",
                 id="search-one-letter-by-rating"),
    *(
        pytest.param(f"/api/v1/books/search?category=e&sort={sort}", IN_E_CATEGORY, sort, id=f"search-category-by-{sort}")
        for sort in ("-price", "title", "-rating", "id")
    ),
]


# The two plans of a filtered page (books.list_query): the matching ids sorted, or the sort's index
# walked with each row tested, which a list takes when more books match than the count's cap.
PLANS = [
    pytest.param(None, id="by-matching-ids"),
    pytest.param(5, id="by-walking-the-sort-index"),
]


# And a walk stopped at its WALK_STEPS (here at once), which gives way to the matching ids sorted.
STOPPED_WALK = "stopped"


@pytest.mark.parametrize("cap", [*PLANS, pytest.param(STOPPED_WALK, id="walk-stopped-then-matching-ids")])
@pytest.mark.parametrize("path,where,sort", KEYSET_LISTS)
async def test_following_next_pages_through_the_sql_order_once(api, published_db, monkeypatch, path, where, sort, cap):
    if cap == STOPPED_WALK:
        monkeypatch.setattr(books, "WALK_STEPS", 1)
        cap = 5
    if cap is not None:
        monkeypatch.setattr(books, "COUNT_CAP", cap)
        monkeypatch.setattr(books, "CATEGORY_GATHER_MAX", cap)
    books_seen = await follow(api, f"{path}&limit=97")
    expected = query(
        published_db.path, f"select b.id from books b {'where ' + where if where else ''} {sql_order(sort)}"
    )
    assert [b["id"] for b in books_seen] == [r["id"] for r in expected]
    assert len(expected) > 97, "several pages"


async def test_a_cursor_page_is_the_offset_page_at_the_same_place(api):
    first = await get_json(api, "/api/v1/books?sort=-rating&limit=40")
    by_cursor = await get_json(api, local(first["next"]))
    by_offset = await get_json(api, "/api/v1/books?sort=-rating&limit=40&offset=40")
    assert by_cursor["books"] == by_offset["books"] and by_cursor["total"] == by_offset["total"]


async def cursor_of(api, path: str) -> str:
    return parse_qs(urlsplit((await get_json(api, path))["next"]).query)["after"][0]


def changed(cursor: str) -> str:
    """The cursor with one character of its body changed: still the pattern, no longer the checksum."""
    body, dot, checksum = cursor.partition(".")
    return ("B" if body[0] != "B" else "C") + body[1:] + dot + checksum


@pytest.mark.parametrize(
    "make_query",
    [
        pytest.param(lambda c: {"after": changed(c)}, id="a-changed-cursor"),
        pytest.param(lambda c: {"after": c[:-1] + ("A" if c[-1] != "A" else "B")}, id="a-changed-checksum"),
        pytest.param(lambda c: {"after": c.split(".")[0][:-2] + "." + c.split(".")[1]}, id="a-cut-cursor"),
        pytest.param(lambda c: {"after": c, "sort": "price"}, id="a-cursor-of-another-sort"),
        pytest.param(lambda c: {"after": c, "offset": "10"}, id="a-cursor-with-an-offset"),
        pytest.param(lambda c: {"after": "!" + c}, id="a-cursor-not-in-the-pattern"),
    ],
)
async def test_a_bad_cursor_is_a_400_naming_after(api, make_query):
    cursor = await cursor_of(api, "/api/v1/books?sort=-price&limit=5")
    response = await api.client.get("/api/v1/books?" + urlencode({"sort": "-price", **make_query(cursor)}))
    body = assert_error(response, 400, "bad_parameter")
    assert body["details"] == {"parameter": "after"}, body


async def test_a_cursor_is_its_routes_only(api):
    cursor = await cursor_of(api, "/api/v1/books/price-range?min=1&limit=5")
    assert_error(await api.client.get(f"/api/v1/books?sort=price&after={cursor}"), 400, "bad_parameter")
    assert (await api.client.get(f"/api/v1/books/price-range?min=1&after={cursor}")).status_code == 200


async def test_a_well_formed_cursor_past_the_end_is_an_empty_last_page(api, published_db):
    top = value(published_db.path, "select max(id) from books")
    cursor = encode_cursor("/api/v1/books", Cursor("id", None, top))
    page = await get_json(api, f"/api/v1/books?after={cursor}")
    assert page["books"] == [] and page["next"] is None


async def test_totals_without_other_filters_come_from_the_category_figures(api, published_db):
    """Equal to counting the books, with the category matched the way the filter matches it."""
    category = query(published_db.path, "select name, slug from categories order by id limit 1 offset 1")[0]
    books_in = value(
        published_db.path, "select count(*) from books b join categories c on c.id = b.category_id where c.slug = ?",
        [category["slug"]],
    )
    for ask in (category["name"].upper(), category["slug"]):
        page = await get_json(api, f"/api/v1/books?category={ask}&limit=1")
        assert (page["total"], page["total_exact"]) == (books_in, True)
    fragment_ = category["name"][1:4].swapcase()
    like = value(
        published_db.path, "select count(*) from books b join categories c on c.id = b.category_id"
        " where instr(lower(c.name), lower(?))", [fragment_],
    )
    page = await get_json(api, f"/api/v1/books/search?category={fragment_}&limit=1")
    assert (page["total"], page["total_exact"]) == (like, True)
    assert books.total_query(books.BookFilters(category="x"))[0] == books.CATEGORY_TOTALS["category"]


@pytest.mark.parametrize("cap", PLANS)
async def test_a_category_and_a_lowest_rating_count_from_the_rating_figures(api, published_db, monkeypatch, cap):
    """Equal to counting the books (capped the same way); the pages hold exactly those books, in order."""
    if cap is not None:
        monkeypatch.setattr(books, "COUNT_CAP", cap)
        monkeypatch.setattr(books, "CATEGORY_GATHER_MAX", cap)
    category = query(
        published_db.path, "select c.name, c.slug from categories c join books b on b.category_id = c.id"
        " group by c.id order by count(*) desc, c.id limit 1",
    )[0]
    where = "b.category_id = (select id from categories where slug = :slug) and b.rating >= :rating"
    for rating in (0, 3, 5):
        path = f"/api/v1/books?category={category['name'].upper()}&min_rating={rating}&sort=-price&limit=7"
        expected = query(published_db.path, f"select b.id from books b where {where} {sql_order('-price')}",
                         {"slug": category["slug"], "rating": rating})
        page = await get_json(api, path)
        exact = cap is None or len(expected) <= cap
        assert (page["total"], page["total_exact"]) == (len(expected) if exact else cap, exact), rating
        assert [b["id"] for b in await follow(api, path)] == [r["id"] for r in expected], rating
    everywhere = value(published_db.path, "select count(*) from books where rating >= 3")
    page = await get_json(api, "/api/v1/books?min_rating=3&limit=1")
    assert (page["total"], page["total_exact"]) == ((everywhere, True) if cap is None else (cap, False))
    assert books.total_query(books.BookFilters(category="x", min_rating=3))[0] == books.RATED_TOTALS["category"]


# The three ways a full-text filter meets the others (books.meeting_plan), each forced in turn.
MEETINGS = [pytest.param(plan, id=plan) for plan in (books.MATCHES_SET, books.OTHERS_SET, books.STREAM)]


@pytest.mark.parametrize("cap", PLANS)
@pytest.mark.parametrize("meeting", MEETINGS)
async def test_full_text_with_other_filters_is_the_same_whichever_side_is_built(
    api, published_db, monkeypatch, meeting, cap
):
    if cap is not None:
        monkeypatch.setattr(books, "COUNT_CAP", cap)
    monkeypatch.setattr(books, "meeting_plan", lambda *sizes: meeting)
    category = query(published_db.path, "select c.name from categories c join books b on b.category_id = c.id"
                     " group by c.id order by count(*) desc, c.id limit 1")[0]["name"]
    cases = [
        ("books?q=the&min_rating=2&sort=-price", f"{WITH_THE} and b.rating >= 2", "-price"),
        ("books?q=the&max_price=40&in_stock=true&sort=title", f"{WITH_THE} and b.price <= 40 and b.in_stock = 1",
         "title"),
        (f"books?q=the&category={category}&sort=id",
         f"{WITH_THE} and b.category_id = (select id from categories where name = :category)", "id"),
        ("books/search?title=the&category=e", f"instr(lower(b.title), 'the') and {IN_E_CATEGORY}", "title"),
    ]
    for path, where, sort in cases:
        expected = [r["id"] for r in query(published_db.path, f"select b.id from books b where {where}"
                                           f" {sql_order(sort)}", {"category": category})]
        page = await get_json(api, f"/api/v1/{path}&limit=7")
        exact = cap is None or len(expected) <= cap
        assert (page["total"], page["total_exact"]) == (len(expected) if exact else cap, exact), path
        assert [b["id"] for b in await follow(api, f"/api/v1/{path}&limit=7")] == expected, path
        assert len(expected) > 7, path


@pytest.mark.parametrize(
    "matches,others,books_in_all,plan",
    [
        pytest.param(50, 20, None, books.OTHERS_SET, id="the-others-pass-fewer-books-their-set"),
        pytest.param(20, 50, None, books.MATCHES_SET, id="fewer-matches-their-set"),
        pytest.param(20, 5000, 10**6, books.MATCHES_SET, id="both-few-the-set-of-the-matches"),
        pytest.param(20, books.COUNT_CAP + 1, 10**6, books.STREAM, id="few-matches-many-others-the-matches-streamed"),
        pytest.param(20, books.COUNT_CAP + 1, None, books.MATCHES_SET, id="no-narrow-index-to-stream-through"),
        pytest.param(books.COUNT_CAP + 1, books.COUNT_CAP + 1, None, books.MATCHES_SET,
                     id="both-large-others-of-unknown-density-the-matches-set"),
        pytest.param(books.COUNT_CAP + 1, 300_000, 10**6, books.STREAM, id="both-large-others-dense-streamed"),
        pytest.param(books.COUNT_CAP + 1, 100_000, 10**6, books.MATCHES_SET,
                     id="both-large-others-sparse-the-matches-set"),
    ],
)
def test_the_smaller_side_of_a_full_text_filter_and_others_is_built(matches, others, books_in_all, plan):
    assert books.meeting_plan(matches, others, books_in_all) == plan


async def test_a_filtered_total_stops_at_the_cap_and_says_so(api, published_db, monkeypatch):
    rated = value(published_db.path, "select count(*) from books where rating >= 2")
    monkeypatch.setattr(books, "COUNT_CAP", 10)
    page = await get_json(api, "/api/v1/books?min_rating=2&limit=3")
    assert (page["total"], page["total_exact"]) == (10, False)
    assert len(await follow(api, "/api/v1/books?min_rating=2&limit=300")) == rated > 10
    few = await get_json(api, f"/api/v1/books/search?title={published_db.plain_title()}")
    assert few["total"] == len(few["books"]) <= 10 and few["total_exact"] is True


def title_terms(titles: list[str]) -> list[str]:
    """Search terms of every kind the trigram index must answer exactly: drawn from the titles (in other
    case), short ones (1-2 characters: no trigram), LIKE wildcards, quotes and FTS5 syntax, non-ASCII."""
    terms = ["a", "E", "th", "Th", "%", "_", "%_", '"', "'", "*", "(", "AND", "OR", "NEAR", '"the"', "the*",
             "é", "É", "ß", "SS", "ſ", "İ", "\\", "  ", ": "]
    for index, title in enumerate(titles[:: max(1, len(titles) // 40)]):
        start = index % max(1, len(title) - 3)
        terms += [title[start : start + 3 + index % 6].swapcase(), title[-2:].upper()]
    non_ascii = [char for title in titles for char in title if ord(char) > 127]
    return terms + [char.upper() for char in dict.fromkeys(non_ascii)][:10]


@pytest.mark.parametrize("cap", PLANS)
async def test_title_search_is_the_casefolded_contains_for_every_kind_of_term(api, published_db, monkeypatch, cap):
    if cap is not None:
        monkeypatch.setattr(books, "COUNT_CAP", cap)
    titles = {r["id"]: r["title"] for r in query(published_db.path, "select id, title from books")}
    for term in title_terms(list(titles.values())):
        page = await get_json(api, "/api/v1/books/search?" + urlencode({"title": term, "limit": 1000}))
        expected = sorted(id_ for id_, title in titles.items() if term.casefold() in title.casefold())
        assert sorted(b["id"] for b in page["books"]) == expected, term
        exact = cap is None or len(expected) <= cap
        assert (page["total"], page["total_exact"]) == (min(len(expected), cap or len(expected)), exact), term


async def test_a_query_stopped_by_the_time_limit_is_a_503_with_retry_after(published_db, api_env):
    """A real query, the real limit: at 1 ms with a check at every SQLite instruction, the search's
    count over every title cannot finish."""
    api = make_datasette(published_db, settings={"sql_time_limit_ms": 1})
    response = await api.client.get("/api/v1/books/search?title=e&sort=-price")
    body = assert_error(response, 503, "query_timeout")
    assert response.headers["retry-after"].isdigit() and "time limit" in body["error"]
    assert body["details"] == {"time_limit_ms": 1}


# Bytes that are not UTF-8 (a lone continuation byte, a cut-short sequence) inside a description.
NOT_UTF8 = b"Caf\xc3 au lait \x80 \xe2\x82"


async def test_a_value_that_is_not_utf8_reads_as_datasette_reads_it(published_copy, api_env):
    """The book lists read text with sqlite3's own decoder, and Datasette's lenient one (U+FFFD for each
    bad sequence) when a value is not UTF-8: the answer is what Datasette itself reads, on a page with
    other books and alone; the connection is left to Datasette as it was."""
    book_id = value(published_copy.path, "select min(id) from books")
    db = Database(published_copy.path)
    db.execute("update books set description = cast(? as text) where id = ?", [NOT_UTF8, book_id])
    db.conn.commit()
    db.close()
    api = make_datasette(published_copy, settings={"num_sql_threads": 1})  # one connection: the one read_rows used
    expected = NOT_UTF8.decode("utf-8", "replace")
    assert "\ufffd" in expected
    one = await get_json(api, f"/api/v1/books/{book_id}")
    page = await get_json(api, "/api/v1/books?sort=id&limit=5")
    assert one["description"] == page["books"][0]["description"] == expected
    assert page["books"][0] == one and [b["id"] for b in page["books"]][0] == book_id
    neighbour = query(published_copy.path, "select id, description from books order by id limit 1 offset 1")[0]
    assert page["books"][1]["id"] == neighbour["id"] and page["books"][1]["description"] == neighbour["description"]
    datasette_reads = await api.get_database("books").execute("select description from books where id = ?", [book_id])
    assert datasette_reads.single_value() == expected


async def test_a_page_read_past_the_time_limit_is_a_503_and_the_connection_reads_on(published_db, api_env):
    """read_rows stops a query at Datasette's SQL time limit (query_timeout, as for db.execute), then
    takes its progress handler off the connection: a query after it on the same connection, longer
    than the limit, runs to its end."""
    api = make_datasette(published_db, settings={"sql_time_limit_ms": 200, "num_sql_threads": 1})
    db = api.get_database("books")
    endless = "with recursive n(i) as (select 1 union all select i + 1 from n) select count(*) from n"
    with pytest.raises(ApiError) as stopped:
        await web.read_rows(api, db, endless, {})
    assert (stopped.value.status, stopped.value.code) == (503, "query_timeout")
    assert stopped.value.details == {"time_limit_ms": 200}
    long = "with recursive n(i) as (select 1 union all select i + 1 from n limit 1000000) select count(*) from n"
    assert await db.execute_fn(lambda conn: conn.execute(long).fetchone()[0]) == 1_000_000
    assert await web.read_rows(api, db, "select 1 as one, 'two' as two", {}) == [{"one": 1, "two": "two"}]


async def test_a_read_stopped_at_its_steps_says_so_and_the_connection_reads_on(published_db, api_env):
    """read_rows with max_steps stops a query after that many SQLite instructions (TooManySteps, for
    the caller to take another plan), not as a timeout, and leaves the connection as it was."""
    api = make_datasette(published_db, settings={"num_sql_threads": 1})
    db = api.get_database("books")
    endless = "with recursive n(i) as (select 1 union all select i + 1 from n) select count(*) from n"
    with pytest.raises(web.TooManySteps):
        await web.read_rows(api, db, endless, {}, max_steps=100_000)
    short = "with recursive n(i) as (select 1 union all select i + 1 from n limit 10) select count(*) as n from n"
    assert await web.read_rows(api, db, short, {}, max_steps=100_000) == [{"n": 10}]
    long = "with recursive n(i) as (select 1 union all select i + 1 from n limit 100000) select count(*) from n"
    assert await db.execute_fn(lambda conn: conn.execute(long).fetchone()[0]) == 100_000


@pytest.mark.parametrize("query_string", [
    "title=the%00x", "title=%00", "title=a%00", "title=the%00x&sort=-title", "title=the%00x&category=e",
    "title=the%00x&sort=price&limit=1",
])
async def test_a_title_term_with_a_nul_matches_nothing_in_every_plan(api, query_string):
    """FTS5 and SQLite's text functions end a string at a NUL (it was a 500); no title holds one."""
    page = await get_json(api, f"/api/v1/books/search?{query_string}")
    assert (page["books"], page["total"], page["total_exact"]) == ([], 0, True)


@pytest.mark.parametrize("term", ["ÉT", "é", "t"])
async def test_titles_too_short_for_a_trigram_are_found_too(published_copy, api_env, term):
    """A 2-character search reads the index's trigrams and, besides them, the titles under 3 characters."""
    book_id = value(published_copy.path, "select min(id) from books")
    db = Database(published_copy.path)
    db.execute("update books set title = 'Ét' where id = ?", [book_id])
    db.conn.commit()
    ensure_title_index(db)
    db.close()
    titles = {r["id"]: r["title"] for r in query(published_copy.path, "select id, title from books")}
    page = await get_json(make_datasette(published_copy), "/api/v1/books/search?" + urlencode({"title": term, "limit": 1000}))
    expected = sorted(id_ for id_, title in titles.items() if term.casefold() in title.casefold())
    assert book_id in expected and sorted(b["id"] for b in page["books"]) == expected


# Titles in runs of equal ones, in cases and scripts whose binary order differs from the folded one:
# the title search's sort by title reads its index in (title, id) order (title_search's positions).
TIED_TITLES = ["The Attic", "the attic", "ATTIC", "Attic Nights", "Café attic", "Zebra in the attic", "Ättic",
               "An attic — été", "Cellar", "attic"]


def tied_record(book_id: int, title: str) -> dict:
    return {
        "id": book_id, "upc": f"upc{book_id}", "title": title, "price": 10.0 + book_id % 7, "price_incl_tax": 10.0,
        "tax": 0.0, "currency": "GBP", "rating": 1 + book_id % 5, "availability": "In stock (3 available)",
        "in_stock": True, "stock_count": 3, "category": "Poetry",
        "category_url": "http://example.test/catalogue/category/books/poetry_23/index.html", "description": None,
        "product_type": "Books", "number_of_reviews": 0, "image_url": "http://example.test/i.jpg",
        "product_url": f"http://example.test/catalogue/b_{book_id}/index.html",
        "scraped_at": "2026-01-01T00:00:00+00:00",
    }


@pytest.fixture
def tied_api(published_db, api_env, tmp_path):
    """Datasette over a catalogue of 150 books with 10 titles, each saved under ids out of title order."""
    db = storage.open_books_db(str(tmp_path / "books.db"))
    storage.save_books(db, [tied_record((n * 37) % 151 + 1, TIED_TITLES[n % len(TIED_TITLES)]) for n in range(150)])
    storage.ensure_db_shape(db)
    db.close()
    return make_datasette(PublishedDatabase(tmp_path / "books.db", published_db.operations_path, "generated"))


async def pages_of(api, url: str) -> list[dict]:
    """Every page of a list, following `next` to the end (a next link that goes back fails, not loops)."""
    pages = []
    while url:
        assert len(pages) <= 150, url
        pages.append(await get_json(api, url))
        url = pages[-1]["next"] and local(pages[-1]["next"])
    return pages


@pytest.mark.parametrize("sort", ["title", "-title"])
@pytest.mark.parametrize("cap", PLANS)
async def test_a_title_search_by_title_reads_the_index_in_title_order_as_the_general_plan_pages(
    tied_api, monkeypatch, sort, cap
):
    """Pages (and next links, ties split across them) equal to the general plan's, which sorts the
    matches' titles or walks the title index; offsets and cursors that name no book's (title, id) too."""
    if cap is not None:
        monkeypatch.setattr(books, "COUNT_CAP", cap)
    path = "/api/v1/books/search"
    urls = [f"{path}?" + urlencode({"title": term, "sort": sort, "limit": limit})
            for term in ("attic", "ATTIC", "ÄTT", "t ATT", "cellar", "nothing") for limit in (1, 7, 50)]
    urls += [f"{path}?" + urlencode({"title": "attic", "sort": sort, "limit": 4, "offset": 9})]
    urls += [f"{path}?" + urlencode({"title": "attic", "sort": sort, "limit": 5, "after": encode_cursor(path, cursor)})
             for cursor in (Cursor(sort, "the attic", 0), Cursor(sort, "the attic", 10**6), Cursor(sort, "The B", 3),
                            Cursor(sort, "", 0), Cursor(sort, "\U0010ffff", 0), Cursor(sort, "attic", 77))]
    title_ordered = [await pages_of(tied_api, url) for url in urls]
    seen = {book["id"] for pages in title_ordered for page in pages for book in page["books"]}
    assert len(seen) == 150 and len(title_ordered[2][0]["books"]) == 50  # every book found, in pages of 50 and less
    monkeypatch.setattr(books, "title_order_query", lambda *args: None)
    assert title_ordered == [await pages_of(tied_api, url) for url in urls]


@pytest.mark.parametrize("sort", ["title", "-title"])
@pytest.mark.parametrize("after", [None, Cursor("title", "The Attic", 5)])
def test_a_title_search_by_title_is_a_read_of_the_index_in_its_order(published_db, sort, after):
    """No sort of the matches: the trigram index read in rowid (title) order up to limit + 1 rows (with
    no temporary B-tree of its own), then their books by id; only those limit + 1 rows are sorted."""
    filters = books.BookFilters(title_like="The")
    page = Page(limit=50, offset=0, after=after and Cursor(sort, after.value, after.id))
    sql, params = books.list_query(filters, books.keyset_of(sort), page, many=False)
    plan = query(published_db.path, f"explain query plan {sql}", params)
    matches = next(row["id"] for row in plan if row["detail"] == "CO-ROUTINE m")
    read = [row["detail"] for row in plan if row["parent"] == matches]
    assert read[0].startswith(f"SCAN {TITLE_INDEX} VIRTUAL TABLE") and not any("TEMP B-TREE" in step for step in read)
    outer = [row["detail"] for row in plan if row["parent"] == 0]
    by_id = [f"SEARCH {alias} USING INTEGER PRIMARY KEY (rowid=?)" for alias in "fbc"]  # title, book, category
    assert outer == ["CO-ROUTINE m", "SCAN m", *by_id, "USE TEMP B-TREE FOR ORDER BY"]
    assert books.title_order_query(books.BookFilters(title_like="Th"), books.keyset_of(sort), page) is None
    assert books.title_order_query(replace(filters, category_like="e"), books.keyset_of(sort), page) is None
    assert books.title_order_query(filters, books.keyset_of("price"), page) is None


def sqlite_steps(path, sql: str, params: dict) -> tuple[list[int], int]:
    """(the ids a query returns, sorted; the SQLite instructions it took)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    steps = Counter()
    conn.set_progress_handler(lambda: steps.update(["step"]) and 0, 1)
    try:
        ids = sorted(row[0] for row in conn.execute(sql, params))
    finally:
        conn.close()
    return ids, steps["step"]


@pytest.mark.parametrize("length,few", [(1, 5), (2, 2)])
def test_a_rare_short_term_is_looked_up_by_its_trigrams_and_a_common_one_scanned(tmp_path, monkeypatch, length, few):
    """A term shorter than a trigram that few of the vocabulary's trigrams contain reads those
    trigrams' matches, not every title; one that many contain scans the titles, as before. Either
    way the ids are those of the scan. (3,000 books with 10 titles: the vocabulary is far smaller
    than the titles, as in a large catalogue, so `few` trigrams make a term rare here.)"""
    monkeypatch.setattr(title_search, "FEW_TRIGRAMS", few)
    db = storage.open_books_db(str(tmp_path / "books.db"))
    storage.save_books(db, [tied_record(n, TIED_TITLES[n % len(TIED_TITLES)]) for n in range(1, 3001)])
    storage.ensure_db_shape(db)
    db.close()
    path = tmp_path / "books.db"
    vocabulary = [row["trigram"] for row in query(path, f"select trigram from {TITLE_TRIGRAMS}")]
    holding = Counter(term for trigram in vocabulary for term in {trigram[i:i + length] for i in range(4 - length)})
    rare = min((term for term in holding if term.strip()), key=lambda term: (holding[term], term))
    common = max(holding, key=lambda term: (holding[term], term))
    assert holding[rare] <= few < holding[common]
    scan = f"select id from {FOLDED_TITLES} where instr(title, :title_folded) > 0"
    for term, cheaper in ((rare, True), (common, False)):
        match = title_match(term)
        ids, steps = sqlite_steps(path, match.matching_ids, match.params)
        scanned, scan_steps = sqlite_steps(path, scan, match.params)
        assert ids == scanned and ids, term
        assert (steps * 2 < scan_steps) == cheaper, (term, steps, scan_steps)


@pytest.mark.parametrize("sort", ["price", "-price"])
@pytest.mark.parametrize("after", [None, Cursor("price", 30.0, 500)])
def test_a_category_and_a_lowest_rating_by_price_merge_the_runs_of_an_index(published_db, sort, after):
    """Each (category, rating) run read from the category-rating index in price order, a page of
    it at most: no run is sorted whole (SQLite sorts only ties of a price by id)."""
    filters = books.BookFilters(category="default", min_rating=3)
    keyset = books.keyset_of(sort)
    page = Page(limit=20, offset=0, after=after and Cursor(sort, after.value, after.id))
    assert books.rating_runs_apply(filters, keyset, page)
    sql, params = books.rating_runs_query([1, 2], filters, keyset, page)
    plan = [row["detail"] for row in query(published_db.path, f"explain query plan {sql}", params)]
    runs = [step for step in plan if books.RATING_RUNS_INDEX in step]
    assert len(runs) == 2 * 3 * (2 if after else 1), plan  # categories x ratings 3-5 (x 2 ranges after a cursor)
    assert all("(category_id=? AND rating=?" in step for step in runs), runs
    # A run's rows come in price order; only the cursor's own price, a range of ties, is sorted by id.
    whole_sorts = [step for step, following in zip(plan, plan[1:]) if books.RATING_RUNS_INDEX in step
                   and "price=?" not in step and following == "USE TEMP B-TREE FOR ORDER BY"]
    assert not whole_sorts, plan
    for other in (replace(filters, min_rating=None), replace(filters, in_stock=True), replace(filters, category=None)):
        assert not books.rating_runs_apply(other, keyset, page)
    assert not books.rating_runs_apply(filters, books.keyset_of("title"), page)
