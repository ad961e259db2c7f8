"""GET /api/v1 and the browsable API reference at /api/v1/docs: in process, then in a real browser
that authorises with a token and sends a POST from the page."""

from __future__ import annotations

import json

import pytest
from api_support import ENV, TOKENS, assert_error
from browsing import CHROMIUM, TIMEOUT_MS
from playwright.sync_api import expect
from serving import ServeProcess
from support import query

from books_scraper.api.reference import ASSET_TYPES, ASSETS


async def test_the_api_root_points_at_its_docs(api):
    response = await api.client.get("/api/v1")
    assert response.status_code == 200
    body = response.json()
    assert body["docs"].endswith("/api/v1/docs") and body["openapi"].endswith("/api/v1/openapi.json")
    assert (await api.client.get(body["openapi"].split("localhost", 1)[1])).status_code == 200


async def test_the_docs_page_loads_only_its_own_assets(api):
    response = await api.client.get("/api/v1/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<script>" not in response.text  # everything from files: the CSP needs no exception
    for name, content_type in ASSET_TYPES.items():
        asset = await api.client.get(f"/api/v1/docs/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"] == content_type
        assert asset.content == (ASSETS / name).read_bytes()
    init = await api.client.get("/api/v1/docs/init.js")
    assert "/api/v1/openapi.json" in init.text and "validatorUrl: null" in init.text


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("index.html", id="a-file-of-the-package-the-page-does-not-use"),
        pytest.param("swagger-ui.js.map", id="a-source-map"),
        pytest.param("no-such-file.js", id="a-file-that-does-not-exist"),
    ],
)
async def test_only_the_pages_assets_are_served(api, name):
    assert_error(await api.client.get(f"/api/v1/docs/assets/{name}"), 404, "not_found")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_a_post_from_the_docs_page_with_a_token(browser, published_copy, tmp_path):
    book = query(published_copy.path, "select max(id) as id from books")[0]["id"]
    problems: list[str] = []
    with ServeProcess(published_copy.path, published_copy.operations_path, tmp_path / "serve.log", **ENV) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(server.url + "api/v1/docs")
        page.locator("button.authorize").first.click()
        page.locator(".modal-ux input").first.fill(TOKENS["ml"])
        page.locator(".modal-ux button.authorize").first.click()
        page.locator(".modal-ux button.btn-done").first.click()
        operation = page.locator("#operations-ML-post_api_v1_ml_predictions")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        batch = {"model": "from-the-docs-page", "predictions": [{"id": book, "predicted_rating": 4}]}
        operation.locator("textarea.body-param__text").fill(json.dumps(batch))
        operation.locator("button.execute").click()
        expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("201")
        assert page.locator(".opblock-options").first.is_hidden()  # preflights: documented, not listed
        page.screenshot(path=str(tmp_path / "api-docs.png"))
        page.close()
    assert problems == []
    stored = query(published_copy.operations_path, "select model, book_id, actor from predictions")
    assert stored == [{"model": "from-the-docs-page", "book_id": book, "actor": "ml-service"}]
