"""The crawler's settings as `scrapy` itself reads them from the project."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest
from support import PROJECT


def scrapy_setting(name: str, **env: str) -> str:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "settings", "--get", name],
        cwd=PROJECT, env={**inherited, **env}, capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize(
    "contact,expected",
    [
        pytest.param("", f"books-scraper/{version('books-scraper')}", id="project-and-version-by-default"),
        pytest.param(
            "mailto:ops@example.org", f"books-scraper/{version('books-scraper')} (+mailto:ops@example.org)",
            id="with-the-operators-contact",
        ),
    ],
)
def test_the_user_agent_names_the_project_truthfully(contact, expected):
    assert scrapy_setting("USER_AGENT", BOOKS_CONTACT=contact) == expected


@pytest.mark.parametrize("name", ["REMOTE_CONTROL_ENABLED", "TELNETCONSOLE_ENABLED"])
def test_no_remote_control_of_a_crawl(name):
    assert scrapy_setting(name) == "False"
