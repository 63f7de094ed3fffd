"""The key schedule's HMAC with a reused keyed state gives what the standard library's HMAC
gives, for every key length (shorter than, equal to and longer than the hash block) and message;
its HKDF-Expand-Label gives RFC 8446's, computed here on the standard library's HMAC; and the
codec's entry-list reader refuses what its bounds refuse."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.codec import Reader
from outwork.tls.keyschedule import (
    SUITES,
    HmacKey,
    KeySchedule,
    hkdf_expand_label,
    hkdf_extract,
    traffic_key_and_iv,
)


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
    # RFC 8446 7.1 HkdfLabel; one HKDF-Expand block (RFC 5869 2.3) covers every length here.
    label = b"tls13 key"
    info = length.to_bytes(2, "big") + bytes((len(label),)) + label
    info += bytes((len(context),)) + context
    expected = hmac.digest(secret, info + b"\x01", hash_name)[:length]
    assert HmacKey(hash_name, secret).expand_label(b"key", context, length) == expected
    assert hkdf_expand_label(hash_name, secret, b"key", context, length) == expected


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


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["sha256", "sha384"]),
    st.binary(min_size=1, max_size=64),
    st.binary(max_size=80),
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=200),
)
def test_hkdf_matches_rfc5869(
    hash_name: str, salt: bytes, ikm: bytes, context: bytes, length: int
) -> None:
    """Extract, then Expand over as many blocks as `length` needs, as RFC 5869 2.2-2.3 on the
    standard library's HMAC."""
    prk = hmac.digest(salt, ikm, hash_name)
    assert hkdf_extract(hash_name, salt, ikm) == prk
    label = b"tls13 key"
    info = length.to_bytes(2, "big") + bytes((len(label),)) + label
    info += bytes((len(context),)) + context
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        okm += block
        counter += 1
    assert hkdf_expand_label(hash_name, prk, b"key", context, length) == okm[:length]


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(sorted(SUITES)),
    st.binary(min_size=32, max_size=48),
    st.binary(min_size=32, max_size=48),
)
def test_finished_from_hmac_key_matches_from_secret(
    suite: int, secret: bytes, transcript_hash: bytes
) -> None:
    """The Finished of a handshake traffic secret is the same from the secret and from the
    HmacKey its record key was expanded with."""
    params = SUITES[suite]
    schedule = KeySchedule(params)
    from_key = schedule.finished_verify_data(HmacKey(params.hash_name, secret), transcript_hash)
    assert from_key == schedule.finished_verify_data(secret, transcript_hash)
    assert traffic_key_and_iv(params, secret, HmacKey(params.hash_name, secret)) == (
        traffic_key_and_iv(params, secret)
    )
