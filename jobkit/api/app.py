"""``create_app(...)`` -> the Litestar app: the REST API of SPEC §5, ``/health``, ``/metrics`` and the dashboard."""

from __future__ import annotations

import logging

import redis
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..auth import load_secret
from ..client import Client
from ..errors import JobkitError
from ..inspector import Queues
from ..loader import load_project
from ..scheduler import Schedules
from ..settings import Settings
from .dashboard import DASHBOARD_ROUTES
from .errors import EXCEPTION_HANDLERS
from .routes import JobsController, Services, health, metrics
from .security import BEARER
from .system_routes import SYSTEM_ROUTES

__all__ = ["REDIS_CONNECT_TIMEOUT_S", "REDIS_SOCKET_TIMEOUT_S", "create_app", "tighten_timeouts"]

log = logging.getLogger("jobkit.api")

#: The API answers 503 within 2 s when Redis is away: one reconnect attempt, each bounded by these.
REDIS_CONNECT_TIMEOUT_S = 0.4
REDIS_SOCKET_TIMEOUT_S = 0.5


def tighten_timeouts(client: redis.Redis) -> None:
    """Short timeouts and a single immediate reconnect on the API's connections (workers keep the broker's longer
    ones): a request fails fast while Redis is down, and the first one after it is back reconnects by itself."""
    client.connection_pool.connection_kwargs.update(
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError],
    )


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, secret: str | None = None, debug: bool = False
) -> Litestar:
    """The app on ``client`` (default: one built from ``settings``, or the environment), signing with ``secret``
    (default: ``JOBKIT_SECRET`` or the data dir's secret file)."""
    if client is None:
        settings = settings or Settings.from_env()
        client = Client(settings, load_project(settings.jobs_path))
    settings = client.settings
    tighten_timeouts(client.broker.client)
    secret = secret or load_secret(settings)
    if not secret:
        raise JobkitError("no API secret: set JOBKIT_SECRET (at least 32 characters), or run `jobkit up` once")
    services = Services(client, Queues(client), Schedules(client), secret)
    return Litestar(
        route_handlers=[JobsController, *SYSTEM_ROUTES, health, metrics, *DASHBOARD_ROUTES],
        state=State({"services": services}),
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="jobkit",
            version="0.1.0",
            description="Queues, tasks and schedules of a jobkit project. Errors: {status_code, detail}.",
            path="/schema",
            components=Components(
                security_schemes={BEARER: SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
        ),
        debug=debug,
        logging_config=None,
    )
