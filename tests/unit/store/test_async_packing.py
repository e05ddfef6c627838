"""The API's asyncio connections pack commands with hiredis, byte for byte as redis-py's own packer does."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import connection as aio

from jobkit.store.connection import _Connection

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "ab" * 20, 1, "jobkit", "enqueue", "", "default", "rid", b'{"k":"\xc3\xa9"}', "id", 0),
    ("HSET", "k", "field", "välue ünïcode", b"\x00\xff raw bytes"),
    ("CONFIG GET", "maxmemory"),  # a name with a space: redis-py splits it
    ("SET", "k", "v" * 100_000),  # past redis-py's buffer cutoff
    ("ZADD", "k", 1.5, "m", -3, "n", 0.1, "o", 1e-7, "p", 12345678901234567890, "q"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_c_packer_writes_the_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    ours, theirs = _Connection(), aio.Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    assert b"".join(ours.pack_commands([command, command])) == b"".join(theirs.pack_commands([command, command]))
