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
