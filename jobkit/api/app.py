"""``create_app(...)`` -> the Litestar app: the REST API of SPEC §5, ``/health``, ``/metrics`` and the dashboard."""

from __future__ import annotations

from importlib.metadata import version

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from jobkit.api.dashboard import DASHBOARD_ROUTES
from jobkit.api.errors import EXCEPTION_HANDLERS
from jobkit.api.routes import JobsController, Services, health, metrics
from jobkit.api.security import BEARER
from jobkit.api.system_routes import SYSTEM_ROUTES
from jobkit.bootstrap import open_client
from jobkit.config.settings import Settings
from jobkit.errors import JobkitError
from jobkit.scheduling.dynamic import Schedules
from jobkit.services.auth import load_secret
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from jobkit.services.system import System
from jobkit.store.connection import fail_fast

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, secret: str | None = None, debug: bool = False
) -> Litestar:
    """The app on ``client`` (default: one built from ``settings``, or the environment), signing with ``secret``
    (default: ``JOBKIT_SECRET`` or the data dir's secret file)."""
    if client is None:
        client = open_client(settings)
    settings = client.settings
    fail_fast(client.redis)
    secret = secret or load_secret(settings)
    if not secret:
        raise JobkitError("no API secret: set JOBKIT_SECRET (at least 32 characters), or run `jobkit up` once")
    services = Services(client, Queues(client), Schedules(client), System(client), secret)
    return Litestar(
        route_handlers=[JobsController, *SYSTEM_ROUTES, health, metrics, *DASHBOARD_ROUTES],
        state=State({"services": services}),
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="jobkit",
            version=version("jobkit"),
            description="Queues, tasks and schedules of a jobkit project. Errors: {status_code, detail}.",
            path="/schema",
            components=Components(
                security_schemes={BEARER: SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
        ),
        debug=debug,
        logging_config=None,
    )
