from __future__ import annotations

from datetime import timedelta

import pytest

from jobkit.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("0", timedelta()),
        ("90", timedelta(seconds=90)),
        (15, timedelta(seconds=15)),
    ],
)
def test_parse(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10 minutes", "5x", "m5", "1.5h", "-5s", "soon", True])
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["250ms", "30s", "5m", "1h30m", "1d", "2d3h", "0s"])
def test_format_is_the_inverse_of_parse(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
