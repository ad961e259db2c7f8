"""The books-api configuration: validated once at startup, one line naming the bad key; who may do
what comes from its `permissions` allow blocks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from api_support import ENV, PLUGINS, TOKENS, api_metadata, assert_error, bearer, make_datasette
from support import PROJECT, query

from books_scraper.api.config import ApiConfig, ConfigError, api_config, parse_config
from books_scraper.web.served_metadata import resolve_env


def api_block(**changes) -> dict:
    """metadata.yml's books-api block as Datasette gives it to the plugin ($env resolved), changed."""
    return {**resolve_env(api_metadata()["plugins"]["books-api"], ENV), **changes}


@pytest.mark.parametrize(
    "block,message",
    [
        pytest.param(api_block(max_bodybytes=10), "books-api: unknown key 'max_bodybytes'", id="a-misspelt-key"),
        pytest.param(api_block(books_database="books"), "books-api: unknown key 'books_database'",
                     id="the-removed-database-name-option"),
        pytest.param(api_block(access_token_ttl="900"), "books-api: access_token_ttl must be a positive integer",
                     id="a-ttl-given-as-text"),
        pytest.param(api_block(refresh_token_ttl=0), "books-api: refresh_token_ttl must be a positive integer",
                     id="a-ttl-of-zero"),
        pytest.param(api_block(max_body_bytes=True), "books-api: max_body_bytes must be a positive integer",
                     id="a-limit-given-as-a-boolean"),
        pytest.param(api_block(max_prediction_rows=-1), "books-api: max_prediction_rows must be a positive integer",
                     id="a-negative-row-limit"),
        pytest.param(api_block(jwt_secret=12345), 'books-api: jwt_secret must be a string, given as {"$env": "VAR"}',
                     id="a-secret-that-is-not-text"),
        pytest.param(api_block(users={"username": "admin"}),
                     "books-api: users must be a list of {username, password_hash, roles}", id="users-not-a-list"),
        pytest.param(api_block(users=[{"username": "admin", "roles": ["admin"], "password": "x"}]),
                     "books-api: unknown key 'users[0].password'", id="a-misspelt-user-key"),
        pytest.param(api_block(users=[{"username": "admin", "roles": "admin"}]),
                     "books-api: users[0].roles must be a list of role names", id="roles-not-a-list"),
        pytest.param(api_block(users=[{"username": "", "roles": []}]),
                     "books-api: users[0].username must be a non-empty string", id="a-user-without-a-name"),
        pytest.param(api_block(users=[{"username": "a", "roles": []}, {"username": "a", "roles": []}]),
                     "books-api: users[1].username 'a' is listed twice", id="a-user-listed-twice"),
        pytest.param(api_block(permissions={"books-api-predcit": {"roles": ["ml"]}}),
                     "books-api: unknown key 'permissions.books-api-predcit'", id="a-misspelt-action"),
        pytest.param(api_block(permissions={"books-api-predict": None}),
                     "books-api: permissions.books-api-predict must be an allow block such as {roles: [admin]}",
                     id="an-empty-allow-block-would-allow-everyone"),
        pytest.param(["not", "a", "mapping"], "books-api: the block must be a mapping of keys to values",
                     id="a-block-that-is-a-list"),
    ],
)
def test_a_bad_configuration_is_one_line_naming_the_key(block, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(block)
    assert raised.value.message == message
    assert "\n" not in message


def test_metadata_yml_configuration_is_valid_and_unset_secrets_are_none():
    config = parse_config(api_block(jwt_secret=None))
    assert config.jwt_secret is None and config.access_token_ttl == 900
    assert {user.username: user.roles for user in config.users} == {
        "admin": {"admin"}, "scientist": {"ml"}, "viewer": frozenset(),
    }
    assert config.permissions["books-api-predict"] == {"roles": ["ml", "admin"]}
    assert parse_config(None) == ApiConfig()  # no block at all: the defaults, and no one may act


async def test_a_bad_key_stops_startup_in_process(published_db, api_env):
    metadata = api_metadata()
    metadata["plugins"]["books-api"]["max_bodybytes"] = 10
    ds = make_datasette(published_db, metadata)
    with pytest.raises(ConfigError, match=r"^books-api: unknown key 'max_bodybytes'$"):
        await ds.invoke_startup()


async def test_views_read_the_configuration_validated_at_startup(api):
    await api.invoke_startup()
    validated = api_config(api)
    assert (await api.client.get("/api/v1/openapi.json")).status_code == 200
    assert api_config(api) is validated  # stored once per Datasette, not read per request


async def test_who_may_predict_is_the_metadata_allow_block(published_copy, api_env):
    metadata = api_metadata()
    metadata["plugins"]["books-api"]["permissions"]["books-api-predict"] = {"id": ["admin-service"]}
    ds = make_datasette(published_copy, metadata)
    book = query(published_copy.path, "select min(id) as id from books")[0]["id"]
    batch = [{"id": book, "predicted_rating": 3}]
    response = await ds.client.post("/api/v1/ml/predictions", json=batch, headers=bearer(TOKENS["ml"]))
    assert_error(response, 403, "forbidden")
    response = await ds.client.post("/api/v1/ml/predictions", json=batch, headers=bearer(TOKENS["admin"]))
    assert response.status_code == 201, response.text


async def test_an_action_without_an_allow_block_is_allowed_to_no_one(published_db, api_env):
    metadata = api_metadata()
    del metadata["plugins"]["books-api"]["permissions"]["books-api-crawl"]
    ds = make_datasette(published_db, metadata)
    assert await ds.permission_allowed({"id": "x", "roles": ["admin"]}, "books-api-crawl", default=True) is False
    # Datasette's own actions are not the API's to decide.
    assert await ds.permission_allowed({"id": "x", "roles": ["admin"]}, "view-instance", default=True) is True


def test_plain_datasette_serve_stops_with_one_line(tmp_path):
    metadata = api_metadata()
    metadata["plugins"]["books-api"]["max_bodybytes"] = 10
    path = tmp_path / "metadata.yml"
    path.write_text(yaml.safe_dump(metadata))
    result = subprocess.run(
        [sys.executable, "-m", "datasette", "serve", "--memory", "--metadata", str(path),
         "--plugins-dir", str(PLUGINS), "--get", "/api/v1/health"],
        cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: books-api: unknown key 'max_bodybytes'"]
