"""Auth: static tokens (datasette-auth-tokens) and JWTs (login/refresh), roles, 401 vs 403, CSRF."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import jwt
import pytest
from api_support import ENV, JWT_SECRET, PASSWORDS, TOKENS, api_metadata, assert_error, bearer, make_datasette
from support import query
from books_scraper.api import auth


def jwt_for(username: str, roles: list[str], kind: str = "access", ttl: int = 600, secret: str = JWT_SECRET,
            now: float | None = None) -> str:
    return auth.issue_token(secret, subject=username, roles=roles, kind=kind, ttl=ttl, now=now)


def sentence(text: str) -> str:
    """A credential's name or a path as part of a test id: 'static viewer (no role)' ->
    'static-viewer-no-role', 'none' -> 'no-credentials', '/api/v1/ml/predictions' -> 'posting-a-batch'."""
    text = {"none": "no credentials", "/api/v1/ml/predictions": "posting a batch"}.get(text, text)
    return "-".join(text.replace("(", "").replace(")", "").split())


# name -> Authorization header value (None: no header)
CREDENTIALS = {
    "none": lambda: None,
    "bad static token": lambda: "Bearer not-a-real-token",
    "not bearer": lambda: f"Token {TOKENS['ml']}",
    "expired jwt": lambda: "Bearer " + jwt_for("scientist", ["ml"], now=time.time() - 3600, ttl=60),
    "jwt wrong secret": lambda: "Bearer " + jwt_for("scientist", ["ml"], secret="another-secret-" + "y" * 40),
    "refresh jwt as access": lambda: "Bearer " + jwt_for("scientist", ["ml"], kind="refresh"),
    "jwt alg none": lambda: "Bearer " + jwt.encode(
        {"iss": "books-api", "sub": "x", "roles": ["admin"], "type": "access", "iat": int(time.time()),
         "exp": int(time.time()) + 60}, key=None, algorithm="none"),
    "static viewer (no role)": lambda: f"Bearer {TOKENS['viewer']}",
    "jwt viewer (no role)": lambda: "Bearer " + jwt_for("viewer", []),
    "jwt unknown user": lambda: "Bearer " + jwt_for("someone", ["admin"]),
    "jwt role its user lacks": lambda: "Bearer " + jwt_for("scientist", ["admin"]),
    "jwt unknown role": lambda: "Bearer " + jwt_for("admin", ["root"]),
    "jwt roles not a list": lambda: "Bearer " + jwt.encode(
        {"iss": "books-api", "sub": "admin", "roles": "admin", "type": "access", "iat": int(time.time()),
         "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256"),
    "static ml": lambda: f"Bearer {TOKENS['ml']}",
    "static admin": lambda: f"Bearer {TOKENS['admin']}",
    "jwt ml": lambda: "Bearer " + jwt_for("scientist", ["ml"]),
    "jwt admin": lambda: "Bearer " + jwt_for("admin", ["admin"]),
}


@pytest.mark.parametrize(
    "credential,path,status",
    [
        ("none", "/api/v1/ml/predictions", 401),
        ("bad static token", "/api/v1/ml/predictions", 401),
        ("not bearer", "/api/v1/ml/predictions", 401),
        ("expired jwt", "/api/v1/ml/predictions", 401),
        ("jwt wrong secret", "/api/v1/ml/predictions", 401),
        ("refresh jwt as access", "/api/v1/ml/predictions", 401),
        ("jwt alg none", "/api/v1/ml/predictions", 401),
        ("static viewer (no role)", "/api/v1/ml/predictions", 403),
        ("jwt viewer (no role)", "/api/v1/ml/predictions", 403),
        ("jwt unknown user", "/api/v1/ml/predictions", 401),
        ("jwt role its user lacks", "/api/v1/ml/predictions", 401),
        ("jwt unknown role", "/api/v1/ml/predictions", 401),
        ("jwt roles not a list", "/api/v1/ml/predictions", 401),
        ("static ml", "/api/v1/ml/predictions", 201),
        ("static admin", "/api/v1/ml/predictions", 201),
        ("jwt ml", "/api/v1/ml/predictions", 201),
        ("jwt admin", "/api/v1/ml/predictions", 201),
    ],
    ids=lambda value: f"gets-{value}" if isinstance(value, int) else sentence(value),
)
async def test_post_predictions_auth_matrix(writable_api, credential, path, status):
    ds, published = writable_api
    book = query(published.path, "select min(id) as id from books")[0]["id"]
    header = CREDENTIALS[credential]()
    headers = {"Authorization": header} if header else {}
    response = await ds.client.post(path, json=[{"id": book, "predicted_rating": 3}], headers=headers)
    if status == 201:
        assert response.status_code == 201, response.text
    else:
        body = assert_error(response, status, "unauthorized" if status == 401 else "forbidden")
        assert body["error"]
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert query(published.operations_path, "select count(*) as n from predictions")[0]["n"] == 0


@pytest.mark.parametrize(
    "role,action,allowed",
    [
        pytest.param("ml", "books-api-predict", True, id="ml-may-post-predictions"),
        pytest.param("admin", "books-api-predict", True, id="admin-may-post-predictions"),
        pytest.param("reader", "books-api-predict", False, id="a-reader-may-not-post-predictions"),
        # the scraping trigger (a later issue) is admin only
        pytest.param("ml", "books-api-crawl", False, id="ml-may-not-trigger-a-crawl"),
        pytest.param("admin", "books-api-crawl", True, id="admin-may-trigger-a-crawl"),
    ],
)
async def test_roles_per_action(api, role, action, allowed):
    assert await api.permission_allowed({"id": "x", "roles": [role]}, action, default=False) is allowed


@pytest.mark.parametrize(
    "credential", ["none", "bad static token", "expired jwt", "static viewer (no role)"], ids=sentence
)
async def test_public_reads_need_no_credentials(api, credential):
    header = CREDENTIALS[credential]()
    response = await api.client.get("/api/v1/books?limit=1", headers={"Authorization": header} if header else {})
    assert response.status_code == 200


async def login(ds, username, password, **headers):
    return await ds.client.post("/api/v1/auth/login", json={"username": username, "password": password}, headers=headers)


async def test_login_then_post_then_refresh(writable_api):
    ds, published = writable_api
    response = await login(ds, "scientist", PASSWORDS["scientist"])
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["roles"] == ["ml"]
    assert tokens["expires_in"] == 900 and tokens["refresh_expires_in"] == 604800
    claims = jwt.decode(tokens["access_token"], JWT_SECRET, algorithms=["HS256"], issuer="books-api")
    assert claims["exp"] - claims["iat"] == 900 and claims["type"] == "access"
    book = query(published.path, "select min(id) as id from books")[0]["id"]
    posted = await ds.client.post(
        "/api/v1/ml/predictions", json=[{"id": book, "predicted_rating": 1}], headers=bearer(tokens["access_token"])
    )
    assert posted.status_code == 201
    assert query(published.operations_path, "select actor from predictions")[0]["actor"] == "scientist"
    refreshed = await ds.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert auth.read_token(JWT_SECRET, refreshed.json()["access_token"], "access")["sub"] == "scientist"


async def test_other_requests_are_answered_while_a_password_is_checked(api, monkeypatch):
    check, started, finished = auth.verify_password, threading.Event(), []

    def slow_check(password, encoded):
        started.set()
        time.sleep(0.5)
        finished.append(time.monotonic())
        return check(password, encoded)

    monkeypatch.setattr(auth, "verify_password", slow_check)
    logging_in = asyncio.create_task(login(api, "admin", PASSWORDS["admin"]))
    assert await asyncio.to_thread(started.wait, 5)
    assert (await api.client.get("/api/v1/health")).status_code == 200
    answered = time.monotonic()
    assert (await logging_in).status_code == 200
    assert answered < finished[0]


async def test_login_with_browser_cookies_still_works(api):
    # /api/v1 skips Datasette's cookie CSRF check: the API never authenticates by cookie.
    response = await login(api, "admin", PASSWORDS["admin"], cookie="ds_csrftoken=abc; other=1")
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["admin"]


async def test_a_wrong_token_is_told_apart_from_no_token(writable_api):
    ds, _published = writable_api
    none = await ds.client.post("/api/v1/ml/predictions", json=[])
    wrong = await ds.client.post("/api/v1/ml/predictions", json=[], headers=bearer("not-a-token-of-ours"))
    assert "send Authorization" in assert_error(none, 401, "unauthorized")["error"]
    assert "not valid" in assert_error(wrong, 401, "unauthorized")["error"]
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert "error=" not in none.headers["www-authenticate"]


async def test_a_cookie_actor_cannot_post_predictions(writable_api):
    ds, published = writable_api
    cookie = ds.sign({"a": {"id": "root", "roles": ["admin"]}}, "actor")
    response = await ds.client.post(
        "/api/v1/ml/predictions", content=b'[{"id": 1, "predicted_rating": 1}]',
        headers={"cookie": f"ds_actor={cookie}", "content-type": "text/plain"},
    )
    assert_error(response, 401, "unauthorized")
    assert query(published.operations_path, "select count(*) as n from predictions")[0]["n"] == 0


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/x-www-form-urlencoded", id="a-url-encoded-form"),
        pytest.param("text/plain", id="a-plain-text-form"),
        pytest.param("multipart/form-data; boundary=x", id="a-multipart-form"),
    ],
)
async def test_form_posts_with_cookies_get_json_errors_not_csrf_pages(api, content_type):
    response = await api.client.post(
        "/api/v1/auth/login", content=b"username=a&password=b",
        headers={"cookie": "ds_csrftoken=abc", "content-type": content_type},
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type,status",
    [
        pytest.param("application/json", 200, id="json"),
        pytest.param("application/json; charset=utf-8", 200, id="json-with-a-charset"),
        pytest.param("Application/JSON", 200, id="json-in-capitals"),
        pytest.param("application/vnd.books+json", 200, id="a-plus-json-type"),
        pytest.param("text/plain", 415, id="plain-text-is-415"),
        pytest.param("application/x-www-form-urlencoded", 415, id="a-form-is-415"),
        pytest.param("application/jsonp", 415, id="jsonp-is-not-json-415"),
        pytest.param(None, 415, id="no-content-type-is-415"),
    ],
)
async def test_login_takes_json_bodies_only(api, content_type, status):
    body = json.dumps({"username": "admin", "password": PASSWORDS["admin"]}).encode()
    headers = {"content-type": content_type} if content_type else {}
    response = await api.client.post("/api/v1/auth/login", content=body, headers=headers)
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, status, "unsupported_media_type")


@pytest.mark.parametrize(
    "body,status,code",
    [
        pytest.param({"username": "scientist", "password": "wrong"}, 401, "invalid_credentials",
                     id="a-wrong-password"),
        pytest.param({"username": "nobody", "password": "whatever"}, 401, "invalid_credentials",
                     id="an-unknown-user"),
        pytest.param({"username": "scientist"}, 422, "invalid_credentials_body", id="no-password"),
        pytest.param({"username": 1, "password": 2}, 422, "invalid_credentials_body",
                     id="credentials-that-are-not-text"),
        pytest.param(["scientist", "x"], 422, "invalid_credentials_body", id="a-list-instead-of-an-object"),
        pytest.param(b"{not json", 400, "invalid_json", id="a-body-that-is-not-json"),
        pytest.param(b"[" * 2000 + b"]" * 2000, 400, "invalid_json", id="json-nested-too-deep-for-the-parser"),
        pytest.param(b"x" * 5000, 413, "payload_too_large", id="a-body-over-4096-bytes"),
    ],
)
async def test_login_bad_input(api, body, status, code):
    if isinstance(body, bytes):
        response = await api.client.post("/api/v1/auth/login", content=body, headers={"content-type": "application/json"})
    else:
        response = await api.client.post("/api/v1/auth/login", json=body)
    assert_error(response, status, code)


@pytest.mark.parametrize(
    "token,status,code",
    [
        pytest.param(lambda: jwt_for("scientist", ["ml"], kind="access"), 401, "invalid_token",
                     id="access-token-used-as-refresh"),
        pytest.param(lambda: jwt_for("scientist", ["ml"], kind="refresh", now=time.time() - 10**6, ttl=60),
                     401, "invalid_token", id="an-expired-refresh-token"),
        pytest.param(lambda: jwt_for("ghost", ["admin"], kind="refresh"), 401, "invalid_token",
                     id="a-refresh-token-of-a-user-no-longer-configured"),
        pytest.param(lambda: "garbage", 401, "invalid_token", id="a-token-that-is-not-a-jwt"),
        pytest.param(lambda: 12, 422, "invalid_refresh_body", id="a-token-that-is-not-text"),
    ],
)
async def test_refresh_bad_input(api, token, status, code):
    response = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": token()})
    assert_error(response, status, code)


async def test_refresh_takes_roles_from_current_configuration(published_db, api_env):
    metadata = api_metadata()
    refresh_token = jwt_for("scientist", ["admin"], kind="refresh")  # claims more than configured
    response = await make_datasette(published_db, metadata).client.post(
        "/api/v1/auth/refresh", json={"refresh_token": refresh_token}
    )
    assert response.json()["roles"] == ["ml"]


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh"])
async def test_auth_routes_are_post_only(api, path):
    response = await api.client.get(path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_without_a_jwt_secret_login_is_503_and_static_tokens_still_work(published_copy, monkeypatch, api_env):
    monkeypatch.delenv("BOOKS_JWT_SECRET")
    ds = make_datasette(published_copy)
    assert_error(await login(ds, "admin", PASSWORDS["admin"]), 503, "login_unavailable")
    book = query(published_copy.path, "select min(id) as id from books")[0]["id"]
    response = await ds.client.post(
        "/api/v1/ml/predictions", json=[{"id": book, "predicted_rating": 1}], headers=bearer(TOKENS["ml"])
    )
    assert response.status_code == 201, response.text


async def test_short_jwt_secret_is_refused(published_db, monkeypatch, api_env):
    monkeypatch.setenv("BOOKS_JWT_SECRET", "short")
    assert_error(await login(make_datasette(published_db), "admin", PASSWORDS["admin"]), 503, "login_unavailable")


async def test_unset_static_token_variables_disable_those_tokens_without_500s(published_db, monkeypatch, api_env):
    # datasette-auth-tokens would raise on a None secret for every Bearer request.
    monkeypatch.delenv("BOOKS_API_TOKEN_ADMIN")
    ds = make_datasette(published_db)
    response = await ds.client.post("/api/v1/ml/predictions", json=[], headers=bearer("anything"))
    assert_error(response, 401, "unauthorized")
    response = await ds.client.post("/api/v1/ml/predictions", json=[], headers=bearer(TOKENS["ml"]))
    assert_error(response, 422, "empty_batch")  # the ML token still authenticates


async def test_metadata_holds_no_secrets():
    from api_support import METADATA
    import yaml

    plugins = yaml.safe_load(METADATA.read_text())["plugins"]
    for user in plugins["books-api"]["users"]:
        assert set(user["password_hash"]) == {"$env"}
    assert set(plugins["books-api"]["jwt_secret"]) == {"$env"}
    for token in plugins["datasette-auth-tokens"]["tokens"]:
        assert set(token["token"]) == {"$env"}
    assert not any(secret in METADATA.read_text() for secret in ENV.values())
