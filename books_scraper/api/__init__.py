"""The /api/v1 REST API's shared code: queries, validation, auth and the HTTP envelope.

The Datasette views themselves are thin modules in `plugins/api_*.py`; everything they share lives here
because Datasette loads each plugins-dir file as a separate, unimportable module.
"""
