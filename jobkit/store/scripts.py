"""The Lua scripts of ``jobkit/store/lua``, looked up by name, each after the prelude and ``common.lua``.

Every script is called with ``KEYS = [namespace]`` and names its keys ``K.<name>(fields)``, expanded from the layout
when it is loaded (see :mod:`jobkit.store.keys`); its header lists every key it touches. ``common.lua`` holds the
helpers several scripts share (claims, unique locks, the id index, a queue's keys).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from jobkit.store.keys import Keys, expand_lua, lua_prelude

__all__ = ["SCRIPT_NAMES", "Scripts", "script_source"]

SCRIPT_NAMES = ("broker", "queues", "limits", "workflows", "schedules", "search")


@cache
def script_source(name: str) -> bytes:
    """The prelude, the shared helpers and the body of ``store/lua/<name>.lua``."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script {name!r} (known: {', '.join(SCRIPT_NAMES)})")
    folder = files("jobkit.store").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return expand_lua("\n".join((lua_prelude(), common, body))).encode()


class Scripts:
    """The scripts registered on one Redis client, for one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._registered: dict[str, Script] = {}

    def script(self, name: str) -> Script:
        found = self._registered.get(name)
        if found is None:
            found = self._registered[name] = self.client.register_script(script_source(name))
        return found

    def call(self, name: str, *args: Any, client: Any = None) -> Any:
        """Run script ``name`` with ``args`` (on ``client``, e.g. a pipeline, when given)."""
        return self.script(name)(keys=[self.keys.namespace], args=list(args), client=client)

    def call_pipelined(self, name: str, calls: list[list[Any]]) -> list[Any]:
        """Run script ``name`` once per argument list of ``calls``, in one round trip; the results in order (the
        first error raised). EVALSHA rather than a Script in the pipeline: redis-py's pipeline asks SCRIPT EXISTS in a
        round trip of its own before every execute of a pipeline that holds a Script."""
        script = self.script(name)
        results = self._evalsha_all(script.sha, calls)
        refused = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
        if refused:  # the first call, or Redis lost its script cache (a restart): load it, run those again
            self.client.script_load(script.script)
            for index, result in zip(refused, self._evalsha_all(script.sha, [calls[i] for i in refused]), strict=True):
                results[index] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def _evalsha_all(self, sha: str, calls: list[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(sha, 1, self.keys.namespace, *args)
        return list(pipe.execute(raise_on_error=False))
