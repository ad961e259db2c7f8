"""Schemathesis over the whole /api/v1 OpenAPI document, as the server serves it, against the
in-process Datasette: every operation, every built-in check, valid and invalid requests, anonymous
and with the `ml` static token. The posted predictions name real books, so valid batches reach 201.

Zero failures means: no 5xx, no status or header or body the document does not describe, no valid
request refused and no invalid one accepted. Examples are bounded (MAX_EXAMPLES) to keep it ~a minute.
"""

from __future__ import annotations

import os
import shutil

import pytest
import schemathesis
from api_support import ENV, PLUGINS, TOKENS, api_metadata, bearer, make_datasette
from conftest import PublishedDatabase
from datasette.app import Datasette
from schemathesis.config import SchemathesisConfig
from support import query

from books_scraper.api.config import RATE_LIMITS
from books_scraper.api.params import QUERIES

# A deeper run now and then: BOOKS_SCHEMATHESIS_EXAMPLES=500 pytest tests/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("BOOKS_SCHEMATHESIS_EXAMPLES", "25"))
PREDICTIONS = "/api/v1/ml/predictions"
CONFIG = {
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
    "checks": {
        # 413 is how the API refuses a batch past maxItems (or a body past its size limit).
        "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422]},
    },
    "phases": {"stateful": {"enabled": False}},
}
# Every row of a valid batch names a distinct published book: a batch limit under the catalogue's
# size (45 books without the site's copy) keeps the longest valid batch possible.
MAX_PREDICTION_ROWS = 30
WHO = [pytest.param(None, id="anonymous"), pytest.param("ml", id="ml-token")]
BOOK_IDS: list[int] = []  # the published books', filled by the `app` fixture before any case is drawn
POST_STATUSES: dict[str, set[int]] = {}  # who -> statuses POST /api/v1/ml/predictions answered


def metadata() -> dict:
    metadata = api_metadata()
    metadata["plugins"]["books-api"]["max_prediction_rows"] = MAX_PREDICTION_ROWS
    # Hundreds of logins from one address: limits no run reaches (tests/test_protection.py tests them).
    metadata["plugins"]["books-api"]["rate_limits"] = {key: "100000/second" for key in RATE_LIMITS}
    return metadata


def served_document_schema() -> schemathesis.schemas.BaseSchema:
    """The document /api/v1/openapi.json serves (it needs no database), loaded through the app."""
    app = Datasette(memory=True, metadata=metadata(), plugins_dir=str(PLUGINS)).app()
    return schemathesis.openapi.from_asgi(
        "/api/v1/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG)
    )


schema = served_document_schema()


def use_real_book_ids(body) -> None:
    """Each integer id in a posted batch becomes a distinct published book's id: a valid batch can
    then be stored (201); an invalid one stays invalid (only integer ids are touched). Done on the
    case itself, not in a map_body hook: the coverage phase's bodies do not go through hooks."""
    rows = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(rows, list):
        return
    taken: set[int] = set()
    for row in rows:
        if isinstance(row, dict) and type(row.get("id")) is int and len(taken) < len(BOOK_IDS):
            index = row["id"] % len(BOOK_IDS)
            while BOOK_IDS[index] in taken:
                index = (index + 1) % len(BOOK_IDS)
            row["id"] = BOOK_IDS[index]
            taken.add(row["id"])


@schema.hook("filter_case")
def cross_parameter_rules(context, case):
    """A valid request also keeps the rules between parameters that OpenAPI 3.0 cannot express
    (each operation's description states them; params.QUERIES declares them)."""
    declared = QUERIES.get(case.operation.path) if case.method == "GET" else None
    if declared is None or case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    try:
        values = declared.values({k: str(v) for k, v in (case.query or {}).items() if not isinstance(v, list)})
    except Exception:  # a value the server will refuse on its own: let the checks judge that
        return True
    return all(rule.holds(values) for rule in declared.rules)


@pytest.fixture(scope="module")
def app(published_db, tmp_path_factory):
    """Datasette over a private copy of the published databases (the posted batches are stored)."""
    work = tmp_path_factory.mktemp("schemathesis")
    copy = PublishedDatabase(work / "books.db", work / "operations.db", published_db.source)
    shutil.copyfile(published_db.path, copy.path)
    shutil.copyfile(published_db.operations_path, copy.operations_path)
    BOOK_IDS[:] = [row["id"] for row in query(copy.path, "select id from books order by id")]
    with pytest.MonkeyPatch.context() as env:
        for name, secret in ENV.items():
            env.setenv(name, secret)
        yield make_datasette(copy, metadata()).app()


@pytest.mark.parametrize("who", WHO)
@schema.parametrize()
def test_api_answers_as_documented(case, app, who):
    posting = case.operation.path == PREDICTIONS and case.method == "POST"
    if posting:
        use_real_book_ids(case.body)
    response = case.call_and_validate(app=app, headers=bearer(TOKENS[who]) if who else None)
    if posting:
        POST_STATUSES.setdefault(who or "anonymous", set()).add(response.status_code)


def test_generated_batches_were_stored_with_the_token_and_refused_without():
    """The POST cases above reached the store, not only the validation (run after them)."""
    if not POST_STATUSES:
        pytest.skip("runs after the Schemathesis cases of POST /api/v1/ml/predictions")
    assert 201 in POST_STATUSES["ml"], POST_STATUSES
    assert POST_STATUSES["anonymous"] == {401}, POST_STATUSES
