"""`pip install -e .` (make setup, make test) installs the package as a .pth file naming the project
root: pyproject.toml's package-dir. Without it setuptools installs an import hook instead and prints
its "Editable installation" notice on every install."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

import books_scraper

PROJECT = Path(books_scraper.__file__).resolve().parents[1]


def test_the_editable_install_is_a_path_file_naming_the_project():
    site = Path(sysconfig.get_paths()["purelib"])
    path_files = list(site.glob("__editable__.books_scraper-*.pth"))
    if not path_files:
        pytest.skip(f"books-scraper is not installed editable in {site}")
    assert path_files[0].read_text(encoding="utf-8").strip() == str(PROJECT)
    assert not list(site.glob("__editable___books_scraper_*_finder.py"))  # setuptools' import hook
