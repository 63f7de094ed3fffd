"""GCRA with a fake clock: a burst at once, then the sustained rate, and never more than
burst + rate * t in any span t, whatever the arrival times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.filters.gcra import MICROS, Rate, decide, parse_rate


def _admit_all(times: list[int], interval: int, burst: int) -> list[int]:
    tat = 0
    admitted = []
    for now in times:
        decision = decide(tat, now, interval, burst)
        if decision.admitted:
            tat = decision.tat
            admitted.append(now)
    return admitted


def test_a_burst_at_once_then_one_per_interval() -> None:
    interval = parse_rate("10/s").interval
    start = 1_000 * MICROS
    assert len(_admit_all([start] * 50, interval, 20)) == 20
    # After the burst, one more request each 100 ms.
    times = [start] * 20 + [start + k * MICROS // 100 for k in range(1, 101)]
    assert len(_admit_all(times, interval, 20)) == 20 + 10


def test_a_refusal_says_when_to_retry_and_what_remains() -> None:
    interval = parse_rate("1/s").interval
    first = decide(0, 5 * MICROS, interval, 2)
    second = decide(first.tat, 5 * MICROS, interval, 2)
    third = decide(second.tat, 5 * MICROS, interval, 2)
    assert (first.admitted, first.remaining) == (True, 1)
    assert (second.admitted, second.remaining) == (True, 0)
    assert not third.admitted and third.retry_after == MICROS and third.reset == 2 * MICROS
    later = decide(second.tat, 6 * MICROS, interval, 2)
    assert later.admitted


@given(
    count=st.integers(1, 1000),
    period=st.sampled_from("smhd"),
    burst=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 5 * MICROS), min_size=1, max_size=300),
)
def test_never_admits_more_than_burst_plus_rate_times_t(
    count: int, period: str, burst: int, gaps: list[int]
) -> None:
    rate = Rate(count, period)
    times = []
    now = 1_700_000_000 * MICROS
    for gap in gaps:
        now += gap
        times.append(now)
    admitted = _admit_all(times, rate.interval, burst)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            span = admitted[j] - start
            # Requests admitted in [start, start + span]: at most burst + span / interval.
            assert (j - i + 1) <= burst + span / rate.interval


@pytest.mark.parametrize("text", ["10", "10/x", "0/s", "-1/s", "1.5/s", "10 / s", "2000000/s", ""])
def test_rejects_a_malformed_or_excessive_rate(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@given(st.text(max_size=20))
def test_parse_rate_raises_only_value_error(text: str) -> None:
    try:
        rate = parse_rate(text)
    except ValueError:
        return
    assert str(rate) == text.strip() and rate.interval >= 1
