"""`plugins/` holds only Datasette hook registrations, a few lines each; each /api/v1 route's views and
its SQL live together in the package module named after the route; the HTTP plumbing every route
shares stays shared; and each database's schema is owned and migrated by one module, never the API.

- `/api/v1/books*`, `/categories`: books.py; `/stats/*`: stats.py; `/ml/features`, `/ml/training-data`:
  ml.py; `/ml/predictions*`: predictions.py; `/health`, `/ready`: health.py; `/auth/*`: login.py,
  beside the auth primitives of auth.py; `/scraping/*`: scraping.py (the runner: books_scraper/jobs.py);
  `/openapi.json`: openapi.py; `/api/v1` and `/docs`: reference.py.
- Shared: web.py (envelope, dispatch, databases, permission check), params.py (query parameters),
  config.py (the validated configuration), protection.py (rate limits and CORS, a middleware for
  every route), cache.py, errors.py.
- Schemas: storage.py (books), operations.py (operations).

Datasette loads each plugins-dir file as a separate, unimportable module: that is why the views are
here and the plugins only point at them.
"""
