"""The built-in tasks (email, export, cleanup, report, notification, health check) and what they use: mail
building and sending, exports of declared queries. Handlers that need the worker's client are ``@needs_client``:
the worker binds it when it declares them."""
