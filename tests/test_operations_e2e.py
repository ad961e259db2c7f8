"""The operator's loop end to end, as issue 10 asks: the real `python -m books_scraper.serve` with an
admin token, a crawl job triggered over HTTP against a local copy of a site, its progress, and the
new figures served by the API and by Datasette's own pages without a restart; then a price changed
on the site, a second job, and the change served too."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from api_support import ENV, TOKENS
from serving import ServeProcess
from sitebuilder import build_site, sample_books
from support import SiteServer, crawl, wait_until

BOOKS = 25
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}


def call(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)



def run_job(base: str, site: SiteServer) -> dict:
    """Trigger a job, see its progress while it runs (the site is slow until then), wait for its end."""
    site.delay = 0.3
    status, job = call(base + "api/v1/scraping/jobs", "POST", ADMIN)
    assert status == 202, job
    url = base + f"api/v1/scraping/jobs/{job['id']}"
    progress = wait_until(lambda: (answer := call(url, headers=ADMIN)[1])["progress"] and answer, 90)
    assert progress["status"] == "running" and progress["progress"]["expected"] == BOOKS, progress
    site.delay = 0
    return wait_until(lambda: (answer := call(url, headers=ADMIN)[1])["finished_at"] and answer, 90)


def served_price(base: str, book_id: int) -> tuple[float, float]:
    """The price as /api/v1 and as Datasette's own table JSON answer it."""
    api = call(base + f"api/v1/books/{book_id}")[1]["price"]
    table = call(base + f"books/books/{book_id}.json?_shape=objects")[1]["rows"][0]["price"]
    return api, table


def test_a_triggered_job_is_served_without_a_restart_then_a_changed_price_too(tmp_path):
    books = sample_books(BOOKS)
    site = build_site(tmp_path / "site", books)
    book = books[3]
    with SiteServer(site) as server:
        books_db = tmp_path / "data" / "books.db"
        assert crawl(server.url, books_db).returncode == 0  # an older publication to start from
        product = site / book.path
        product.write_text(product.read_text(encoding="utf-8").replace(book.price, "£61.25"), encoding="utf-8")
        env = {**ENV, "BOOKS_START_URL": server.url}
        with ServeProcess(books_db, books_db.with_name("operations.db"), tmp_path / "serve.log", **env) as served:
            base = served.url
            before = served_price(base, book.id)
            assert before[0] == before[1] != 61.25

            done = run_job(base, server)
            assert (done["status"], done["published"], done["books"]) == ("succeeded", True, BOOKS), done
            assert wait_until(lambda: served_price(base, book.id) == (61.25, 61.25), 30)

            product.write_text(product.read_text(encoding="utf-8").replace("£61.25", "£12.34"), encoding="utf-8")
            assert run_job(base, server)["status"] == "succeeded"
            assert wait_until(lambda: served_price(base, book.id) == (12.34, 12.34), 30)
            # The same server process tree all along, and the operations journal saw both jobs.
            assert served.process.poll() is None
            jobs = call(base + "api/v1/scraping/jobs", headers=ADMIN)[1]["jobs"]
            assert [job["status"] for job in jobs] == ["succeeded", "succeeded"]
