"""Prices in the HTML pages with two decimals (51.7 shows as 51.70), in tables, rows and queries.

Only the HTML: Datasette's render_cell hook is not consulted for JSON or CSV, where a price stays
the number it is. A column holds money when its name says so: price, tax, change (a price's
difference), or a name that starts with price_ or ends with _price (min_price, avg_price, ...).
"""

from __future__ import annotations

MONEY_NAMES = frozenset({"price", "tax", "change"})


def is_money_column(column: str) -> bool:
    name = column.lower()
    return name in MONEY_NAMES or name.startswith("price_") or name.endswith("_price")


def money_cell(value: object, column: str) -> str | None:
    """The cell's text with two decimals, or None to leave the cell to Datasette."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_money_column(column):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None  # NaN or infinity: Datasette shows them as they are
    return f"{value:.2f}"
