"""``create_app(...)`` -> the Litestar app: the REST API of SPEC §5, ``/health``, ``/metrics`` and the dashboard."""

from __future__ import annotations

from importlib.metadata import version

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from jobkit.api.dashboard import DASHBOARD_ROUTES
from jobkit.api.errors import EXCEPTION_HANDLERS
from jobkit.api.routes import JobsController, Services, health, metrics
from jobkit.api.security import BEARER, json_bodies_only
from jobkit.api.system_routes import SYSTEM_ROUTES
from jobkit.bootstrap import open_client
from jobkit.config.settings import Settings
from jobkit.errors import JobkitError
from jobkit.scheduling.dynamic import Schedules
from jobkit.services.auth import Revocations, load_secret
from jobkit.services.client import Client
from jobkit.services.events import Events
from jobkit.services.queues import Queues
from jobkit.services.redis_policy import check_eviction_policy
from jobkit.services.search import Search
from jobkit.services.system import System
from jobkit.store.connection import fail_fast

__all__ = ["BODY_OVERHEAD", "create_app", "json_bodies_only"]

#: Room in a request body for what is not payload: dispatch options, a batch's list brackets.
BODY_OVERHEAD = 16 * 1024


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, secret: str | None = None, debug: bool = False
) -> Litestar:
    """The app on ``client`` (default: one built from ``settings``, or the environment), signing with ``secret``
    (default: ``JOBKIT_SECRET`` or the data dir's secret file)."""
    if client is None:
        client = open_client(settings)
    settings = client.settings
    fail_fast(client.redis)
    check_eviction_policy(client.redis, "api")
    secret = secret or load_secret(settings)
    if not secret:
        raise JobkitError("no API secret: set JOBKIT_SECRET (at least 32 characters), or run `jobkit up` once")
    revocations = Revocations(client.redis, client.keys)
    queues = Queues(client)
    services = Services(
        client, queues, Schedules(client), System(client), secret, revocations, Search(queues), Events(queues)
    )
    return Litestar(
        route_handlers=[JobsController, *SYSTEM_ROUTES, health, metrics, *DASHBOARD_ROUTES],
        state=State({"services": services}),
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=json_bodies_only,
        # A body larger than any task takes is refused (413) before it is read whole, let alone parsed; the message
        # builder then holds each task to its own max_payload.
        request_max_body_size=client.project.largest_payload() + BODY_OVERHEAD,
        openapi_config=OpenAPIConfig(
            title="jobkit",
            version=version("jobkit"),
            description="Queues, tasks and schedules of a jobkit project. Errors: {status_code, detail}.",
            path="/schema",
            # The JSON document only: the HTML viewers Litestar ships load their scripts from a CDN.
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
            components=Components(
                security_schemes={BEARER: SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
        ),
        debug=debug,
        logging_config=None,
    )
