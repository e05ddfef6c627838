"""``/api/system``: live workers and Redis facts for the dashboard (any valid token), over :mod:`jobkit.system`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get
from litestar.types import BeforeRequestHookHandler

from jobkit.api.schemas import TaskTypeList
from jobkit.api.security import BEARER, admit
from jobkit.services.system import RedisInfo, System, WorkerStatus

__all__ = ["SYSTEM_ROUTES", "SystemController"]


@dataclass
class WorkerList:
    workers: list[WorkerStatus]


def _system(request: Request[Any, Any, Any]) -> System:
    system: System = request.app.state.services.system
    return system


class SystemController(Controller):
    path = "/api/system"
    before_request: BeforeRequestHookHandler | None = admit  # the token check (see jobkit.api.security)
    security = [{BEARER: []}]
    tags = ["system"]

    @get("/workers", sync_to_thread=True, opt={"role": "viewer"})
    def workers(self, request: Request[Any, Any, Any]) -> WorkerList:
        """Live workers (heartbeat within the timeout): host, pid, queues, start time, busy threads."""
        return WorkerList(_system(request).workers())

    @get("/task-types", sync_to_thread=True, opt={"role": "viewer"})
    def task_types(self, request: Request[Any, Any, Any]) -> TaskTypeList:
        """Every task of jobs.yaml with its queue, limits, sensitive fields, and the live workers that run it
        (``served`` is false when none does)."""
        return TaskTypeList(_system(request).task_types())

    @get("/redis", sync_to_thread=True, opt={"role": "viewer"})
    def redis(self, request: Request[Any, Any, Any]) -> RedisInfo:
        """Server version, memory, clients and key count."""
        return _system(request).redis_info()


SYSTEM_ROUTES = [SystemController]
