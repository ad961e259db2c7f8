# Operators' and developers' entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup crawl serve run test bench bench-api bench-scale clean

$(BIN)/scrapy: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	# Byte-compile the project once, as pip does an installed package: an editable install leaves it
	# to each import, which PYTHONDONTWRITEBYTECODE stops from saving (a worker's start, 0.2 s).
	$(BIN)/python -m compileall -q books_scraper
	touch $@

# The test extras (pytest, Playwright, the OpenAPI validator) only where tests run.
$(VENV)/.test-deps: $(BIN)/scrapy
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/scrapy

crawl: setup
	$(BIN)/scrapy crawl books

# Serve on 127.0.0.1:8001 (BOOKS_HOST / BOOKS_PORT override), crawling first if there is no database.
serve: setup
	$(BIN)/python -m books_scraper.serve

run: setup serve

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info

bench: setup
	$(BIN)/python bench/crawl_bench.py

# The crawl of generated sites of 1k and 100k books served by nginx: books/s and peak RSS at each
# size, the publication timed apart (the sites are built once under /tmp; about half an hour).
.PHONY: bench-crawl-scale
bench-crawl-scale: setup
	$(BIN)/python bench/crawl_scale.py

# Latency of the main routes beside Datasette's trivial /-/versions.json (needs data/books.db).
bench-api: setup
	$(BIN)/python bench/api_bench.py

# Every route at 1k, 100k and 1M books (catalogues cached in /tmp/books-scale; ~3 GB at 1M):
# SCALE_ARGS="--sizes 1000,100000 --seed data/books.db --out scale.json" make bench-scale
bench-scale: setup
	$(BIN)/python bench/scale.py $(SCALE_ARGS)
