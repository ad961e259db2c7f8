"""The /api/v1 REST API.

Where code lives: `plugins/api_*.py` only register Datasette hooks, a few lines each; every /api/v1
route's views and its SQL live together in the package module named after the route
(`/api/v1/books*` and `/categories` in books.py, `/stats/*` in stats.py, `/ml/features` and
`/ml/training-data` in ml.py, `/ml/predictions*` in predictions.py, `/health` in health.py,
`/auth/*` in login.py beside the auth primitives of auth.py, `/openapi.json` in openapi.py); the
plumbing every route shares stays shared (web.py: envelope, dispatch, databases, permissions;
params.py: query parameters; config.py: the validated configuration; cache.py; errors.py); and each
database's schema is owned and migrated by one module (storage.py for books, operations.py for
operations), never by the API.

Datasette loads each plugins-dir file as a separate, unimportable module: that is why the views are
here and the plugins only point at them.
"""
