"""The OpenAPI 3 description of /api/v1, served at /api/v1/openapi.json (a test keeps it true)."""

from __future__ import annotations

from books_scraper.api.catalogue import SORT_CHOICES

NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
NULLABLE_STRING = {"type": "string", "nullable": True}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _record(properties: dict, optional: tuple[str, ...] = ()) -> dict:
    """An object that always carries these keys (the OpenAPI test checks the real answers)."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties}


def _errors(*statuses: int) -> dict:
    return {str(status): {"$ref": "#/components/responses/Error"} for status in statuses}


def _page_of(key: str, item: dict) -> dict:
    return {
        "type": "object",
        "required": [key, "total", "limit", "offset", "next"],
        "properties": {
            key: {"type": "array", "items": item},
            "total": INTEGER,
            "limit": INTEGER,
            "offset": INTEGER,
            "next": {"type": "string", "nullable": True, "description": "URL of the next page"},
        },
    }


PAGE = [
    _query("limit", {"type": "integer", "minimum": 1}, "rows per page"),
    _query("offset", {"type": "integer", "minimum": 0}, "rows to skip"),
]
BEARER = [{"bearer": []}]


def _get(summary: str, ok: dict, parameters: list | None = None, errors=(400,)) -> dict:
    return {
        "get": {
            "summary": summary,
            "parameters": parameters or [],
            "responses": {"200": ok, **_errors(*errors)},
        }
    }


def _book_list(summary: str, parameters: list) -> dict:
    return _get(summary, _json(_page_of("books", _ref("Book")), "a page of books"), parameters + PAGE)


def _crawl_run(description: str) -> dict:
    run = _record({
        "id": INTEGER, "started_at": STRING, "finished_at": NULLABLE_STRING, "status": STRING,
        "books": {"type": "integer", "nullable": True},
    })
    return {**run, "nullable": True, "description": description}


def _training_page() -> dict:
    page = _page_of("books", _ref("TrainingRow"))
    split = _record({"split": STRING, "test_size": NUMBER, "seed": INTEGER})
    return {**page, "required": [*page["required"], "split"], "properties": {**page["properties"], "split": split}}


def _tabular(description: str, schema: dict, streams: tuple[str, ...]) -> dict:
    content = {"application/json": {"schema": schema}}
    if "csv" in streams:
        content["text/csv"] = {"schema": STRING}
    if "ndjson" in streams:
        content["application/x-ndjson"] = {"schema": STRING}
    return {"description": description, "content": content}


def paths() -> dict:
    sort = _query("sort", {"type": "string", "enum": SORT_CHOICES}, "order; '-' for descending")
    split = [
        _query("split", {"type": "string", "enum": ["all", "train", "test"]}, "deterministic split"),
        _query("test_size", {"type": "number", "minimum": 0, "maximum": 1}, "share in test (0.2)"),
        _query("seed", INTEGER, "split seed (42)"),
    ]
    prediction_post = {
        "summary": "Store a batch of predicted ratings (role ml or admin)",
        "security": BEARER,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [
                {"type": "array", "items": _ref("PredictionIn")},
                {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {
                        "model": STRING,
                        "predictions": {"type": "array", "items": _ref("PredictionIn")},
                    },
                },
            ]}}},
        },
        "responses": {
            "201": _json(
                {"type": "object", "properties": {
                    "ok": {"type": "boolean"}, "batch_id": STRING, "model": STRING, "count": INTEGER,
                }},
                "the batch was stored",
            ),
            **_errors(400, 401, 403, 413, 415, 422),
        },
    }
    return {
        "/api/v1/health": _get(
            "Service health",
            _json(_record({
                "status": STRING, "database": {"type": "object"}, "books": INTEGER,
                "last_crawl": _crawl_run("the last published crawl in the served books database"),
                "latest_crawl_attempt": _crawl_run("the operations journal's latest attempt, any status"),
            }), "the service is up"),
            errors=(503,),
        ),
        "/api/v1/books": _book_list("List books", [
            _query("category", STRING, "category name or slug, any case"),
            _query("min_price", NUMBER, "lowest price"),
            _query("max_price", NUMBER, "highest price"),
            _query("min_rating", {"type": "integer", "minimum": 0, "maximum": 5}, "lowest rating"),
            _query("in_stock", {"type": "boolean"}, "only books in (or out of) stock"),
            _query("q", STRING, "full-text search on title and description"),
            sort,
        ]),
        "/api/v1/books/{id}": {
            "get": {
                "summary": "One book",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": INTEGER}],
                "responses": {"200": _json(_ref("Book"), "the book"), **_errors(404)},
            }
        },
        "/api/v1/books/search": _book_list("Case-insensitive partial match on title and/or category", [
            _query("title", STRING, "part of the title"),
            _query("category", STRING, "part of the category name"),
            sort,
        ]),
        "/api/v1/books/top-rated": _book_list("Books by rating, best first", []),
        "/api/v1/books/price-range": _book_list("Books within a price range, cheapest first", [
            _query("min", NUMBER, "lowest price"), _query("max", NUMBER, "highest price"), sort,
        ]),
        "/api/v1/categories": _get(
            "Every category with its book count", _json(_page_of("categories", _ref("Category")), "categories"), PAGE
        ),
        "/api/v1/stats/overview": _get("Catalogue totals", _json(_ref("Overview"), "totals"), errors=()),
        "/api/v1/stats/categories": _get(
            "Per-category figures, a bare list",
            _json({"type": "array", "items": _ref("CategoryStats")}, "one entry per category"),
            errors=(),
        ),
        "/api/v1/ml/features": _get(
            "Numeric features, one row per book: every book unless limit is given",
            _tabular("features", _page_of("features", _ref("Features")), ("csv",)),
            [_query("format", {"type": "string", "enum": ["json", "csv"]}, "json (the list envelope) or csv"), *PAGE],
        ),
        "/api/v1/ml/training-data": _get(
            "Every book field, optionally one side of a deterministic split",
            _tabular("training rows", _training_page(), ("csv", "ndjson")),
            [_query("format", {"type": "string", "enum": ["json", "csv", "ndjson"]}, "csv/ndjson stream everything"),
             *split, *PAGE],
        ),
        "/api/v1/ml/predictions": {
            "get": _get(
                "Stored predictions",
                _json(_page_of("predictions", _ref("Prediction")), "a page of predictions"),
                [_query("model", STRING, "model name"), _query("batch", STRING, "batch id"),
                 _query("book_id", INTEGER, "book id"), *PAGE],
            )["get"],
            "post": prediction_post,
        },
        "/api/v1/ml/predictions/summary": _get(
            "Per model: count, MAE and RMSE against the actual ratings",
            _json({"type": "object", "properties": {"models": {"type": "array", "items": _ref("ModelSummary")}}}, "scores"),
            [_query("model", STRING, "one model only")],
        ),
        "/api/v1/auth/login": {
            "post": {
                "summary": "Exchange username and password for JWTs",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["username", "password"],
                    "properties": {"username": STRING, "password": STRING},
                }}}},
                "responses": {"200": _json(_ref("Tokens"), "tokens"), **_errors(400, 401, 415, 422, 503)},
            }
        },
        "/api/v1/auth/refresh": {
            "post": {
                "summary": "Exchange a refresh token for a new access token",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["refresh_token"], "properties": {"refresh_token": STRING},
                }}}},
                "responses": {"200": _json(_ref("Tokens"), "a new access token"), **_errors(400, 401, 415, 422, 503)},
            }
        },
        "/api/v1/openapi.json": _get("This document", _json({"type": "object"}, "OpenAPI 3"), errors=()),
    }


def schemas() -> dict:
    nullable_number = {"type": "number", "nullable": True}
    nullable_integer = {"type": "integer", "nullable": True}
    book = {
        "id": INTEGER, "upc": STRING, "title": STRING, "price": NUMBER,
        "price_incl_tax": nullable_number, "tax": nullable_number, "currency": NULLABLE_STRING,
        "rating": INTEGER, "availability": NULLABLE_STRING, "in_stock": {"type": "boolean", "nullable": True},
        "stock_count": nullable_integer, "category_id": INTEGER, "category": STRING,
        "description": NULLABLE_STRING, "product_type": NULLABLE_STRING, "number_of_reviews": nullable_integer,
        "image_url": NULLABLE_STRING, "product_url": STRING, "scraped_at": NULLABLE_STRING,
    }
    return {
        "Error": {
            "type": "object",
            "required": ["ok", "status", "error", "error_code"],
            "properties": {
                "ok": {"type": "boolean"}, "status": INTEGER, "error": STRING, "error_code": STRING,
                "details": {"type": "object"},
            },
        },
        "Book": _record({**book, "category_slug": NULLABLE_STRING}),
        "TrainingRow": _record({**book, "in_stock": {**nullable_integer, "description": "0/1"}}),
        "Category": _record({
            "id": INTEGER, "name": STRING, "slug": NULLABLE_STRING, "url": NULLABLE_STRING, "book_count": INTEGER,
        }),
        "CategoryStats": _record({
            "category": STRING, "category_id": INTEGER, "slug": NULLABLE_STRING, "total_books": INTEGER,
            "average_price": nullable_number, "min_price": nullable_number, "max_price": nullable_number,
            "average_rating": nullable_number,
        }),
        "Overview": _record({
            "total_books": INTEGER, "total_categories": INTEGER, "average_price": nullable_number,
            "min_price": nullable_number, "max_price": nullable_number,
            "rating_distribution": {
                **_record({str(stars): INTEGER for stars in range(1, 6)}), "additionalProperties": INTEGER,
            },
            "in_stock": INTEGER, "out_of_stock": INTEGER, "total_stock": INTEGER,
        }),
        "Features": _record({
            "id": INTEGER, "price": NUMBER, "rating": INTEGER, "available": INTEGER,
            "stock_count": nullable_integer, "category_code": INTEGER,
        }),
        "PredictionIn": {"type": "object", "required": ["id", "predicted_rating"], "properties": {
            "id": INTEGER, "predicted_rating": {"type": "number", "minimum": 0, "maximum": 5},
        }},
        "Prediction": _record({
            "id": INTEGER, "batch_id": STRING, "model": STRING, "book_id": INTEGER,
            "predicted_rating": NUMBER, "actor": NULLABLE_STRING, "created_at": STRING,
        }),
        "ModelSummary": _record({
            "model": STRING, "predictions": INTEGER, "batches": INTEGER, "evaluated": INTEGER,
            "mae": nullable_number, "rmse": nullable_number, "last_prediction_at": STRING,
        }),
        "Tokens": _record({
            "access_token": STRING, "refresh_token": STRING, "token_type": STRING,
            "expires_in": INTEGER, "refresh_expires_in": INTEGER, "roles": {"type": "array", "items": STRING},
        }, optional=("refresh_token", "refresh_expires_in")),  # refresh answers a new access token only
    }


def openapi_document(server_url: str) -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Books API",
            "version": "1.0.0",
            "description": "books.toscrape.com catalogue, statistics and ML feedback. "
            "Every error is {ok: false, status, error, error_code}.",
        },
        "servers": [{"url": server_url}],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "responses": {"Error": _json(_ref("Error"), "an error, in the one envelope")},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a static API token or a JWT access token from /api/v1/auth/login"},
            },
        },
    }
