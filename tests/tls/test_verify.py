"""Server-chain verification with the cached trust store: still strict, built once per config."""

from __future__ import annotations

import time

import pytest

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.verify import MAX_CACHED_STORES, trust_store, verify_server_chain
from tests.tls.pki import CertAuthority


def test_a_store_is_built_once_per_root_tuple_and_the_cache_is_bounded() -> None:
    ca = CertAuthority()
    roots = (ca.cert,)
    assert trust_store(roots) is trust_store(roots)
    # An equal but distinct tuple (another config) gets its own store.
    assert trust_store((ca.cert,)) is not trust_store(roots)
    others = [(CertAuthority().cert,) for _ in range(MAX_CACHED_STORES + 4)]
    for other in others:
        trust_store(other)
    from outwork.tls import verify

    assert len(verify._STORES) <= MAX_CACHED_STORES


def test_cached_roots_still_decide_per_config() -> None:
    """A store cached for one config's roots never vouches for another config's chain."""
    good, other = CertAuthority(), CertAuthority("another CA")
    leaf = good.issue(names=("api.internal",))
    now = time.time()
    good_roots, other_roots = (good.cert,), (other.cert,)
    for _ in range(3):
        verify_server_chain([leaf.cert], good_roots, "api.internal", now)
        with pytest.raises(TLSError) as refused:
            verify_server_chain([leaf.cert], other_roots, "api.internal", now)
        assert refused.value.alert is AlertDescription.UNKNOWN_CA
        with pytest.raises(TLSError) as wrong_name:
            verify_server_chain([leaf.cert], good_roots, "other.internal", now)
        assert wrong_name.value.alert is AlertDescription.BAD_CERTIFICATE
