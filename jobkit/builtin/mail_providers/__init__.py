"""Mail sent through a provider's HTTPS API rather than SMTP: one module per provider.

:mod:`.http_api` does what every provider shares (the message taken apart, the HTTPS call with timeouts and
certificate checks, which answers retry and which archive, ``Retry-After``); a provider's module says only how its
request looks (the JSON, the key's header) and how to read its error answers. See :mod:`.sendgrid`, and the README
("Mail") for adding one.
"""
