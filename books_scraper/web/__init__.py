"""The Datasette publication beyond /api/v1: what every answer gets (guard.py: security headers,
malformed Authorization), what one query may cost (query_limits.py), malformed requests answered
with a 4xx (datasette_errors.py), the metadata the server is given (served_metadata.py).

Every use of a Datasette private name is in datasette_internals.py, with tests that fail when
upstream changes (tests/test_datasette_internals.py). The hooks that apply these are in plugins/.
"""
