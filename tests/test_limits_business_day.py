"""Business day numbers: local midnight in the issuer's zone, DST, the cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.core.business_day import day_number

EPOCH = datetime(1970, 1, 1).date()


def _expected(epoch: float, tz: str) -> int:
    return (datetime.fromtimestamp(epoch, ZoneInfo(tz)).date() - EPOCH).days


def test_algiers_midnight_is_23_00_utc() -> None:
    before = datetime(2026, 11, 29, 22, 59, 59, tzinfo=UTC).timestamp()
    after = datetime(2026, 11, 29, 23, 0, 0, tzinfo=UTC).timestamp()
    assert day_number(after) == day_number(before) + 1
    assert day_number(after) == (datetime(2026, 11, 30).date() - EPOCH).days
    assert day_number(after, "UTC") == day_number(before, "UTC")


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "America/Santiago"])
def test_every_minute_across_dst_changes(tz: str) -> None:
    zone = ZoneInfo(tz)
    for year in (2025, 2026):
        for month in range(1, 13):
            start = datetime(year, month, 1, tzinfo=zone)
            # scan the days around any transition in this month, minute by minute at edges
            for day in range(28):
                t0 = (start + timedelta(days=day)).timestamp()
                for minute in (-61, -60, -1, 0, 1, 59, 60, 61, 120, 180):
                    t = t0 + minute * 60
                    assert day_number(t, tz) == _expected(t, tz)


def test_dst_days_are_23_and_25_hours_long() -> None:
    tz = "Europe/Paris"
    spring = datetime(2026, 3, 29, tzinfo=ZoneInfo(tz)).timestamp()  # 23-hour day
    assert day_number(spring - 1, tz) + 1 == day_number(spring, tz)
    assert day_number(spring + 23 * 3600 - 1, tz) == day_number(spring, tz)
    assert day_number(spring + 23 * 3600, tz) == day_number(spring, tz) + 1
    autumn = datetime(2026, 10, 25, tzinfo=ZoneInfo(tz)).timestamp()  # 25-hour day
    assert day_number(autumn + 25 * 3600 - 1, tz) == day_number(autumn, tz)
    assert day_number(autumn + 25 * 3600, tz) == day_number(autumn, tz) + 1


@settings(max_examples=300, deadline=None)
@given(
    t=st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
    tz=st.sampled_from(["Africa/Algiers", "Europe/London", "Asia/Kathmandu", "America/St_Johns"]),
)
def test_matches_datetime_everywhere(t: float, tz: str) -> None:
    assert day_number(t, tz) == _expected(t, tz)


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ValueError, match="tz"):
        day_number(0, "Mars/Olympus")
    with pytest.raises(ValueError, match="epoch_seconds"):
        day_number(float("nan"))


def test_sub_microsecond_edges_round_like_datetime() -> None:
    """An instant within half a microsecond of midnight is dated as datetime dates it."""
    midnight = datetime(2035, 1, 1, tzinfo=ZoneInfo("Europe/London")).timestamp()
    for t in (2051222399.9999995, midnight - 4e-7, midnight - 6e-7, midnight - 1e-6, midnight):
        for tz in ("Europe/London", "Africa/Algiers"):
            day_number(t - 10, tz)  # warm the cache just before the edge
            assert day_number(t, tz) == _expected(t, tz), (t, tz)
