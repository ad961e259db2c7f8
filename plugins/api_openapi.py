"""GET /api/v1/openapi.json: the OpenAPI 3 description of every /api/v1 route."""

from datasette import hookimpl

from books_scraper.api.openapi import openapi_document
from books_scraper.api.web import api_config, api_route, json_response


@hookimpl
def register_routes():
    return [(r"^/api/v1/openapi\.json$", api_route(get=openapi))]


async def openapi(request, datasette):
    rows = api_config(datasette).max_prediction_rows
    return json_response(openapi_document(datasette.absolute_url(request, "/"), rows))
