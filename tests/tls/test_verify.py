"""Certificate verification: the cached trust store (still strict, built once per config), the
CA policy upstream chains share with client chains (an `openssl req -x509` CA works, the name
is still checked), and malformed certificate fields ending in an alert in both roles, never in
an exception."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.clientauth import ClientAuth, identity_of, verify_client_chain
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.enums import ProtocolVersion
from outwork.tls.verify import MAX_CACHED_STORES, load_chain, trust_store, verify_server_chain
from tests.tls.inmemory import connected_pair
from tests.tls.odd_certs import (
    CN_TLV,
    IP_TLV,
    MALFORMED,
    PLACEHOLDER_CN,
    OpensslCA,
    malformed_leaf,
    placeholder_leaf,
    resign,
    tlv,
)
from tests.tls.pki import CertAuthority, Leaf

VERSIONS = [ProtocolVersion.TLS13, ProtocolVersion.TLS12]


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


def test_an_upstream_ca_without_key_usage_is_accepted_and_the_name_still_checked(
    tmp_path: Path,
) -> None:
    ca = OpensslCA(tmp_path, "openssl-req-x509-upstream-ca")
    leaf = ca.issue("upstream", "subjectAltName=DNS:backend.internal", cn="backend")
    chain = [leaf.cert]
    verify_server_chain(chain, (ca.made.cert,), "backend.internal", time.time())
    with pytest.raises(TLSError) as refused:
        verify_server_chain(chain, (ca.made.cert,), "other.internal", time.time())
    assert refused.value.alert == AlertDescription.BAD_CERTIFICATE
    no_san = ca.issue("upstream-no-san", "basicConstraints=CA:FALSE", cn="backend.internal")
    with pytest.raises(TLSError) as refused:
        verify_server_chain([no_san.cert], (ca.made.cert,), "backend.internal", time.time())
    assert refused.value.alert == AlertDescription.BAD_CERTIFICATE  # a server needs a SAN
    v1 = ca.issue("upstream-v1", "", cn="backend.internal")
    with pytest.raises(TLSError, match="server certificate is X.509 v1; v3 is required"):
        verify_server_chain([v1.cert], (ca.made.cert,), "backend.internal", time.time())


def _failed(events: list[ev.Event]) -> list[ev.ConnectionFailed]:
    return [e for e in events if isinstance(e, ev.ConnectionFailed)]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_client_certificate_ends_in_bad_certificate(
    version: ProtocolVersion, kind: str, leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    client_ca = CertAuthority("malformed client CA")
    _, certified = malformed_leaf(client_ca, kind)
    for mode in (ClientAuth.REQUIRED, ClientAuth.OPTIONAL):
        server_config = ServerConfig(
            certificates=(leaves["ecdsa-p256"].certified(),),
            client_auth=mode,
            client_ca=(client_ca.cert,),
        )
        client_config = ClientConfig(
            trust_roots=(ca.cert,), max_version=version, client_certificate=certified
        )
        client, server, client_events, server_events = connected_pair(server_config, client_config)
        if mode is ClientAuth.REQUIRED:
            failed = _failed(server_events)
            assert [f.alert for f in failed] == [AlertDescription.BAD_CERTIFICATE], server_events
            assert "malformed client certificate" in failed[0].reason
            assert any(
                isinstance(e, ev.AlertReceived)
                and e.description == AlertDescription.BAD_CERTIFICATE
                for e in client_events
            )
        else:
            assert server.is_established and server.client_identity is None, server_events


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
# The SAN kinds cannot be served by outwork itself (its certificate index reads the SANs of
# its own certificates): the fuzz test below covers them in verify_server_chain.
@pytest.mark.parametrize("kind", [k for k in MALFORMED if k.startswith("subject")])
def test_a_malformed_server_certificate_ends_in_bad_certificate(
    version: ProtocolVersion, kind: str
) -> None:
    server_ca = CertAuthority("malformed server CA")
    _, certified = malformed_leaf(server_ca, kind, server=True)
    server_config = ServerConfig(certificates=(certified,))
    client_config = ClientConfig(trust_roots=(server_ca.cert,), max_version=version)
    # A name the certificate does not carry: the verifier's refusal reads its fields.
    client, server, client_events, server_events = connected_pair(
        server_config, client_config, server_name="elsewhere.example"
    )
    failed = _failed(client_events)
    assert [f.alert for f in failed] == [AlertDescription.BAD_CERTIFICATE], client_events
    assert not client.is_established


# Replacement values for the CN's and the SAN IP address's TLVs, same length as the originals:
# a string or other type tag and any content, or any bytes at all.
_CN_LENGTH = len(PLACEHOLDER_CN)
cn_values = st.one_of(
    st.tuples(
        st.sampled_from([0x0C, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E, 0x02, 0x03, 0x04, 0x05, 0x30]),
        st.binary(min_size=_CN_LENGTH, max_size=_CN_LENGTH),
    ).map(lambda t: tlv(t[0], t[1])),
    st.binary(min_size=_CN_LENGTH + 2, max_size=_CN_LENGTH + 2),
)
ip_values = st.one_of(
    st.tuples(
        st.sampled_from([0x80, 0x81, 0x82, 0x86, 0x87, 0x88, 0xA0, 0xA4]),
        st.binary(min_size=4, max_size=4),
    ).map(lambda t: tlv(t[0], t[1])),
    st.binary(min_size=6, max_size=6),
)
FUZZ_CA = CertAuthority("fuzzed names CA")
FUZZ_LEAF = placeholder_leaf(FUZZ_CA)[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cn_values, ip_values)
def test_any_name_bytes_give_an_identity_or_a_tls_error(cn: bytes, ip: bytes) -> None:
    """Whatever a peer puts in its names, every check the engine runs on a certificate
    returns or raises TLSError: never ValueError, TypeError or anything else."""
    der = resign(FUZZ_CA, FUZZ_LEAF, (CN_TLV, cn), (IP_TLV, ip))
    now = time.time()
    for check in (
        lambda: verify_client_chain(load_chain([der]), (FUZZ_CA.cert,), now),
        lambda: identity_of(load_chain([der])[0]),
        lambda: verify_server_chain(load_chain([der]), (FUZZ_CA.cert,), "localhost", now),
        lambda: verify_server_chain(load_chain([der]), (FUZZ_CA.cert,), "elsewhere", now),
    ):
        try:
            check()
        except TLSError:
            pass


def _cert(
    name: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None,
    extensions: list[x509.ExtensionType],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer, issuer_name = issuer or (key, subject)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=5))
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        builder = builder.add_extension(aki, critical=False)
    for extension in extensions:
        critical = isinstance(extension, x509.BasicConstraints | x509.NameConstraints)
        builder = builder.add_extension(extension, critical=critical)
    return key, builder.sign(signer, hashes.SHA256())


def test_name_constraints_and_path_length_still_hold_under_the_relaxed_ca_policy() -> None:
    """The CA policy only stops asking for keyUsage: the verifier's own checks remain."""
    root_key, root = _cert("root", None, [x509.BasicConstraints(ca=True, path_length=None)])
    constrained = x509.NameConstraints([x509.DNSName("allowed.example")], None)
    inter_key, inter = _cert(
        "inter", (root_key, root.subject), [x509.BasicConstraints(True, 0), constrained]
    )
    usage = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )

    def leaf(name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name]) -> x509.Certificate:
        san = x509.SubjectAlternativeName([x509.DNSName(name)])
        return _cert("leaf", issuer, [san, usage])[1]

    now = time.time()
    inside = leaf("a.allowed.example", (inter_key, inter.subject))
    verify_server_chain([inside, inter], (root,), "a.allowed.example", now)
    verify_client_chain([inside, inter], (root,), now)
    outside = leaf("evil.example", (inter_key, inter.subject))
    with pytest.raises(TLSError, match="name constraints"):
        verify_server_chain([outside, inter], (root,), "evil.example", now)
    with pytest.raises(TLSError, match="name constraints"):
        verify_client_chain([outside, inter], (root,), now)
    sub_key, sub = _cert("sub", (inter_key, inter.subject), [x509.BasicConstraints(True, None)])
    too_deep = leaf("b.allowed.example", (sub_key, sub.subject))
    with pytest.raises(TLSError, match="path length"):
        verify_server_chain([too_deep, sub, inter], (root,), "b.allowed.example", now)
    with pytest.raises(TLSError, match="path length"):
        verify_client_chain([too_deep, sub, inter], (root,), now)
