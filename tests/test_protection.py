"""Protection for /api/v1 (books_scraper/api/protection.py): rate limits answer 429 with Retry-After and
the envelope, then recover; CORS headers only for allowed origins. In process, with the client address
chosen per request (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from api_support import ENV, PASSWORDS, TOKENS, api_metadata, assert_error, bearer, make_datasette

from books_scraper.api.config import RATE_LIMITS, ConfigError, parse_config
from books_scraper.api.login import LOGIN_BODY_BYTES
from books_scraper.web.served_metadata import resolve_env

LOGIN, REFRESH = "/api/v1/auth/login", "/api/v1/auth/refresh"
JOBS, TRIGGER = "/api/v1/scraping/jobs", "/api/v1/scraping/trigger"
HIGH = "1000/second"  # a limit no test reaches
ALLOWED, OTHER = "http://127.0.0.1:8123", "http://127.0.0.1:8124"


def protected(published_db, rate_limits: dict | None = None, origins: list | None = None):
    """Datasette with these rate limits (the others high) and CORS origins."""
    metadata = api_metadata()
    block = metadata["plugins"]["books-api"]
    block["rate_limits"] = {key: HIGH for key in RATE_LIMITS} | (rate_limits or {})
    if origins is not None:
        block["cors"] = {"origins": origins}
    return make_datasette(published_db, metadata)


def client(ds, address: str = "192.0.2.1") -> httpx.AsyncClient:
    """A client calling from `address` (the ASGI scope's client host)."""
    transport = httpx.ASGITransport(app=ds.app(), client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


async def login(http: httpx.AsyncClient, username: str = "admin", password: str = "wrong") -> httpx.Response:
    return await http.post(LOGIN, json={"username": username, "password": password})


def assert_rate_limited(response: httpx.Response, window: int = 1) -> int:
    """429 in the envelope, with Retry-After in whole seconds within the limit's window."""
    assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window, retry_after
    return retry_after


async def wait_out(retry_after: int) -> None:
    """Sleep as long as Retry-After says (bounded: the test windows are one second)."""
    await asyncio.sleep(min(retry_after, 2) + 0.05)


# --- rate limits -------------------------------------------------------------------------------------


async def test_login_past_the_address_limit_is_429_then_recovers(published_db, api_env):
    ds = protected(published_db, {"login_per_address": "2/second"})
    async with client(ds) as http:
        assert [(await login(http)).status_code for _ in range(2)] == [401, 401]
        retry_after = assert_rate_limited(await login(http))
        # The right password does not get past the limit either.
        assert_rate_limited(await login(http, password=PASSWORDS["admin"]))
        await wait_out(retry_after)
        assert (await login(http, password=PASSWORDS["admin"])).status_code == 200


async def test_the_address_limit_is_per_address(published_db, api_env):
    ds = protected(published_db, {"login_per_address": "1/second"})
    async with client(ds, "192.0.2.1") as first, client(ds, "192.0.2.2") as second:
        assert (await login(first)).status_code == 401
        assert_rate_limited(await login(first))
        assert (await login(second)).status_code == 401


async def test_the_username_limit_holds_across_addresses(published_db, api_env):
    ds = protected(published_db, {"login_per_username": "2/second"})
    addresses = [f"198.51.100.{n}" for n in range(1, 5)]
    statuses = []
    for address in addresses[:3]:
        async with client(ds, address) as http:
            statuses.append((await login(http, "admin")).status_code)
    assert statuses[:2] == [401, 401]
    async with client(ds, addresses[3]) as http:
        response = await login(http, "admin", PASSWORDS["admin"])
        retry_after = assert_rate_limited(response)
        assert "username" in response.json()["error"]
        # Another user, from the same address, is not held back by admin's limit.
        assert (await login(http, "scientist", PASSWORDS["scientist"])).status_code == 200
        await wait_out(retry_after)
        assert (await login(http, "admin", PASSWORDS["admin"])).status_code == 200


async def test_the_login_body_reaches_the_view_after_the_limiter_read_it(published_db, api_env):
    ds = protected(published_db, {"login_per_username": "5/second"})
    async with client(ds) as http:
        # Bounded: a body read and not given back would leave the view waiting for it.
        assert (await asyncio.wait_for(login(http, "admin", PASSWORDS["admin"]), 10)).status_code == 200
        too_big = {"username": "admin", "password": "x" * LOGIN_BODY_BYTES}
        assert_error(await http.post(LOGIN, json=too_big), 413, "payload_too_large")
        assert_error(await http.post(LOGIN, content=b"{not json", headers={"content-type": "application/json"}),
                     400, "invalid_json")


async def test_refresh_past_the_address_limit_is_429(published_db, api_env):
    ds = protected(published_db, {"refresh_per_address": "2/second"})
    async with client(ds) as http:
        for _ in range(2):
            assert_error(await http.post(REFRESH, json={"refresh_token": "x"}), 401, "invalid_token")
        retry_after = assert_rate_limited(await http.post(REFRESH, json={"refresh_token": "x"}))
        await wait_out(retry_after)
        assert_error(await http.post(REFRESH, json={"refresh_token": "x"}), 401, "invalid_token")


async def test_crawl_jobs_are_limited_per_actor_else_per_address(published_db, api_env):
    """Keyed by method and path: jobs and its alias trigger share one count. The viewer may start
    no crawl (401/403, or 404 before the jobs routes exist), so nothing is crawled here."""
    ds = protected(published_db, {"scraping_jobs_per_actor": "2/second"})
    async with client(ds) as http:
        assert (await http.post(JOBS)).status_code != 429
        assert (await http.post(TRIGGER)).status_code != 429
        assert_rate_limited(await http.post(JOBS))
        # The same address with a token is another actor, counted on its own.
        viewer = bearer(TOKENS["viewer"])
        assert (await http.post(TRIGGER, headers=viewer)).status_code != 429
        assert (await http.post(JOBS, headers=viewer)).status_code != 429
        assert_rate_limited(await http.post(JOBS, headers=viewer))
        # Reading the jobs is not limited.
        assert (await http.get(JOBS)).status_code != 429
    async with client(ds, "192.0.2.99") as http:  # the actor's count follows it to another address
        assert_rate_limited(await http.post(TRIGGER, headers=viewer))


async def test_limits_are_per_datasette_instance(published_db, api_env):
    first = protected(published_db, {"login_per_address": "1/minute"})
    async with client(first) as http:
        assert (await login(http)).status_code == 401
        assert_rate_limited(await login(http), window=60)
    async with client(protected(published_db, {"login_per_address": "1/minute"})) as http:
        assert (await login(http)).status_code == 401


def test_metadata_yml_sets_every_limit():
    block = resolve_env(api_metadata()["plugins"]["books-api"], ENV)
    assert set(block["rate_limits"]) == set(RATE_LIMITS)
    config = parse_config(block)
    assert {key: str(items[0]) for key, items in config.rate_limits.items()} == {
        "login_per_address": "10 per 1 minute", "login_per_username": "5 per 1 minute",
        "refresh_per_address": "30 per 1 minute", "scraping_jobs_per_actor": "10 per 1 minute",
    }
    assert config.cors_origins == frozenset()  # CORS is off unless configured


@pytest.mark.parametrize(
    "block,message",
    [
        pytest.param({"rate_limits": {"login_per_address": "ten a minute"}},
                     "books-api: rate_limits.login_per_address must be a rate such as 10/minute or 5/minute;100/hour",
                     id="a-rate-the-library-cannot-read"),
        pytest.param({"rate_limits": {"login_per_username": 5}},
                     "books-api: rate_limits.login_per_username must be a rate such as 10/minute or 5/minute;100/hour",
                     id="a-bare-number"),
        pytest.param({"rate_limits": {"refresh_per_address": "0/minute"}},
                     "books-api: rate_limits.refresh_per_address must be a rate such as 10/minute or 5/minute;100/hour",
                     id="a-rate-of-zero-would-refuse-everyone"),
        pytest.param({"rate_limits": {"login_per_ip": "5/minute"}},
                     "books-api: unknown key 'rate_limits.login_per_ip'", id="a-misspelt-limit"),
        pytest.param({"rate_limits": ["5/minute"]},
                     "books-api: rate_limits must map each limit to a rate such as 10/minute", id="limits-not-a-mapping"),
        pytest.param({"cors": {"origins": ["https://example.org/app"]}},
                     'books-api: cors.origins[0] must be "*" or an origin such as https://example.org:8443 '
                     "(scheme, host, optional port; no path)", id="an-origin-with-a-path"),
        pytest.param({"cors": {"origins": "https://example.org"}},
                     "books-api: cors.origins must be a list of origins", id="origins-not-a-list"),
        pytest.param({"cors": {"origins": [], "credentials": True}},
                     "books-api: unknown key 'cors.credentials'", id="credentials-are-never-allowed"),
    ],
)
def test_a_bad_limit_or_origin_is_one_line_naming_the_key(block, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(block)
    assert raised.value.message == message


def test_several_limits_on_one_key_all_apply():
    config = parse_config({"rate_limits": {"login_per_address": "5/minute;20/hour"}})
    assert [str(item) for item in config.rate_limits["login_per_address"]] == ["5 per 1 minute", "20 per 1 hour"]


async def test_a_bad_limit_stops_startup(published_db, api_env):
    ds = protected(published_db, {"login_per_address": "often"})
    with pytest.raises(ConfigError, match=r"^books-api: rate_limits.login_per_address must be"):
        await ds.invoke_startup()


# --- CORS --------------------------------------------------------------------------------------------


def preflight(origin: str, method: str = "POST") -> dict:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"}


def cors_headers(response: httpx.Response) -> dict:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_preflight_from_an_allowed_origin_is_204_with_the_allow_headers(published_db, api_env):
    ds = protected(published_db, origins=[ALLOWED])
    async with client(ds) as http:
        response = await http.options("/api/v1/ml/predictions", headers=preflight(ALLOWED))
    assert response.status_code == 204
    assert cors_headers(response) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-methods": "GET, POST, HEAD, OPTIONS",
        "access-control-allow-headers": "Authorization, Content-Type",
        "access-control-max-age": "600",
    }
    assert "Origin" in response.headers["vary"]


async def test_preflight_from_another_origin_is_204_without_cors_headers(published_db, api_env):
    ds = protected(published_db, origins=[ALLOWED])
    async with client(ds) as http:
        response = await http.options("/api/v1/ml/predictions", headers=preflight(OTHER))
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, POST, HEAD, OPTIONS"
    assert cors_headers(response) == {}


async def test_an_answer_to_an_allowed_origin_carries_its_origin(published_db, api_env):
    ds = protected(published_db, origins=[ALLOWED])
    async with client(ds) as http:
        allowed = await http.get("/api/v1/stats/overview", headers={"Origin": ALLOWED})
        other = await http.get("/api/v1/stats/overview", headers={"Origin": OTHER})
        error = await http.post("/api/v1/ml/predictions", json=[], headers={"Origin": ALLOWED})
    assert allowed.status_code == other.status_code == 200
    assert cors_headers(allowed) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-expose-headers": "X-Request-Id, Retry-After, Location",
    }
    assert "Origin" in allowed.headers["vary"] and "Origin" in other.headers["vary"]
    assert cors_headers(other) == {}
    assert_error(error, 401, "unauthorized")  # errors too: the page can read the envelope
    assert error.headers["access-control-allow-origin"] == ALLOWED


async def test_a_429_carries_the_cors_headers(published_db, api_env):
    ds = protected(published_db, {"login_per_address": "1/second"}, origins=[ALLOWED])
    async with client(ds) as http:
        await login(http)
        response = await http.post(LOGIN, json={"username": "a", "password": "b"}, headers={"Origin": ALLOWED})
    assert_rate_limited(response)
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "Retry-After" in response.headers["access-control-expose-headers"]


async def test_a_wildcard_allows_any_origin_to_read_but_not_to_write(published_db, api_env):
    ds = protected(published_db, origins=["*"])
    async with client(ds) as http:
        read = await http.options("/api/v1/books", headers=preflight(OTHER, "GET"))
        write = await http.options("/api/v1/ml/predictions", headers=preflight(OTHER, "POST"))
        answer = await http.get("/api/v1/books?limit=1", headers={"Origin": OTHER})
    assert read.headers["access-control-allow-origin"] == "*"
    assert read.headers["access-control-allow-methods"] == "GET, HEAD"
    assert cors_headers(write) == {}
    assert answer.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origins", [pytest.param(None, id="cors-off"), pytest.param([ALLOWED], id="cors-on")])
async def test_credentials_are_never_allowed_and_other_paths_get_no_cors(published_db, api_env, origins):
    ds = protected(published_db, origins=origins)
    async with client(ds) as http:
        answers = [
            await http.options("/api/v1/books", headers=preflight(ALLOWED, "GET")),
            await http.get("/api/v1/books?limit=1", headers={"Origin": ALLOWED}),
            await http.get("/books.json", headers={"Origin": ALLOWED}),
        ]
    assert all("access-control-allow-credentials" not in answer.headers for answer in answers)
    assert cors_headers(answers[2]) == {}
    if origins is None:  # off by default: OPTIONS is still answered, without CORS headers
        assert answers[0].status_code == 204 and cors_headers(answers[0]) == {}
        assert cors_headers(answers[1]) == {}


async def test_a_preflight_to_no_api_route_allows_no_method(published_db, api_env):
    ds = protected(published_db, origins=[ALLOWED])
    async with client(ds) as http:
        response = await http.options("/api/v1/nothing-here", headers=preflight(ALLOWED, "GET"))
    assert response.status_code != 204
    assert "access-control-allow-methods" not in response.headers
