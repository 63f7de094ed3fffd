"""JSON bodies as ModSecurity 2.9's yajl callbacks name them (msc_json.c); the expected names
are what ModSecurity 2.9.7 on Apache logged for the same bodies."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.waf.request import MAX_JSON_DEPTH, parse_body
from tests.cycles import cycles_left


@pytest.mark.parametrize(
    ("body", "args"),
    [
        (
            b'{ "() { :; }":"foo", "a": {"b": [1, {"c": 2}]} }',
            [(b"() { :; }", b"foo"), (b"a.b.b", b"1"), (b"a.b.b.c", b"2")],
        ),
        (
            b'[1,"x",[2,3],{"k":"v"}]',
            [(b"array.array", b"1"), (b"array.array", b"x"), (b"array.array.array", b"2"),
             (b"array.array.array", b"3"), (b"array.array.k", b"v")],
        ),
        (
            b'{"n": null, "t": true, "f": false, "num": 1.50, "e": 1e5, "s": "a\\u00e9\\n"}',
            [(b"n", b""), (b"t", b"true"), (b"f", b"false"), (b"num", b"1.50"), (b"e", b"1e5"),
             (b"s", b"a\xc3\xa9\n")],
        ),
        (b'{"a":[[1,2],[3]]}', [(b"a.a.a", b"1"), (b"a.a.a", b"2"), (b"a.a.a", b"3")]),
        (b'"scalar"', [(b"", b"scalar")]),
        (b'{"a":{}}', []),
        (b'{"dup":1,"dup":2}', [(b"dup", b"1"), (b"dup", b"2")]),
        (b'{"a.b": {"c":1}, "d":2, "e":{"f":3}}', [(b"a.b.c", b"1"), (b"a.d", b"2"),
                                                  (b"a.e.f", b"3")]),
        (b'[{"a":[{"b":1}]},2]', [(b"array.array.a.a.b", b"1"), (b"array.array", b"2")]),
        (b'{"x":[{"y":{"z":[1]}}],"w":0}', [(b"x.x.y.z.z", b"1"), (b"w", b"0")]),
    ],
)  # fmt: skip
def test_names_as_modsecurity_2_9(body: bytes, args: list[tuple[bytes, bytes]]) -> None:
    parsed = parse_body("JSON", b"application/json", body)
    assert parsed.args == args and not parsed.error


def test_rejects_what_yajl_rejects() -> None:
    for body in (b"NaN", b'{"a": Infinity}', b'{"x":1} trailing'):
        assert parse_body("JSON", b"application/json", body).error, body


@pytest.mark.parametrize("leaf", [b"1", b'"s"', b"{}"])
def test_nesting_past_the_depth_limit_is_a_body_error(leaf: bytes) -> None:
    """MAX_JSON_DEPTH counts containers inside the top-level one, whatever the innermost
    holds (the walk adds string and number leaves without a call of their own)."""

    def nested(containers: int) -> bytes:
        return b'{"k":' * containers + leaf + b"}" * containers

    inside = nested(MAX_JSON_DEPTH + 1 - (leaf == b"{}"))
    assert not parse_body("JSON", b"application/json", inside).error
    deeper = nested(MAX_JSON_DEPTH + 2 - (leaf == b"{}"))
    assert b"nested too deep" in parse_body("JSON", b"application/json", deeper).error


KEYS = st.text(alphabet="abc_", min_size=1, max_size=4)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
OBJECTS = st.recursive(
    st.dictionaries(KEYS, SCALARS, max_size=3),
    lambda inner: st.dictionaries(KEYS, st.one_of(SCALARS, inner), max_size=3),
    max_leaves=12,
)
DOCUMENTS = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner)),
    max_leaves=15,
)  # fmt: skip


def leaves(node: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in leaves(value, (*path, key))]
    return [path]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=OBJECTS)
def test_objects_name_each_leaf_by_its_dotted_path(document: dict[str, object]) -> None:
    parsed = parse_body("JSON", b"application/json", json.dumps(document).encode())
    assert [name for name, _ in parsed.args] == [".".join(p).encode() for p in leaves(document)]


def count(node: object) -> int:
    if isinstance(node, dict):
        return sum(count(v) for v in node.values())
    if isinstance(node, list):
        return sum(count(v) for v in node)
    return 1


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS)
def test_every_scalar_is_one_argument(document: object) -> None:
    parsed = parse_body("JSON", b"application/json", json.dumps(document).encode())
    assert len(parsed.args) == count(document) and not parsed.error


NUMBERS = st.from_regex(
    r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


@settings(deadline=None)
@given(number=NUMBERS, in_array=st.booleans())
def test_a_number_is_its_text_as_written(number: str, in_array: bool) -> None:
    """ModSecurity hands yajl's number text over as is: `1.50` stays `1.50`, `1E+05` stays."""
    body = ('{"n": [%s]}' if in_array else '{"n": %s}') % number
    parsed = parse_body("JSON", b"application/json", body.encode())
    assert parsed.args == [(b"n.n" if in_array else b"n", number.encode())]
    assert not parsed.error


@pytest.mark.parametrize("data", [b'{"a": {"b": [1, {"c": 2}]}}', b"[1, [2, [3]]]", b'{"a": [1'])
def test_a_json_body_read_leaves_no_reference_cycle(data: bytes) -> None:
    """The walk once called itself through its closure: function and cell held each other,
    and with them the parsed document, garbage for the collector on every JSON body."""
    with cycles_left() as left:
        parse_body("JSON", b"application/json", data)
    assert left == []
