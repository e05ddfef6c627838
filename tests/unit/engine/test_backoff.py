from __future__ import annotations

import random
from datetime import timedelta

import dramatiq
import pytest

from jobkit.engine.middleware.retries import Retries, backoff_delay

LOW, HIGH = timedelta(seconds=1), timedelta(hours=1)


@pytest.mark.parametrize("retry", range(1, 30))
def test_every_delay_is_within_the_configured_bounds(retry: int) -> None:
    rng = random.Random(retry)
    for _ in range(200):
        assert LOW <= backoff_delay(retry, LOW, HIGH, rng) <= HIGH


def test_delays_grow_exponentially_with_jitter_up_to_twice_the_base() -> None:
    rng = random.Random(7)
    for retry in range(1, 8):
        base = LOW * 2 ** (retry - 1)
        draws = [backoff_delay(retry, LOW, HIGH, rng) for _ in range(500)]
        assert min(draws) >= base
        assert max(draws) <= 2 * base
        assert max(draws) - min(draws) > base / 2  # jittered, not constant


def test_capped_delays_still_jitter_below_the_maximum() -> None:
    rng = random.Random(3)
    draws = [backoff_delay(40, LOW, HIGH, rng) for _ in range(500)]
    assert all(HIGH / 2 <= d <= HIGH for d in draws)
    assert len(set(draws)) > 100


def test_a_minimum_above_the_maximum_waits_the_maximum() -> None:
    # A plain actor that sets only max_backoff=300 keeps Dramatiq's 15 s minimum: no wait exceeds the maximum.
    rng = random.Random(5)
    assert {backoff_delay(retry, timedelta(seconds=15), timedelta(milliseconds=300), rng) for retry in (1, 2, 9)} == {
        timedelta(milliseconds=300)
    }


def test_a_plain_actor_gets_the_defaults_of_dramatiqs_own_retries_middleware() -> None:
    ours, theirs = Retries(), dramatiq.middleware.Retries()
    assert (ours.max_retries, ours.min_backoff, ours.max_backoff) == (20, 15_000, 7 * 86_400_000)
    assert (ours.max_retries, ours.min_backoff, ours.max_backoff) == (
        theirs.max_retries, theirs.min_backoff, theirs.max_backoff,
    )  # fmt: skip
    assert theirs.actor_options <= ours.actor_options
