"""The histogram's bucket search (`bucket_index`) against `bisect.bisect_left`, which it
replaces on the per-request path: the same bucket for every value, NaN and infinities too."""

from __future__ import annotations

import bisect
import math

from hypothesis import given
from hypothesis import strategies as st

from outwork.observe.metrics import LATENCY_BUCKETS, Histogram, bucket_index


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_bucket_of_a_latency_is_bisect_left(value: float) -> None:
    assert bucket_index(LATENCY_BUCKETS, value) == bisect.bisect_left(LATENCY_BUCKETS, value)


@given(
    st.lists(st.floats(allow_nan=False), max_size=20).map(lambda b: tuple(sorted(b))),
    st.floats(allow_nan=True),
)
def test_bucket_for_any_sorted_bounds_is_bisect_left(
    bounds: tuple[float, ...], value: float
) -> None:
    assert bucket_index(bounds, value) == bisect.bisect_left(bounds, value)


def test_bounds_are_inclusive_and_the_last_bucket_is_unbounded() -> None:
    histogram = Histogram()
    for value in (LATENCY_BUCKETS[0], LATENCY_BUCKETS[-1], LATENCY_BUCKETS[-1] * 2, math.inf):
        histogram.observe("route", value)
    series = histogram.series["route"]
    assert series[0] == 1
    assert series[len(LATENCY_BUCKETS) - 1] == 1
    assert series[len(LATENCY_BUCKETS)] == 2  # above every bound: +Inf
