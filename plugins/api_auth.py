"""Who is calling and what they may do: JWT login/refresh (books_scraper/api/login.py), static tokens
(datasette-auth-tokens), and the `permissions` allow blocks of the books-api configuration."""

from datasette import hookimpl

from books_scraper.api import login, web


@hookimpl
def register_routes():
    return login.ROUTES


@hookimpl
def actor_from_request(datasette, request):
    return login.jwt_actor(datasette, request)


@hookimpl
def permission_allowed(datasette, actor, action):
    return web.permission_allowed(datasette, actor, action)
