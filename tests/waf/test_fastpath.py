"""The fast path of a transformation pipeline gives what the pipeline gives, for every value
it claims (the engine skips the pipeline on those)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outwork.waf.fastpath import TRIGGERS, fast_path
from outwork.waf.transforms import pipeline

NAMES = sorted(TRIGGERS)
# Bytes around the triggers, so that near misses come up often.
VALUES = st.binary(max_size=40) | st.text(
    alphabet="aZ09 ._-/\\%+&#*;,'\"^(<>!\t\x00é", max_size=40
).map(lambda s: s.encode("utf-8"))


@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4), VALUES)
def test_fast_path_agrees_with_the_pipeline(names: list[str], value: bytes) -> None:
    fast = fast_path(names)
    assert fast is not None
    if fast.acts.search(value) is None:
        expected = pipeline(names)(value)
        assert (value.lower() if fast.lowers else value) == expected


def test_pipelines_without_a_fast_path() -> None:
    assert fast_path(["lowercase", "base64decode"]) is None
    assert fast_path(["length"]) is None
    plain = fast_path(["urldecodeuni", "lowercase"])
    assert plain is not None and plain.acts.search(b"page 2 of Orders") is None
    assert plain.acts.search(b"a%20b") is not None
