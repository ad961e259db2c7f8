"""JWTs for people: POST /api/v1/auth/login and /api/v1/auth/refresh, and the access token read back
into an actor (auth.py has the primitives: password hashes, tokens, users)."""

from __future__ import annotations

import asyncio
import logging

from books_scraper.api import auth
from books_scraper.api.config import ApiConfig, api_config
from books_scraper.api.errors import ApiError
from books_scraper.api.web import api_route, json_response, read_json

LOGIN_BODY_BYTES = 4096  # the most of a login or refresh body read (a username and password fit)

logger = logging.getLogger(__name__)


def jwt_actor(datasette, request) -> dict | None:
    """The actor of a valid JWT access token; None for anything else (static tokens are
    datasette-auth-tokens' job), never an exception."""
    authorization = request.headers.get("authorization") or ""
    if not authorization.startswith("Bearer ") or authorization.count(".") != 2:
        return None
    config = api_config(datasette)
    claims = auth.read_token(config.jwt_secret, authorization[7:], "access")
    return auth.token_actor(config.users, claims) if claims is not None else None


async def login(request, datasette):
    config, body = await _token_request(request, datasette)
    username = body.get("username") if isinstance(body, dict) else None
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(422, "send {\"username\": ..., \"password\": ...}", "invalid_credentials_body")
    # PBKDF2 takes a fraction of a second of CPU: in a thread, other requests go on meanwhile.
    user = await asyncio.to_thread(auth.find_user, config.users, username, password)
    if user is None:
        # The user name only, never the password (shown escaped: it is whatever the client sent).
        logger.warning("failed login for user %s", ascii(username[:100]), extra={"username": username[:100]})
        raise ApiError(401, "wrong username or password", "invalid_credentials")
    refresh_token = auth.issue_token(
        config.jwt_secret, subject=username, roles=user.roles, kind="refresh", ttl=config.refresh_token_ttl
    )
    return json_response(
        {
            **_access_token(config, username, user.roles),
            "refresh_token": refresh_token,
            "refresh_expires_in": config.refresh_token_ttl,
        }
    )


async def refresh(request, datasette):
    config, body = await _token_request(request, datasette)
    token = body.get("refresh_token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise ApiError(422, "send {\"refresh_token\": ...}", "invalid_refresh_body")
    claims = auth.read_token(config.jwt_secret, token, "refresh")
    # Roles come from today's configuration: a removed user cannot refresh.
    user = auth.configured_user(config.users, claims["sub"]) if claims else None
    if user is None:
        raise ApiError(
            401, "the refresh token is invalid or expired", "invalid_token",
            headers={"WWW-Authenticate": 'Bearer realm="books-api", error="invalid_token"'},
        )
    return json_response(_access_token(config, user.username, user.roles))


async def _token_request(request, datasette) -> tuple[ApiConfig, object]:
    """The API configuration and the JSON body of a login or refresh; 503 without a JWT secret."""
    config = api_config(datasette)
    if not auth.usable_secret(config.jwt_secret):
        raise ApiError(503, "login is not configured (BOOKS_JWT_SECRET)", "login_unavailable")
    return config, await read_json(request, LOGIN_BODY_BYTES)


def _access_token(config: ApiConfig, subject: str, roles) -> dict:
    token = auth.issue_token(
        config.jwt_secret, subject=subject, roles=roles, kind="access", ttl=config.access_token_ttl
    )
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": config.access_token_ttl,
        "roles": sorted(roles),
    }


ROUTES = [
    (r"^/api/v1/auth/login$", api_route(post=login)),
    (r"^/api/v1/auth/refresh$", api_route(post=refresh)),
]
