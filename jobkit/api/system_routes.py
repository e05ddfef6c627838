"""``/api/system``: live workers and Redis facts for the dashboard (any valid token), over :mod:`jobkit.system`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get

from ..system import RedisInfo, System, WorkerStatus
from .security import BEARER, require_role

__all__ = ["SYSTEM_ROUTES", "SystemController"]


@dataclass
class WorkerList:
    workers: list[WorkerStatus]


def _system(request: Request[Any, Any, Any]) -> System:
    client = request.app.state.services.client
    return System(client.broker.client, client.settings.namespace)


class SystemController(Controller):
    path = "/api/system"
    guards = [require_role]
    security = [{BEARER: []}]
    tags = ["system"]

    @get("/workers", sync_to_thread=True, opt={"role": "user"})
    def workers(self, request: Request[Any, Any, Any]) -> WorkerList:
        """Live workers (heartbeat within the timeout): host, pid, queues, start time, busy threads."""
        return WorkerList(_system(request).workers())

    @get("/redis", sync_to_thread=True, opt={"role": "user"})
    def redis(self, request: Request[Any, Any, Any]) -> RedisInfo:
        """Server version, memory, clients and key count."""
        return _system(request).redis_info()


SYSTEM_ROUTES = [SystemController]
