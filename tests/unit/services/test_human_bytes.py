"""Sizes written the way Redis's INFO writes them (the memory section of stats and the dashboard's Redis page)."""

from __future__ import annotations

from jobkit.services.system import human_bytes


def test_human_bytes_reads_like_redis_info() -> None:
    assert [human_bytes(n) for n in (512, 1536, 12_845_056, 2 * 1024**3)] == ["512B", "1.50K", "12.25M", "2.00G"]
