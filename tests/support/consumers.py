"""A test's own consumer of the ``default`` queue, driven by hand (``next()``), and a record of its script calls."""

from __future__ import annotations

from typing import Any, cast

from dramatiq.broker import MessageProxy

from jobkit.engine.broker import JobkitBroker, JobkitConsumer


def consumer_of(broker: JobkitBroker, prefetch: int = 10) -> JobkitConsumer:
    return cast(JobkitConsumer, broker.consume("default", prefetch=prefetch, timeout=100))


def fetch(consumer: JobkitConsumer, count: int) -> list[MessageProxy]:
    """The next ``count`` messages the consumer hands out (it waits while there are none)."""
    found: list[MessageProxy] = []
    while len(found) < count:
        message = next(consumer)
        if message is not None:
            found.append(message)
    return found


def count_calls(consumer: JobkitConsumer) -> list[str]:
    """From now on, the command of every script call the consumer makes itself is appended to the returned list."""
    calls: list[str] = []
    real_call = consumer._call

    def counted(command: str, *args: Any, maintenance: bool = False) -> Any:
        calls.append(command)
        return real_call(command, *args, maintenance=maintenance)

    consumer._call = counted  # type: ignore[method-assign]
    return calls
