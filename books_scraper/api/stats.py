"""Catalogue aggregates, each a function of a SQLite connection (run once per database version)."""

from __future__ import annotations

import sqlite3


def _round(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(value, places)


def overview(conn: sqlite3.Connection) -> dict:
    total, average, low, high, in_stock, stock = conn.execute(
        "select count(*), avg(price), min(price), max(price), coalesce(sum(in_stock = 1), 0),"
        " coalesce(sum(stock_count), 0) from books"
    ).fetchone()
    distribution = {str(stars): 0 for stars in range(1, 6)}
    for rating, count in conn.execute("select rating, count(*) from books group by rating"):
        distribution[str(rating)] = count
    return {
        "total_books": total,
        "total_categories": conn.execute("select count(*) from categories").fetchone()[0],
        "average_price": _round(average),
        "min_price": low,
        "max_price": high,
        "rating_distribution": distribution,
        "in_stock": in_stock,
        "out_of_stock": total - in_stock,
        "total_stock": stock,
    }


def _categories(conn: sqlite3.Connection) -> list[tuple]:
    """Every category with its book figures, empty categories included, by name."""
    return conn.execute(
        "select c.id, c.name, c.slug, c.url, count(b.id), avg(b.price), min(b.price), max(b.price),"
        " avg(b.rating) from categories c left join books b on b.category_id = c.id"
        " group by c.id order by c.name"
    ).fetchall()


def category_stats(conn: sqlite3.Connection) -> list[dict]:
    return [
        {
            "category": name,
            "category_id": id_,
            "slug": slug,
            "total_books": count,
            "average_price": _round(average),
            "min_price": low,
            "max_price": high,
            "average_rating": _round(rating),
        }
        for id_, name, slug, _url, count, average, low, high, rating in _categories(conn)
    ]


def category_counts(conn: sqlite3.Connection) -> list[dict]:
    return [
        {"id": id_, "name": name, "slug": slug, "url": url, "book_count": count}
        for id_, name, slug, url, count, *_figures in _categories(conn)
    ]


FEATURE_COLUMNS = ["id", "price", "rating", "available", "stock_count", "category_code"]


def features(conn: sqlite3.Connection) -> list[dict]:
    """One numeric row per book; the category code is the site's own category id, stable across crawls."""
    rows = conn.execute(
        "select id, price, rating, coalesce(in_stock, 0), stock_count, category_id"
        " from books order by id"
    )
    return [dict(zip(FEATURE_COLUMNS, row)) for row in rows]


def ratings(conn: sqlite3.Connection) -> dict[int, int]:
    """book id -> rating: the truth predictions are validated and scored against."""
    return dict(conn.execute("select id, rating from books"))
