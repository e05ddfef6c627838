"""Fire times for each spec form, from a fixed clock. Every case is pinned against Debian cron's behaviour."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger as APSCronTrigger

from jobkit.config.cron import CronError, parse_spec

BERLIN = ZoneInfo("Europe/Berlin")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def fires(spec: str, start: datetime, count: int = 3, zone: ZoneInfo | None = None) -> list[datetime]:
    """The next ``count`` fire times after ``start``, as aware datetimes in ``zone`` (UTC by default)."""
    trigger = parse_spec(spec, zone)
    out: list[datetime] = []
    cursor = ms(start)
    for _ in range(count):
        following = trigger.next_after(cursor)
        assert following is not None
        out.append(datetime.fromtimestamp(following / 1000, zone or UTC))
        cursor = following
    return out


# Thursday 1 January 2026, 00:00 UTC
NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0 2 * * *", [utc(2026, 1, 1, 2), utc(2026, 1, 2, 2), utc(2026, 1, 3, 2)]),
        ("0 8 * * MON", [utc(2026, 1, 5, 8), utc(2026, 1, 12, 8), utc(2026, 1, 19, 8)]),
        ("0 8 * * mon", [utc(2026, 1, 5, 8), utc(2026, 1, 12, 8), utc(2026, 1, 19, 8)]),
        ("0 8 * * 1", [utc(2026, 1, 5, 8), utc(2026, 1, 12, 8), utc(2026, 1, 19, 8)]),
        ("0 0 * * 0", [utc(2026, 1, 4), utc(2026, 1, 11), utc(2026, 1, 18)]),  # Sunday as 0
        ("0 0 * * 7", [utc(2026, 1, 4), utc(2026, 1, 11), utc(2026, 1, 18)]),  # Sunday as 7
        ("0 0 * * SUN", [utc(2026, 1, 4), utc(2026, 1, 11), utc(2026, 1, 18)]),
        ("0 9 * * 5-7", [utc(2026, 1, 2, 9), utc(2026, 1, 3, 9), utc(2026, 1, 4, 9)]),  # Fri, Sat, Sun
        ("*/15 * * * *", [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45)]),
        ("0 0 1 JAN,JUL *", [utc(2026, 7, 1), utc(2027, 1, 1), utc(2027, 7, 1)]),
        ("@hourly", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]),
        ("@daily", [utc(2026, 1, 2), utc(2026, 1, 3), utc(2026, 1, 4)]),
        ("@weekly", [utc(2026, 1, 4), utc(2026, 1, 11), utc(2026, 1, 18)]),  # Sundays, midnight
        ("@monthly", [utc(2026, 2, 1), utc(2026, 3, 1), utc(2026, 4, 1)]),
        ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1), utc(2029, 1, 1)]),
        ("@daily 2:00", [utc(2026, 1, 1, 2), utc(2026, 1, 2, 2), utc(2026, 1, 3, 2)]),
        ("@daily 23:59", [utc(2026, 1, 1, 23, 59), utc(2026, 1, 2, 23, 59), utc(2026, 1, 3, 23, 59)]),
        # anchored to the epoch: 16 fires a day at 00:00, 01:30, 03:00 … UTC, whoever computes them
        ("@every 90m", [utc(2026, 1, 1, 1, 30), utc(2026, 1, 1, 3), utc(2026, 1, 1, 4, 30)]),
        ("@every 1s", [utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 2), utc(2026, 1, 1, 0, 0, 3)]),
        ("@every 1h", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]),
        # month-end: the 31st only in months that have one; L is the last day of every month
        ("0 0 31 * *", [utc(2026, 1, 31), utc(2026, 3, 31), utc(2026, 5, 31)]),
        ("0 0 L * *", [utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 31)]),
        ("0 0 29 2 *", [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)]),
        # cron's OR rule: day-of-month 13 OR a Friday (Jan 2 is a Friday, Jan 13 a Tuesday)
        ("0 0 13 * 5", [utc(2026, 1, 2), utc(2026, 1, 9), utc(2026, 1, 13)]),
        # ...but a field starting with * makes it AND (Debian cron): Fridays that are also odd days
        ("0 0 */2 * 5", [utc(2026, 1, 9), utc(2026, 1, 23), utc(2026, 2, 13)]),
    ],
)
def test_next_fire_times_from_a_fixed_clock(spec: str, expected: list[datetime]) -> None:
    assert fires(spec, NEW_YEAR) == expected


def test_next_fire_is_strictly_after_the_clock() -> None:
    trigger = parse_spec("@every 1s")
    assert trigger.next_after(ms(NEW_YEAR)) == ms(NEW_YEAR) + 1000
    assert trigger.next_after(ms(NEW_YEAR) + 999) == ms(NEW_YEAR) + 1000
    assert parse_spec("0 2 * * *").next_after(ms(utc(2026, 1, 1, 2))) == ms(utc(2026, 1, 2, 2))


def test_every_is_the_same_for_every_process_whatever_its_start() -> None:
    trigger = parse_spec("@every 90m")
    starts = [ms(NEW_YEAR) + offset for offset in (0, 1, 1234, 59_999, 3_600_000)]
    assert {trigger.next_after(start) for start in starts} == {ms(utc(2026, 1, 1, 1, 30))}


def test_a_0230_berlin_entry_fires_once_on_the_spring_forward_day() -> None:
    # 29 March 2026: clocks jump from 02:00 to 03:00 CEST; 02:30 does not exist, so it fires at 03:00 (as cron does)
    got = fires("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3, BERLIN)
    assert [f.isoformat() for f in got] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_0230_berlin_entry_fires_once_on_the_fall_back_day() -> None:
    # 25 October 2026: 02:00-03:00 happens twice (CEST, then CET); it fires at the first 02:30 only
    got = fires("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3, BERLIN)
    assert [f.astimezone(UTC).isoformat() for f in got] == [
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST, the first one
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
        "2026-10-27T01:30:00+00:00",
    ]


def test_asked_from_inside_the_repeated_hour_the_first_0230_is_not_given_again() -> None:
    inside = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00 CET, after the first 02:30 (00:30 UTC)
    trigger = parse_spec("30 2 * * *", BERLIN)
    assert trigger.next_after(ms(inside)) == ms(datetime(2026, 10, 26, 1, 30, tzinfo=UTC))


def test_an_hourly_entry_in_berlin_fires_every_real_hour_across_fall_back() -> None:
    got = fires("0 * * * *", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 3, BERLIN)
    assert [f.astimezone(UTC).hour for f in got] == [1, 2, 3]


def test_the_zone_is_utc_unless_given_never_the_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert fires("0 2 * * *", NEW_YEAR, 1) == [utc(2026, 1, 1, 2)]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_berlin_daily_entry_fires_at_berlin_time() -> None:
    assert fires("@daily 3:00", NEW_YEAR, 1, BERLIN)[0].isoformat() == "2026-01-01T03:00:00+01:00"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0 0 * * * *", "expected 5 fields, found 6"),
        ("0 0 0 * * * 2026", "expected 5 fields, found 7"),
        ("@fortnightly", "unknown descriptor '@fortnightly'"),
        ("@reboot", "unknown descriptor '@reboot'"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("0 0 * * MOM", "unknown day name 'MOM' in the day-of-week field"),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires: no chosen month has that day"),
        ("*/0 * * * *", "minute field: step '0' must be a whole number >= 1"),
        ("0 0 * * FRI-MON", "day-of-week range 'FRI-MON' runs backwards"),
        ("0 0 ? * *", "day-of-month field: expected a number, found '?'"),
        ("@every 500ms", "@every 500ms: the interval must be at least 1s"),
        ("@every soon", "@every: expected a duration, found 'soon'"),
        ("@daily 25:00", "expected a time of day H:MM, found '25:00'"),
        ("@hourly 5", "@hourly takes no argument, found '5'"),
        ("@at 2026-01-01T00:00:00+00:00", "unknown descriptor '@at'"),  # API-only
    ],
)
def test_refused_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(CronError) as raised:
        parse_spec(spec)
    assert raised.value.message == message


# -- why not APScheduler's from_crontab: pinned, so a fixed APScheduler shows up here ---------------------------------
def aps_next(expression: str, after: datetime) -> datetime:
    trigger = APSCronTrigger.from_crontab(expression, timezone="UTC")
    return trigger.get_next_fire_time(None, after)  # type: ignore[no-any-return]


def test_apscheduler_reads_day_of_week_0_as_monday_where_jobkit_reads_sunday() -> None:
    assert aps_next("0 0 * * 0", NEW_YEAR).weekday() == 0  # Monday
    assert fires("0 0 * * 0", NEW_YEAR, 1)[0].weekday() == 6  # Sunday


def test_apscheduler_refuses_day_of_week_7_where_jobkit_reads_sunday() -> None:
    with pytest.raises(ValueError):
        APSCronTrigger.from_crontab("0 0 * * 7", timezone="UTC")
    assert fires("0 0 * * 7", NEW_YEAR, 1)[0].weekday() == 6


def test_apscheduler_ands_day_of_month_and_day_of_week_where_jobkit_ors_them() -> None:
    assert aps_next("0 0 13 * FRI", NEW_YEAR) == utc(2026, 2, 13)  # the next Friday the 13th
    assert fires("0 0 13 * 5", NEW_YEAR, 1) == [utc(2026, 1, 2)]


def test_apscheduler_fires_0230_twice_on_fall_back_where_jobkit_fires_once() -> None:
    trigger = APSCronTrigger.from_crontab("30 2 * * *", timezone=BERLIN)
    first = trigger.get_next_fire_time(None, datetime(2026, 10, 25, 0, tzinfo=UTC))
    second = trigger.get_next_fire_time(first, first)
    assert first.date() == second.date()  # two fires the same day
    assert len({f.date() for f in fires("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN), 2, BERLIN)}) == 2
