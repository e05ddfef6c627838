"""Connections to Redis: one URL or Sentinel, the same timeouts everywhere, and an asyncio twin for the API."""

from __future__ import annotations

import asyncio
import math
from contextlib import suppress
from typing import Any

import redis
from redis.asyncio import ConnectionPool as AsyncConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio import connection as aio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from jobkit.config.settings import Settings

__all__ = ["API_CONNECT_TIMEOUT_S", "API_SOCKET_TIMEOUT_S", "async_twin", "connect", "exchange", "fail_fast"]

#: An API request answers 503 within 2 s when Redis is away: one reconnect attempt, each bounded by these.
API_CONNECT_TIMEOUT_S = 0.4
API_SOCKET_TIMEOUT_S = 0.5
#: Connection settings an asyncio connection understands (the sync pool carries sync-only helpers too).
_ASYNC_CONNECTION_KEYS = {
    "host", "port", "db", "username", "password", "path", "socket_timeout", "socket_connect_timeout",
    "socket_keepalive", "health_check_interval", "client_name", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs",
    "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname",
}  # fmt: skip


def connect(settings: Settings) -> redis.Redis:
    """A client for ``REDIS_URL`` (or the embedded Redis), or for the master that Sentinel names."""
    if settings.sentinels:
        password = settings.sentinel_password
        # redis-py sends the Sentinels only socket options unless told: their own password goes in sentinel_kwargs.
        to_sentinels: dict[str, Any] = {"socket_timeout": 2.0}
        if settings.sentinel_auth:
            to_sentinels["password"] = settings.sentinel_auth
        sentinel = Sentinel(
            list(settings.sentinels), password=password, socket_timeout=2.0, sentinel_kwargs=to_sentinels
        )
        client: redis.Redis = sentinel.master_for(
            settings.sentinel_master or "mymaster", password=password, socket_timeout=5.0
        )
        return client
    return redis.Redis.from_url(
        settings.effective_redis_url(), socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=30
    )


def fail_fast(client: redis.Redis) -> None:
    """Short timeouts and a single immediate reconnect (the API's connections; workers keep the longer ones): a
    request fails fast while Redis is down, and the first one after it is back reconnects by itself."""
    client.connection_pool.connection_kwargs.update(
        socket_connect_timeout=API_CONNECT_TIMEOUT_S,
        socket_timeout=API_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError],
    )


try:  # redis-py's asyncio connections pack commands in Python; hiredis (its optional C parser) packs them in C
    from hiredis import pack_command as _c_packer
except ImportError:  # pragma: no cover - hiredis is a dependency; without it the Python packer is used
    _pack_in_c: Any = None
else:
    _pack_in_c = _c_packer


class _CPacked:
    """An asyncio connection that packs a command with hiredis (an API trigger's EVALSHA with a message of a few
    hundred bytes: about a tenth of the request's CPU in redis-py's Python packer). A command name with a space
    (``CONFIG GET``) or an argument hiredis does not take goes to redis-py's own packer."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if _pack_in_c is not None and not (isinstance(args[0], str) and " " in args[0]):
            with suppress(TypeError):  # an argument hiredis does not take: redis-py's packer below
                return [_pack_in_c(args)]
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


class _Connection(_CPacked, aio.Connection):
    """A TCP connection packing with hiredis."""


class _UnixConnection(_CPacked, aio.UnixDomainSocketConnection):
    """A Unix-socket connection packing with hiredis."""


class _SSLConnection(_CPacked, aio.SSLConnection):
    """A TLS connection packing with hiredis."""


def async_twin(client: redis.Redis) -> AsyncRedis | None:
    """An asyncio client with ``client``'s connection settings, or None where there is no asyncio twin (a
    Sentinel-managed pool)."""
    pool = client.connection_pool
    kind: Any = {
        redis.UnixDomainSocketConnection: _UnixConnection,
        redis.SSLConnection: _SSLConnection,
        redis.Connection: _Connection,
    }.get(pool.connection_class)
    if kind is None:
        return None
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _ASYNC_CONNECTION_KEYS}
    return AsyncRedis(
        connection_pool=AsyncConnectionPool(connection_class=kind, retry=AsyncRetry(NoBackoff(), 1), **kwargs)
    )


async def exchange(client: AsyncRedis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write on one of ``client``'s pooled connections and read their replies: each reply
    as Redis gave it (no response callbacks), an error reply as its exception (``NoScriptError``, ``ResponseError``)
    in its place. What a pipeline does, without its machinery (a command stack, per-command callbacks and option
    handling, redis-py 8's field-set preparation): about 5 µs less per command of an API trigger's batch. A lost
    connection is retried as the pool's retry policy says (one reconnect), then raised."""
    pool = client.connection_pool
    connection = await pool.get_connection()
    limit = connection.socket_timeout

    async def once() -> list[Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        try:
            # One deadline for the batch's replies (they come back together), not a timer per reply: a timer each
            # was a third of the exchange's CPU (``math.inf``: the read itself sets none).
            async with asyncio.timeout(limit):
                for _ in commands:
                    try:
                        replies.append(await connection.read_response(timeout=math.inf))
                    except redis.ResponseError as error:
                        replies.append(error)
        except TimeoutError:
            await connection.disconnect()  # replies may still be on their way: the connection is out of step
            raise redis.TimeoutError(f"no reply from Redis within {limit} s") from None
        return replies

    async def failed(_: Exception) -> None:
        await connection.disconnect()

    try:
        replies: list[Any] = await connection.retry.call_with_retry(once, failed)
        return replies
    finally:
        await pool.release(connection)
