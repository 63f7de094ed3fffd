"""The key schedule's HMAC with precomputed pads gives what the standard library's HMAC gives,
for every key length (shorter than, equal to and longer than the hash block) and message; and
the codec's entry-list reader refuses what its bounds refuse."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.codec import Reader
from outwork.tls.keyschedule import HmacKey, hkdf_expand_label


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["sha256", "sha384"]),
    st.binary(min_size=0, max_size=300),
    st.lists(st.binary(max_size=300), min_size=1, max_size=4),
)
def test_hmac_key_matches_stdlib_hmac(hash_name: str, key: bytes, messages: list[bytes]) -> None:
    mac = HmacKey(hash_name, key)
    for message in messages:  # one key, several messages: the pads are reused
        assert mac.digest(message) == hmac.digest(key, message, hash_name)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([("sha256", 32), ("sha384", 48)]),
    st.binary(min_size=32, max_size=48),
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=32),
)
def test_expand_label_matches_hkdf(
    suite: tuple[str, int], secret: bytes, context: bytes, length: int
) -> None:
    hash_name, _ = suite
    got = HmacKey(hash_name, secret).expand_label(b"key", context, length)
    assert got == hkdf_expand_label(hash_name, secret, b"key", context, length)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=8))
def test_typed_opaques_reads_back_what_was_written(entries: list[tuple[int, bytes]]) -> None:
    body = b"".join(t.to_bytes(2, "big") + len(b).to_bytes(2, "big") + b for t, b in entries)
    data = len(body).to_bytes(2, "big") + body
    r = Reader(data)
    assert r.typed_opaques(2, 0, 8) == entries
    assert r.at_end()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x03\x00\x01\x00",  # an entry header cut short
        b"\x00\x04\x00\x01\x00\x01",  # a body longer than its block
        b"\x00\x08\x00\x01\x00\x00\x00\x02\x00\x00",  # over max_count (1)
        b"\x00\x05\x00\x01\x00",  # a block longer than the input
    ],
)
def test_typed_opaques_rejects(data: bytes) -> None:
    with pytest.raises(TLSError) as caught:
        Reader(data).typed_opaques(2, 0, 1)
    assert caught.value.alert is AlertDescription.DECODE_ERROR
