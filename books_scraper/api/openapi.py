"""GET /api/v1/openapi.json: the OpenAPI 3 description of every /api/v1 route, and its view. Query
parameters come from each route's declaration (params.QUERIES); every status an operation can answer
is listed (tests/test_schemathesis.py)."""

from __future__ import annotations

from books_scraper.api.config import api_config
from books_scraper.api.login import LOGIN_BODY_BYTES
from books_scraper.api.params import MAX_OFFSET, MODEL_PATTERN, QUERIES
from books_scraper.api.predictions import DEFAULT_MODEL, MAX_RATING, MIN_RATING
from books_scraper.api.protection import ALLOWED_HEADERS, LIMITED
from books_scraper.api.web import COUNT_CAP, api_route, json_response

NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
NULLABLE_STRING = {"type": "string", "nullable": True}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _record(properties: dict, optional: tuple[str, ...] = ()) -> dict:
    """An object that always carries these keys (the OpenAPI test checks the real answers)."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties}


def _errors(*statuses: int) -> dict:
    return {
        str(status): {"$ref": "#/components/responses/" + ("Unavailable" if status == 503 else "Error")}
        for status in statuses
    }


def _page_of(key: str, item: dict) -> dict:
    return {
        "type": "object",
        "required": [key, "total", "total_exact", "limit", "offset", "next"],
        "properties": {
            key: {"type": "array", "items": item},
            "total": {**INTEGER, "description": f"rows in the whole list; when total_exact is false, "
                      f"at least this many (a filtered book list counts up to {COUNT_CAP})"},
            "total_exact": {"type": "boolean", "description": "false: total is a lower bound"},
            "limit": INTEGER,
            "offset": {**INTEGER, "description": "the offset asked for (0 on a page reached by a cursor)"},
            "next": {"type": "string", "nullable": True, "description": "URL of the next page, null on the "
                     "last; on the book lists it carries after=<cursor>: follow it as given"},
        },
    }


BEARER = [{"bearer": []}]
# Statuses every /api/v1 operation can answer, besides its own.
EVERY_OPERATION = {
    "401": {"$ref": "#/components/responses/MalformedAuthorization"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
}


def _operation(summary: str, responses: dict, path: str | None = None, errors=(), **extra) -> dict:
    """One operation; with `path`, its query parameters and their rules come from params.QUERIES."""
    operation = {"summary": summary, **extra}
    if path is not None:
        query = QUERIES[path]
        operation["parameters"] = query.openapi()
        if query.rules:
            operation["description"] = " ".join(filter(None, [extra.get("description"), query.description()]))
    operation["responses"] = {**EVERY_OPERATION, **responses, **_errors(*errors)}
    return operation


def _get(summary: str, ok: dict, path: str | None = None, errors=(503,)) -> dict:
    # 400: a query parameter out of its schema; 503: the database is not served.
    errors = (400, *errors) if path is not None else errors
    return {"get": _operation(summary, {"200": ok}, path, errors)}


# What every book list says about its pages and its total.
BOOK_PAGES = (
    "Pages: follow `next`, whose after=<cursor> starts the next page right after the last row, as fast "
    f"at any depth; offset jumps up to {MAX_OFFSET} rows (past it, 400). total is exact without filters "
    f"or with category filters only (from the figures computed at publication); with other filters "
    f"it counts up to {COUNT_CAP} rows (then total_exact is false). Rules:"
)


def _book_list(summary: str, path: str) -> dict:
    return {"get": _operation(
        summary, {"200": _json(_page_of("books", _ref("Book")), "a page of books")}, path, (400, 503),
        description=BOOK_PAGES,
    )}


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


def _prediction_batch(max_rows: int) -> dict:
    rows = {"type": "array", "items": _ref("PredictionIn"), "minItems": 1, "maxItems": max_rows}
    return {"oneOf": [
        rows,
        {
            "type": "object",
            "required": ["predictions"],
            "properties": {
                "model": {"type": "string", "pattern": MODEL_PATTERN, "default": DEFAULT_MODEL},
                "predictions": rows,
            },
        },
    ]}


def _token_request(summary: str, body: dict, ok: dict) -> dict:
    return {"post": _operation(
        summary, {"200": ok}, errors=(400, 401, 413, 415, 422, 503),
        description=f"401 for wrong credentials; 413 past {LOGIN_BODY_BYTES} bytes of body; "
        "503 when login is not configured (no JWT secret).",
        requestBody={"required": True, "content": {"application/json": {"schema": body}}},
    )}


JOB_ID = [{
    "name": "id", "in": "path", "required": True,
    "schema": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 10**18 - 1},
}]


def _start_job(summary: str) -> dict:
    job = _json(_ref("ScrapeJob"), "the job, queued; follow Location for its progress")
    job["headers"] = {"Location": {"description": "the job's URL", "schema": STRING}}
    return _operation(
        summary, {"202": job}, errors=(401, 403, 409, 503), security=BEARER,
        description="Starts `scrapy crawl books` as its own process, with the same safe publication. "
        "409 (job_running, details.job_id) while a job is queued or running; 503 when the operations "
        "database is not served or is read-only. Needs the books-api-crawl permission (role admin).",
    )


def _scraping_paths() -> dict:
    """/api/v1/scraping/*: every operation needs the books-api-crawl permission."""
    one_job = _json(_ref("ScrapeJob"), "the job")
    return {
        "/api/v1/scraping/jobs": {
            "get": _operation(
                "Scraping jobs, newest first", {"200": _json(_page_of("jobs", _ref("ScrapeJob")), "a page of jobs")},
                "/api/v1/scraping/jobs", errors=(400, 401, 403, 503), security=BEARER,
            ),
            "post": _start_job("Start a crawl in the background"),
        },
        "/api/v1/scraping/jobs/{id}": {
            "get": _operation(
                "One scraping job: status, times, progress, outcome", {"200": one_job},
                errors=(401, 403, 404, 503), security=BEARER, parameters=JOB_ID,
            ),
            "delete": _operation(
                "Cancel a queued or running job",
                {"200": _json(_ref("ScrapeJob"), "the job, cancelled (its crawl had not started or was gone)"),
                 "202": _json(_ref("ScrapeJob"), "the job, stopping: its crawl reports cancelled when it has")},
                errors=(401, 403, 404, 409, 503), security=BEARER, parameters=JOB_ID,
                description="The crawl stops gracefully and the published database is left as it was. "
                "409 (job_finished) for a job that already ended.",
            ),
        },
        "/api/v1/scraping/trigger": {
            "post": _start_job("Start a crawl: the same as POST /api/v1/scraping/jobs (the name the original clients use)"),
        },
        "/api/v1/scraping/status": {
            "get": _operation(
                "The latest scraping job: the same as GET /api/v1/scraping/jobs/{id} of the newest job "
                "(the name the original clients use)",
                {"200": one_job}, errors=(401, 403, 404, 503), security=BEARER,
                description="404 (no_jobs) before the first job.",
            ),
        },
    }


def paths(max_prediction_rows: int) -> dict:
    prediction_post = _operation(
        "Store a batch of predicted ratings (role ml or admin)",
        {"201": _json(
            {"type": "object", "properties": {
                "ok": {"type": "boolean"}, "batch_id": STRING, "model": STRING, "count": INTEGER,
            }},
            "the batch was stored",
        )},
        errors=(400, 401, 403, 413, 415, 422, 503),
        description="One bad row rejects the whole batch with 422 naming it (details.row): an id that is "
        "no published book's (unknown_book), the same id twice in the batch (duplicate_id), a rating "
        f"outside {MIN_RATING:g}..{MAX_RATING:g}. 413 beyond {max_prediction_rows} rows or the body size "
        "limit; 503 when the operations database is not served or read-only.",
        security=BEARER,
        requestBody={"required": True, "content": {"application/json": {
            "schema": _prediction_batch(max_prediction_rows),
        }}},
    )
    return {
        "/api/v1/health": _get(
            "Service health",
            _json(_record({
                "status": STRING, "database": {"type": "object"}, "books": INTEGER,
                "last_crawl": _crawl_run("the last published crawl in the served books database"),
                "latest_crawl_attempt": _crawl_run("the operations journal's latest attempt, any status"),
            }), "the service is up"),
        ),
        "/api/v1/ready": _get(
            "Readiness: 200 once a books database is published and readable, 503 (not_ready) before",
            _json(_record({"status": STRING, "books": INTEGER}), "the service can answer from published data"),
        ),
        "/api/v1/books": _book_list("List books", "/api/v1/books"),
        "/api/v1/books/{id}": {
            "get": _operation(
                "One book",
                {"200": _json(_ref("Book"), "the book")},
                errors=(404, 503),
                description="404 for an id no book has, or one that is not 1-18 digits.",
                parameters=[{
                    "name": "id", "in": "path", "required": True,
                    "schema": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 10**18 - 1},
                }],
            )
        },
        "/api/v1/books/search": _book_list(
            "Case-insensitive partial match on title and/or category", "/api/v1/books/search"
        ),
        "/api/v1/books/top-rated": _book_list("Books by rating, best first", "/api/v1/books/top-rated"),
        "/api/v1/books/price-range": _book_list(
            "Books within a price range, cheapest first", "/api/v1/books/price-range"
        ),
        "/api/v1/categories": _get(
            "Every category with its book count",
            _json(_page_of("categories", _ref("Category")), "categories"),
            "/api/v1/categories",
        ),
        "/api/v1/stats/overview": _get("Catalogue totals", _json(_ref("Overview"), "totals")),
        "/api/v1/stats/categories": _get(
            "Per-category figures, a bare list",
            _json({"type": "array", "items": _ref("CategoryStats")}, "one entry per category"),
        ),
        "/api/v1/ml/features": _get(
            "Numeric features, one row per book: every book unless limit is given",
            _tabular("features", _page_of("features", _ref("Features")), ("csv",)),
            "/api/v1/ml/features",
        ),
        "/api/v1/ml/training-data": _get(
            "Every book field, optionally one side of a deterministic split",
            _tabular("training rows", _training_page(), ("csv", "ndjson")),
            "/api/v1/ml/training-data",
        ),
        "/api/v1/ml/predictions": {
            "get": _get(
                "Stored predictions",
                _json(_page_of("predictions", _ref("Prediction")), "a page of predictions"),
                "/api/v1/ml/predictions",
            )["get"],
            "post": prediction_post,
        },
        "/api/v1/ml/predictions/summary": _get(
            "Per model: count, MAE and RMSE against the actual ratings",
            _json({"type": "object", "properties": {"models": {"type": "array", "items": _ref("ModelSummary")}}},
                  "scores"),
            "/api/v1/ml/predictions/summary",
        ),
        "/api/v1/auth/login": _token_request(
            "Exchange username and password for JWTs",
            {"type": "object", "required": ["username", "password"],
             "properties": {"username": STRING, "password": STRING}},
            _json(_ref("Tokens"), "tokens"),
        ),
        "/api/v1/auth/refresh": _token_request(
            "Exchange a refresh token for a new access token",
            {"type": "object", "required": ["refresh_token"], "properties": {"refresh_token": STRING}},
            _json(_ref("Tokens"), "a new access token"),
        ),
        "/api/v1/openapi.json": _get("This document", _json({"type": "object"}, "OpenAPI 3"), errors=()),
        "/api/v1": _get(
            "This API's index: where its reference, this document and its health are",
            _json(_record({"name": STRING, "version": STRING, "docs": STRING, "openapi": STRING,
                           "health": STRING}), "links"),
            errors=(),
        ),
        "/api/v1/docs": _get(
            "This document as a page to browse and try (Swagger UI; its scripts and styles come from"
            " /api/v1/docs/init.js and /api/v1/docs/assets/)",
            {"description": "the page", "content": {"text/html": {"schema": STRING}}},
            errors=(),
        ),
        **_scraping_paths(),
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
            "id": {**INTEGER, "description": "a published book's id"},
            "predicted_rating": {"type": "number", "minimum": MIN_RATING, "maximum": MAX_RATING},
        }},
        "Prediction": _record({
            "id": INTEGER, "batch_id": STRING, "model": STRING, "book_id": INTEGER,
            "predicted_rating": NUMBER, "actor": NULLABLE_STRING, "created_at": STRING,
        }),
        "ModelSummary": _record({
            "model": STRING, "predictions": INTEGER, "batches": INTEGER, "evaluated": INTEGER,
            "mae": nullable_number, "rmse": nullable_number, "last_prediction_at": STRING,
        }),
        "ScrapeJob": _record({
            "id": INTEGER, "url": STRING,
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "trigger": {"type": "string", "enum": ["api", "schedule"]}, "actor": NULLABLE_STRING,
            "created_at": STRING, "started_at": NULLABLE_STRING, "finished_at": NULLABLE_STRING,
            "start_url": NULLABLE_STRING, "crawl_run_id": nullable_integer,
            "progress": {
                **_record({
                    "books": INTEGER, "expected": nullable_integer, "pages": INTEGER,
                    "failed_pages": {"type": "object", "additionalProperties": INTEGER},
                    "drops": {"type": "object", "additionalProperties": INTEGER},
                }),
                "nullable": True, "description": "null until the crawl's first report",
            },
            "published": {"type": "boolean"}, "books": {**nullable_integer, "description": "books published"},
            "reason": {**NULLABLE_STRING, "description": "why it failed or was cancelled, one line"},
            "cancel_requested": {"type": "boolean"},
        }),
        "Tokens": _record({
            "access_token": STRING, "refresh_token": STRING, "token_type": STRING,
            "expires_in": INTEGER, "refresh_expires_in": INTEGER, "roles": {"type": "array", "items": STRING},
        }, optional=("refresh_token", "refresh_expires_in")),  # refresh answers a new access token only
    }


def _header(description: str) -> dict:
    return {"description": description, "schema": STRING}


def _preflight(item: dict) -> dict:
    """OPTIONS on every path: 204 with Allow, and the CORS headers when the Origin is allowed."""
    methods = [method.upper() for method in item]
    methods += ["HEAD"] if "GET" in methods else []
    operation = _operation(
        "CORS preflight: the methods this path answers",
        {"204": {"description": "no content", "headers": {
            "Allow": _header(f"the methods this path answers: {', '.join([*methods, 'OPTIONS'])}"),
            "Access-Control-Allow-Origin": _header("the Origin, when cors.origins allows it"),
            "Access-Control-Allow-Methods": _header("the methods the Origin may use"),
            "Access-Control-Allow-Headers": _header(ALLOWED_HEADERS),
            "Access-Control-Max-Age": _header("seconds a browser may keep this answer"),
        }}},
        description="Answered on every path. Only an Origin that metadata.yml's cors.origins allows gets "
        "the Access-Control-Allow-* headers; any other gets none, so the browser refuses the request.",
        parameters=[
            {"name": "Origin", "in": "header", "required": False, "schema": STRING},
            {"name": "Access-Control-Request-Method", "in": "header", "required": False, "schema": STRING},
            {"name": "Access-Control-Request-Headers", "in": "header", "required": False, "schema": STRING},
        ],
    )
    del operation["responses"]["405"]  # OPTIONS is answered on every path
    in_path = [
        parameter for parameter in next(iter(item.values())).get("parameters", []) if parameter["in"] == "path"
    ]
    if in_path:  # the same path variables; a value the route does not match is a 404
        operation["parameters"] = in_path + operation["parameters"]
        operation["responses"].update(_errors(404))
    return operation


def _protected(document_paths: dict) -> dict:
    """Every path answers OPTIONS; every rate-limited operation (protection.LIMITED) may answer 429."""
    for path, item in document_paths.items():
        for (method, limited_path) in LIMITED:
            if limited_path == path and method.lower() in item:
                item[method.lower()]["responses"]["429"] = {"$ref": "#/components/responses/RateLimited"}
        item["options"] = _preflight(item)
    return document_paths


# The brief's namespaces, by path prefix (the longest that matches), as OpenAPI tags.
NAMESPACES = {
    "/api/v1/books": "Books", "/api/v1/categories": "Categories", "/api/v1/stats": "Stats",
    "/api/v1/ml": "ML", "/api/v1/auth": "Auth", "/api/v1/scraping": "Scraping", "/api/v1": "Service",
}


def _tagged(items: dict) -> dict:
    """Each operation tagged with its namespace, so a reader (Swagger UI) groups them."""
    for path, item in items.items():
        tag = NAMESPACES[max((prefix for prefix in NAMESPACES if path.startswith(prefix)), key=len)]
        for operation in item.values():
            operation.setdefault("tags", [tag])
    return items


def openapi_document(server_url: str, max_prediction_rows: int) -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Books API",
            "version": "1.0.0",
            "description": "books.toscrape.com catalogue, statistics and ML feedback. "
            "Every error is {ok: false, status, error, error_code}.",
        },
        "servers": [{"url": server_url}],
        "tags": [{"name": name} for name in NAMESPACES.values()],
        "paths": _tagged(_protected(paths(max_prediction_rows))),
        "components": {
            "schemas": schemas(),
            "responses": {
                "Error": _json(_ref("Error"), "an error, in the one envelope"),
                "Unavailable": {
                    **_json(_ref("Error"), "a database is not served (database_unavailable, ...), or a query "
                            "was stopped at the server's SQL time limit (query_timeout, with Retry-After)"),
                    "headers": {"Retry-After": {
                        "description": "with query_timeout: seconds to wait before trying again",
                        "schema": {"type": "integer", "minimum": 1},
                    }},
                },
                "MalformedAuthorization": _json(
                    _ref("Error"), "an Authorization header no token can match (not a printable ASCII Bearer token)"
                ),
                "RateLimited": {
                    **_json(_ref("Error"), "too many requests (error_code rate_limited); limits: metadata.yml's "
                            "books-api rate_limits"),
                    "headers": {"Retry-After": {
                        "description": "seconds until a request is allowed again", "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                    }},
                },
                "MethodNotAllowed": {
                    **_json(_ref("Error"), "a method this path does not answer"),
                    "headers": {"Allow": {"description": "the methods it does answer", "schema": STRING}},
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a static API token or a JWT access token from /api/v1/auth/login"},
            },
        },
    }


async def openapi(request, datasette):
    rows = api_config(datasette).max_prediction_rows
    return json_response(openapi_document(datasette.absolute_url(request, "/"), rows))


ROUTES = [(r"^/api/v1/openapi\.json$", api_route(get=openapi))]
