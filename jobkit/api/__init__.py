"""The Litestar app (``create_app``) comes with the REST API work; this package holds it."""
