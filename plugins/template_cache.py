"""Page templates compiled before the first request (books_scraper/web/template_cache.py)."""

from datasette import hookimpl

from books_scraper.web.template_cache import compile_templates


@hookimpl(trylast=True)  # after the hooks that add filters: a template naming one compiles only then
def prepare_jinja2_environment(env):
    compile_templates(env)
