"""A data scientist's round trip with the books API: fetch training data, fit a model, post its
predictions for the held-out books, read back how good they were.

    BOOKS_API_TOKEN=... python examples/train_and_predict.py --url http://127.0.0.1:8001
    BOOKS_API_USERNAME=scientist BOOKS_API_PASSWORD=... python examples/train_and_predict.py

BOOKS_API_TOKEN is a token the server accepts for the `ml` role: the value of the server's
BOOKS_API_TOKEN_ML (a static service token), or a JWT access token from /api/v1/auth/login. Without
it, the script logs in as BOOKS_API_USERNAME with BOOKS_API_PASSWORD (the user's password, whose
hash the server has in BOOKS_API_SCIENTIST_PASSWORD_HASH). It checks them before it downloads
anything.

The model is ordinary least squares on a few numeric columns plus the category's mean rating in the
training split, solved with plain Python: no numpy needed. Prints one JSON object with the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections import defaultdict

CREDENTIALS_HELP = (
    "no credentials: set BOOKS_API_TOKEN (the server's BOOKS_API_TOKEN_ML, or a JWT access token), "
    "or BOOKS_API_USERNAME and BOOKS_API_PASSWORD (a user the server can log in)"
)


class ApiFailure(Exception):
    """The API answered an error: its status and the envelope's message, or why it could not be reached."""


def fetch(base: str, path: str, token: str | None = None, body: object = None) -> str:
    request = urllib.request.Request(base.rstrip("/") + path, method="POST" if body is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=60) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        raise ApiFailure(f"{request.get_method()} {path}: {error.code} {envelope_message(error)}") from None
    except urllib.error.URLError as error:
        raise ApiFailure(f"cannot reach {base}: {error.reason} (another address: --url or BOOKS_API_URL)") from None


def envelope_message(error: urllib.error.HTTPError) -> str:
    """The API's JSON error ({"error": ..., "error_code": ...}), or the body as it came."""
    text = error.read().decode(errors="replace")
    try:
        body = json.loads(text)
        return f"{body['error']} ({body['error_code']})"
    except (ValueError, KeyError, TypeError):
        return text[:300]


def call(base: str, path: str, token: str | None = None, body: object = None) -> dict:
    return json.loads(fetch(base, path, token, body))


def access_token(base: str) -> str:
    """A token for posting predictions, checked before any data is downloaded."""
    environ = os.environ
    if environ.get("BOOKS_API_TOKEN"):
        token = environ["BOOKS_API_TOKEN"]
    elif environ.get("BOOKS_API_USERNAME") and environ.get("BOOKS_API_PASSWORD"):
        credentials = {"username": environ["BOOKS_API_USERNAME"], "password": environ["BOOKS_API_PASSWORD"]}
        token = call(base, "/api/v1/auth/login", body=credentials)["access_token"]
    else:
        raise ApiFailure(CREDENTIALS_HELP)
    # An empty batch is refused as such (422) only once the token is accepted: 401/403 say it is not.
    try:
        call(base, "/api/v1/ml/predictions", token, {"model": "credentials-check", "predictions": []})
    except ApiFailure as failure:
        if " 422 " not in str(failure):
            raise
    return token


def training_rows(base: str, split: str, seed: int) -> list[dict]:
    text = fetch(base, f"/api/v1/ml/training-data?split={split}&seed={seed}&format=ndjson")
    return [json.loads(line) for line in text.splitlines()]


class RatingModel:
    def fit(self, rows: list[dict]) -> "RatingModel":
        self.mean = sum(r["rating"] for r in rows) / len(rows)
        by_category = defaultdict(list)
        for row in rows:
            by_category[row["category_id"]].append(row["rating"])
        self.category_mean = {c: sum(v) / len(v) for c, v in by_category.items()}
        self.weights = least_squares([self.features(r) for r in rows], [r["rating"] for r in rows])
        return self

    def features(self, row: dict) -> list[float]:
        return [
            1.0,
            row["price"],
            float(row.get("stock_count") or 0),
            self.category_mean.get(row["category_id"], self.mean),
        ]

    def predict(self, row: dict) -> float:
        value = sum(w * x for w, x in zip(self.weights, self.features(row)))
        return min(5.0, max(0.0, value))


def least_squares(x: list[list[float]], y: list[float], ridge: float = 1e-6) -> list[float]:
    """Solve (XᵀX + ridge·I) w = Xᵀy by Gaussian elimination with partial pivoting."""
    n = len(x[0])
    a = [[sum(row[i] * row[j] for row in x) + (ridge if i == j else 0.0) for j in range(n)] for i in range(n)]
    b = [sum(row[i] * t for row, t in zip(x, y)) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            a[r] = [v - factor * p for v, p in zip(a[r], a[col])]
            b[r] -= factor * b[col]
    w = [0.0] * n
    for i in reversed(range(n)):
        w[i] = (b[i] - sum(a[i][j] * w[j] for j in range(i + 1, n))) / a[i][i]
    return w


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("BOOKS_API_URL", "http://127.0.0.1:8001"))
    parser.add_argument("--model", default="least-squares-v1")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ApiFailure as failure:
        sys.exit(f"train_and_predict: {failure}")


def run(args: argparse.Namespace) -> dict:
    token = access_token(args.url)
    train = training_rows(args.url, "train", args.seed)
    test = training_rows(args.url, "test", args.seed)
    model = RatingModel().fit(train)
    predictions = [{"id": row["id"], "predicted_rating": round(model.predict(row), 4)} for row in test]
    stored = call(args.url, "/api/v1/ml/predictions", token,
                  {"model": args.model, "predictions": predictions})
    summary = call(args.url, f"/api/v1/ml/predictions/summary?model={args.model}")["models"]
    report = {
        "model": args.model,
        "batch_id": stored["batch_id"],
        "train_rows": len(train),
        "test_rows": len(test),
        "weights": [round(w, 6) for w in model.weights],
        "summary": summary[0] if summary else None,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
