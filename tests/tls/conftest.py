from __future__ import annotations

import pytest

from tests.tls.pki import KEY_TYPES, CertAuthority, Leaf


@pytest.fixture(scope="session")
def ca() -> CertAuthority:
    return CertAuthority()


@pytest.fixture(scope="session")
def leaves(ca: CertAuthority) -> dict[str, Leaf]:
    return {kind: ca.issue(kind, ("localhost", "127.0.0.1")) for kind in KEY_TYPES}
