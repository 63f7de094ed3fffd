"""The listener `tls:` sections the issue-3 tests run the gateway with (README "Configuration").

Paths are absolute (the loader resolves relative ones against the config file; the test PKI
lives elsewhere).
"""

from __future__ import annotations

from typing import Any

from .pki import ClientPKI, TestPKI


def cert_entry(pki: TestPKI, kind: str) -> dict[str, str]:
    leaf = pki.leaves[kind]
    return {"cert": str(leaf.cert), "key": str(leaf.key)}


def dual(pki: TestPKI, **settings: Any) -> dict[str, Any]:
    """ECDSA P-256 first (the default), RSA-2048 second, for the same names."""
    return {
        "certificates": [cert_entry(pki, "ecdsa-p256"), cert_entry(pki, "rsa-2048")],
        **settings,
    }


def mtls(pki: TestPKI, clients: ClientPKI, mode: str) -> dict[str, Any]:
    return dual(pki, client_auth=mode, client_ca=str(clients.ca_cert))
