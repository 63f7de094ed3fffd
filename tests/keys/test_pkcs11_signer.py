"""Pkcs11Signer against a real SoftHSM2 (tests/keys/conftest.py): every scheme's signature checks
out with the certificate, the key cannot leave the token, load-time errors are clear, and the TLS
1.3 engine completes handshakes with token-held keys."""

from __future__ import annotations

import gc
import json
import multiprocessing
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from pkcs11 import Mechanism

from outwork.keys import pkcs11_signer
from outwork.keys.file_signer import FileSigner
from outwork.keys.pkcs11_signer import (
    Pkcs11KeyError,
    Pkcs11Signer,
    Pkcs11SigningError,
    load_pkcs11_certified_key,
)
from outwork.tls import events as ev
from outwork.tls.config import CertifiedKey, ClientConfig, ServerConfig
from outwork.tls.enums import ProtocolVersion, SignatureScheme
from outwork.tls.signing import TLS13_SCHEMES
from tests.keys.conftest import MODULE, PIN, SPARE_TOKEN, TOKEN, SoftHsm
from tests.tls.inmemory import connected_pair, pump
from tests.tls.pki import new_key

S = SignatureScheme
HASHES = {
    S.ECDSA_SECP256R1_SHA256: hashes.SHA256(),
    S.ECDSA_SECP384R1_SHA384: hashes.SHA384(),
    S.RSA_PSS_RSAE_SHA256: hashes.SHA256(),
    S.RSA_PSS_RSAE_SHA384: hashes.SHA384(),
    S.RSA_PSS_RSAE_SHA512: hashes.SHA512(),
    S.RSA_PKCS1_SHA256: hashes.SHA256(),
    S.RSA_PKCS1_SHA384: hashes.SHA384(),
    S.RSA_PKCS1_SHA512: hashes.SHA512(),
}
CASES = [
    ("api-ec", S.ECDSA_SECP256R1_SHA256),
    ("api-p384", S.ECDSA_SECP384R1_SHA384),
    ("api-rsa", S.RSA_PSS_RSAE_SHA256),
    ("api-rsa", S.RSA_PSS_RSAE_SHA384),
    ("api-rsa", S.RSA_PSS_RSAE_SHA512),
    ("api-rsa", S.RSA_PKCS1_SHA256),
    ("api-rsa", S.RSA_PKCS1_SHA384),
    ("api-rsa", S.RSA_PKCS1_SHA512),
    ("api-ed", S.ED25519),
]
DATA = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(range(48))


def verify(public: CertificatePublicKeyTypes, scheme: SignatureScheme, sig: bytes) -> None:
    """Independent of the signer: raises InvalidSignature when `sig` is wrong."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(sig, DATA)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(sig, DATA, ec.ECDSA(HASHES[scheme]))
    elif isinstance(public, rsa.RSAPublicKey):
        digest = HASHES[scheme]
        if scheme.name.startswith("RSA_PSS"):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            public.verify(sig, DATA, pss, digest)
        else:
            public.verify(sig, DATA, padding.PKCS1v15(), digest)
    else:
        raise AssertionError(type(public))


@pytest.fixture(scope="module")
def certified(softhsm: SoftHsm) -> dict[str, CertifiedKey]:
    return {
        label: load_pkcs11_certified_key(softhsm.cert_path(label), softhsm.uri(label))
        for label in ("api-ec", "api-rsa", "api-p384", "api-ed")
    }


# ----- signatures ------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "scheme"), CASES, ids=lambda v: getattr(v, "name", v))
def test_signature_verifies_with_the_certificate(
    label: str, scheme: SignatureScheme, softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    signer = certified[label].signer
    assert scheme in signer.schemes()
    signature = signer.sign(scheme, DATA)
    verify(softhsm.certs[label].public_key(), scheme, signature)
    with pytest.raises(InvalidSignature):
        verify(softhsm.certs[label].public_key(), scheme, signer.sign(scheme, DATA + b"!")[:-1])


def test_ecdsa_signature_is_der_not_raw_r_s(certified: dict[str, CertifiedKey]) -> None:
    signature = certified["api-ec"].signer.sign(S.ECDSA_SECP256R1_SHA256, DATA)
    assert signature[0] == 0x30 and signature[1] == len(signature) - 2
    r, s = decode_dss_signature(signature)
    assert r > 0 and s > 0


def test_pss_signatures_are_randomised(certified: dict[str, CertifiedKey]) -> None:
    signer = certified["api-rsa"].signer
    assert signer.sign(S.RSA_PSS_RSAE_SHA256, DATA) != signer.sign(S.RSA_PSS_RSAE_SHA256, DATA)
    # PKCS#1 v1.5 is deterministic: the same DigestInfo padded the same way.
    assert signer.sign(S.RSA_PKCS1_SHA256, DATA) == signer.sign(S.RSA_PKCS1_SHA256, DATA)


def test_schemes_match_the_file_signer(certified: dict[str, CertifiedKey]) -> None:
    """Same preference order as a file key of the same type: the engine cannot tell them apart."""
    for label, kind in (
        ("api-ec", "ecdsa-p256"),
        ("api-rsa", "rsa-2048"),
        ("api-p384", "ecdsa-p384"),
        ("api-ed", "ed25519"),
    ):
        assert certified[label].signer.schemes() == FileSigner(new_key(kind)).schemes()


def test_mechanisms_used_on_softhsm(certified: dict[str, CertifiedKey]) -> None:
    signer = certified["api-rsa"].signer
    assert isinstance(signer, Pkcs11Signer)
    mechanisms = signer.mechanisms
    assert {mechanisms[s] for s in signer.schemes() if s.name.startswith("RSA_PSS")} == {
        Mechanism.RSA_PKCS_PSS
    }
    assert {mechanisms[s] for s in signer.schemes() if s.name.startswith("RSA_PKCS1")} == {
        Mechanism.RSA_PKCS
    }
    ec_signer = certified["api-ec"].signer
    assert isinstance(ec_signer, Pkcs11Signer)
    assert ec_signer.mechanisms == {S.ECDSA_SECP256R1_SHA256: Mechanism.ECDSA}
    ed_signer = certified["api-ed"].signer
    assert isinstance(ed_signer, Pkcs11Signer)
    assert ed_signer.mechanisms == {S.ED25519: Mechanism.EDDSA}


@pytest.mark.parametrize("scheme", [s for _, s in CASES if s.name.startswith("RSA")])
def test_fallback_to_hashing_mechanisms(
    scheme: SignatureScheme, softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    """On a token without the raw mechanisms, the CKM_SHAxxx_RSA_PKCS[_PSS] ones are used and
    give the same kind of signature."""
    signer = certified["api-rsa"].signer
    assert isinstance(signer, Pkcs11Signer)
    everything = set(Mechanism)
    plan = pkcs11_signer._choose(
        scheme, None, everything - {Mechanism.RSA_PKCS_PSS, Mechanism.RSA_PKCS}
    )
    assert plan is not None and plan.digest is None
    assert plan.mechanism.name.startswith(HASHES[scheme].name.upper())
    verify(softhsm.certs["api-rsa"].public_key(), scheme, plan.encode(signer._raw_sign(plan, DATA)))


def test_ecdsa_without_any_mechanism_is_left_out() -> None:
    assert pkcs11_signer._choose(S.ECDSA_SECP256R1_SHA256, ec.SECP256R1(), set()) is None
    plan = pkcs11_signer._choose(S.ECDSA_SECP256R1_SHA256, ec.SECP256R1(), {Mechanism.ECDSA_SHA256})
    assert plan is not None and plan.mechanism == Mechanism.ECDSA_SHA256 and plan.ecdsa_size == 32


def test_sign_refuses_a_scheme_the_key_cannot_make(certified: dict[str, CertifiedKey]) -> None:
    with pytest.raises(ValueError, match="cannot sign with RSA_PSS_RSAE_SHA256"):
        certified["api-ec"].signer.sign(S.RSA_PSS_RSAE_SHA256, DATA)


def test_signer_is_safe_across_threads(
    softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    signer = certified["api-ec"].signer
    public = softhsm.certs["api-ec"].public_key()
    results: list[bytes] = []

    def work() -> None:
        for _ in range(20):
            results.append(signer.sign(S.ECDSA_SECP256R1_SHA256, DATA))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80
    for signature in results:
        verify(public, S.ECDSA_SECP256R1_SHA256, signature)


# ----- the key never leaves the token -----------------------------------------------------


def _probe(softhsm: SoftHsm, label: str, token: str = TOKEN) -> dict[str, dict[str, object]]:
    probe = Path(__file__).with_name("hsm_probe.py")
    done = subprocess.run(
        [sys.executable, str(probe), MODULE, token, PIN, label],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    result: dict[str, dict[str, object]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("label", ["api-ec", "api-rsa", "api-ed"])
def test_private_key_cannot_leave_the_token(
    label: str, softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    certified[label].signer.sign(certified[label].signer.schemes()[0], DATA)  # it is in use
    result = _probe(softhsm, label)
    assert result["flags"] == {
        "sensitive": True,
        "extractable": False,
        "always_sensitive": True,  # never was readable
        "never_extractable": True,  # never was exportable
        "local": True,  # generated on the token, not imported
        "private": True,
    }
    assert result["attempts"], result
    for attempt, outcome in result["attempts"].items():
        assert str(outcome).startswith("refused"), (attempt, outcome)
    assert result["flags_after"] == {"sensitive": True, "extractable": False}


def test_probe_does_see_an_exportable_key(softhsm: SoftHsm) -> None:
    """Control: the same probe on a key made extractable does get it out, so the refusals above
    come from the token, not from a probe that cannot succeed."""
    result = _probe(softhsm, "loose-ec", SPARE_TOKEN)
    assert result["flags"]["extractable"] is True
    assert str(result["attempts"]["read VALUE"]).startswith("ALLOWED")
    assert str(result["attempts"]["wrap with AES key"]).startswith("ALLOWED")


def test_signer_refuses_an_exportable_key(softhsm: SoftHsm) -> None:
    with pytest.raises(Pkcs11KeyError, match="can leave the token"):
        Pkcs11Signer(softhsm.uri("loose-ec", SPARE_TOKEN))
    with Pkcs11Signer(softhsm.uri("loose-ec", SPARE_TOKEN), allow_extractable=True) as signer:
        assert signer.schemes() == (S.ECDSA_SECP256R1_SHA256,)


# ----- load-time errors -------------------------------------------------------------------


def test_wrong_pin_on_a_token_not_logged_in(softhsm: SoftHsm) -> None:
    with pytest.raises(Pkcs11KeyError, match="wrong PIN for token 'spare'"):
        Pkcs11Signer(softhsm.uri("spare-ec", SPARE_TOKEN, pin="0000"))


def test_wrong_pin_on_a_token_already_logged_in(
    softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    """PKCS#11 answers a second login with 'already logged in' without looking at the PIN; the
    signer still refuses a wrong one."""
    assert certified["api-ec"].signer.schemes()  # the token is logged in
    with pytest.raises(Pkcs11KeyError, match="wrong PIN for token 'outwork'"):
        Pkcs11Signer(softhsm.uri("api-ec", pin="0000"))


def test_missing_token(softhsm: SoftHsm) -> None:
    with pytest.raises(Pkcs11KeyError, match=r"no such token .*'outwork'.*'spare'"):
        Pkcs11Signer(softhsm.uri("api-ec", token="nope"))


def test_missing_object(softhsm: SoftHsm) -> None:
    with pytest.raises(Pkcs11KeyError, match=r"no such private key .*'api-ec'"):
        Pkcs11Signer(softhsm.uri("api-2027"))


def test_id_selects_the_key(softhsm: SoftHsm) -> None:
    uri = softhsm.uri("api-rsa", extra=";id=%02").replace("object=api-rsa;", "")
    with Pkcs11Signer(uri) as signer:
        assert signer.schemes()[0] == S.RSA_PSS_RSAE_SHA256
    with pytest.raises(Pkcs11KeyError, match="no such private key"):
        Pkcs11Signer(softhsm.uri("api-rsa", extra=";id=%01"))  # label and id disagree


def test_missing_module(softhsm: SoftHsm) -> None:
    uri = softhsm.uri("api-ec").replace(MODULE, "/usr/lib/nowhere/libnothing.so")
    with pytest.raises(Pkcs11KeyError, match="PKCS#11 module not found: /usr/lib/nowhere"):
        Pkcs11Signer(uri)


def test_module_that_is_not_pkcs11(softhsm: SoftHsm, tmp_path: Path) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not a shared object")
    with pytest.raises(Pkcs11KeyError, match="cannot load PKCS#11 module"):
        Pkcs11Signer(softhsm.uri("api-ec").replace(MODULE, str(bogus)))


def test_module_argument_and_default(softhsm: SoftHsm) -> None:
    uri = f"pkcs11:token={TOKEN};object=api-ec?pin-source=file:{softhsm.pin_file}"
    with Pkcs11Signer(uri, module=MODULE) as signer:
        assert signer.schemes() == (S.ECDSA_SECP256R1_SHA256,)
    with Pkcs11Signer(uri) as signer:  # SoftHSM2 is the default module
        assert signer.schemes() == (S.ECDSA_SECP256R1_SHA256,)
    with pytest.raises(Pkcs11KeyError, match="must be absolute"):
        Pkcs11Signer(uri, module="libsofthsm2.so")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no PIN"),
        ("pin-source=file:/nonexistent/pin", "cannot read PIN file /nonexistent/pin"),
        ("pin-source=https://example.com/pin", "expected file:/absolute/path"),
        ("pin-source=file://host/pin", "only local files"),
        ("pin-source=file:/dev/zero", "PIN file /dev/zero is larger than 1024 bytes"),
    ],
)
def test_pin_errors(softhsm: SoftHsm, query: str, message: str) -> None:
    uri = f"pkcs11:token={TOKEN};object=api-ec?{query}"
    with pytest.raises(Pkcs11KeyError, match=message):
        Pkcs11Signer(uri)


def test_pin_source_forms(softhsm: SoftHsm) -> None:
    for source in (f"file:{softhsm.pin_file}", f"file://{softhsm.pin_file}", str(softhsm.pin_file)):
        with Pkcs11Signer(f"pkcs11:token={TOKEN};object=api-ec?pin-source={source}") as signer:
            assert signer.schemes()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=outwork;object=api-ec;type=cert?pin-value=1234", "not a private key"),
        ("pkcs11:token=outwork?pin-value=1234", "name the key with 'object=' or 'id='"),
        ("pkcs11:token=outwork;object=api-ec?pin-value=1234&module-name=softhsm2", None),
        ("pkcs11:token=outwork;object=api-ec;;?pin-value=1234", "empty path attribute"),
    ],
)
def test_uri_problems(softhsm: SoftHsm, uri: str, message: str | None) -> None:
    if message is None:  # module-name alone: the default module, not an error
        Pkcs11Signer(uri, module=MODULE).close()
        return
    with pytest.raises(ValueError, match=message):
        Pkcs11Signer(uri)


def test_errors_never_show_the_pin(softhsm: SoftHsm) -> None:
    with pytest.raises(Pkcs11KeyError) as caught:
        Pkcs11Signer(softhsm.uri("api-2027", pin="s3cr3t-pin"))
    assert "s3cr3t" not in str(caught.value)
    signer = Pkcs11Signer(softhsm.uri("api-ec", pin=PIN))
    assert PIN not in repr(signer) and PIN not in repr(signer.uri)
    signer.close()


def test_certificate_of_another_key_is_refused(softhsm: SoftHsm, tmp_path: Path) -> None:
    # Same type, different key: the token's public key object does not match.
    with pytest.raises(Pkcs11KeyError, match="not the token's public key"):
        load_pkcs11_certified_key(softhsm.cert_path("spare-ec"), softhsm.uri("api-ec"))
    # Other type.
    with pytest.raises(Pkcs11KeyError, match="not the token's public key"):
        load_pkcs11_certified_key(softhsm.cert_path("api-rsa"), softhsm.uri("api-ec"))


def test_key_without_public_object_needs_the_certificate(softhsm: SoftHsm) -> None:
    with pytest.raises(Pkcs11KeyError, match="no public key object .* give the certificate"):
        Pkcs11Signer(softhsm.uri("nopub-ec"))
    # With the certificate, the self test signature proves the pairing ...
    key = load_pkcs11_certified_key(softhsm.cert_path("nopub-ec"), softhsm.uri("nopub-ec"))
    verify(
        softhsm.certs["nopub-ec"].public_key(),
        S.ECDSA_SECP256R1_SHA256,
        key.signer.sign(S.ECDSA_SECP256R1_SHA256, DATA),
    )
    assert isinstance(key.signer, Pkcs11Signer)
    key.signer.close()
    # ... and refuses a certificate for another key.
    with pytest.raises(Pkcs11KeyError, match="do not belong together"):
        load_pkcs11_certified_key(softhsm.cert_path("api-ec"), softhsm.uri("nopub-ec"))


def test_empty_certificate_file(softhsm: SoftHsm, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(ValueError):
        load_pkcs11_certified_key(empty, softhsm.uri("api-ec"))


# ----- sessions and logins ----------------------------------------------------------------


def test_signers_share_the_login_and_close_independently(softhsm: SoftHsm) -> None:
    first = Pkcs11Signer(softhsm.uri("spare-ec", SPARE_TOKEN))
    second = Pkcs11Signer(softhsm.uri("spare-ec", SPARE_TOKEN))
    public = softhsm.certs["spare-ec"].public_key()
    first.close()
    first.close()  # idempotent
    with pytest.raises(Pkcs11SigningError, match="closed"):
        first.sign(S.ECDSA_SECP256R1_SHA256, DATA)
    verify(public, S.ECDSA_SECP256R1_SHA256, second.sign(S.ECDSA_SECP256R1_SHA256, DATA))
    second.close()
    # The token is logged out now: a new signer logs in again, and a wrong PIN is caught by the
    # token itself.
    with pytest.raises(Pkcs11KeyError, match="wrong PIN"):
        Pkcs11Signer(softhsm.uri("spare-ec", SPARE_TOKEN, pin="9999"))
    with Pkcs11Signer(softhsm.uri("spare-ec", SPARE_TOKEN)) as third:
        verify(public, S.ECDSA_SECP256R1_SHA256, third.sign(S.ECDSA_SECP256R1_SHA256, DATA))


def _sign_in_child(uri: str, inherited: Pkcs11Signer, queue: multiprocessing.Queue[str]) -> None:
    try:
        inherited.sign(S.ECDSA_SECP256R1_SHA256, DATA)
        queue.put("inherited signer signed")
    except Pkcs11SigningError as exc:
        queue.put(f"inherited: {exc}")
    try:
        with Pkcs11Signer(uri) as own:
            queue.put(own.sign(S.ECDSA_SECP256R1_SHA256, DATA).hex())
    except Exception as exc:  # reported to the parent
        queue.put(f"own: {type(exc).__name__}: {exc}")


def test_forked_worker_makes_its_own_signer(
    softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    parent_signer = certified["api-ec"].signer
    assert isinstance(parent_signer, Pkcs11Signer)
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(
        target=_sign_in_child, args=(softhsm.uri("api-ec"), parent_signer, queue)
    )
    child.start()
    inherited, own = queue.get(timeout=30), queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert inherited.startswith("inherited: PKCS#11 signer used in a forked process"), inherited
    verify(softhsm.certs["api-ec"].public_key(), S.ECDSA_SECP256R1_SHA256, bytes.fromhex(own))
    # The parent's signer still works.
    parent_signer.sign(S.ECDSA_SECP256R1_SHA256, DATA)


RACE_ROUNDS, RACE_WORKERS = 25, 3  # 75 loads, about eight of them failed without the lock


def _load_at_once(uri: str, barrier: Any, queue: multiprocessing.Queue[str]) -> None:
    try:
        barrier.wait(30)
        with Pkcs11Signer(uri) as signer:
            signer.sign(S.ECDSA_SECP256R1_SHA256, DATA)
        queue.put("ok")
    except Exception as exc:  # reported to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def test_workers_loading_the_key_at_once_all_get_it(softhsm: SoftHsm) -> None:
    """Workers forked together each log in to the token (a reload starts a whole generation at
    once). SoftHSM2 rewrites the token file at each login; without the host-wide token lock,
    about one load in ten of a pair found no token or got CKR_GENERAL_ERROR."""
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    answers = []
    for _ in range(RACE_ROUNDS):
        barrier = context.Barrier(RACE_WORKERS)
        children = [
            context.Process(target=_load_at_once, args=(softhsm.uri("api-ec"), barrier, queue))
            for _ in range(RACE_WORKERS)
        ]
        for child in children:
            child.start()
        answers += [queue.get(timeout=30) for _ in children]
        for child in children:
            child.join(30)
    assert answers == ["ok"] * (RACE_ROUNDS * RACE_WORKERS)


# ----- TLS 1.3 handshakes with token-held keys --------------------------------------------


class Recording:
    """Wraps a signer and records the schemes the engine asked for."""

    def __init__(self, inner: CertifiedKey) -> None:
        self.inner = inner.signer
        self.used: list[SignatureScheme] = []

    def public_key(self) -> CertificatePublicKeyTypes:
        return self.inner.public_key()

    def schemes(self) -> tuple[SignatureScheme, ...]:
        return self.inner.schemes()

    def sign(self, scheme: SignatureScheme, data: bytes) -> bytes:
        self.used.append(scheme)
        return self.inner.sign(scheme, data)


@pytest.mark.parametrize(
    ("label", "scheme"),
    [
        ("api-ec", S.ECDSA_SECP256R1_SHA256),
        ("api-rsa", S.RSA_PSS_RSAE_SHA256),
        ("api-p384", S.ECDSA_SECP384R1_SHA384),
        ("api-ed", S.ED25519),
    ],
)
def test_tls13_handshake_with_a_token_key(
    label: str, scheme: SignatureScheme, softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    recording = Recording(certified[label])
    server_key = CertifiedKey(chain=certified[label].chain, signer=recording)
    name = f"{label}.example"
    client, server, client_events, server_events = connected_pair(
        ServerConfig(certificates=(server_key,)),
        ClientConfig(trust_roots=(softhsm.ca.cert,)),
        server_name=name,
    )
    assert client.is_established and server.is_established, (client_events, server_events)
    assert recording.used == [scheme] and scheme in TLS13_SCHEMES
    client.send_data(b"ping")
    got = pump(client, server)[1]
    assert [e for e in got if isinstance(e, ev.ApplicationData)] == [ev.ApplicationData(b"ping")]


@pytest.mark.parametrize(
    ("label", "scheme"),
    [
        ("api-rsa", S.RSA_PKCS1_SHA256),
        ("api-rsa", S.RSA_PKCS1_SHA384),
        ("api-rsa", S.RSA_PKCS1_SHA512),
        ("api-rsa", S.RSA_PSS_RSAE_SHA256),
        ("api-ec", S.ECDSA_SECP256R1_SHA256),
    ],
)
def test_tls12_handshake_with_a_token_key(
    label: str, scheme: SignatureScheme, softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    """TLS 1.2 ECDHE_RSA / ECDHE_ECDSA: PKCS#1 v1.5 where the client asks only for it."""
    recording = Recording(certified[label])
    server_key = CertifiedKey(chain=certified[label].chain, signer=recording)
    client, server, client_events, server_events = connected_pair(
        ServerConfig(certificates=(server_key,)),
        ClientConfig(
            trust_roots=(softhsm.ca.cert,),
            max_version=ProtocolVersion.TLS12,
            signature_schemes=(scheme,),
        ),
        server_name=f"{label}.example",
    )
    assert client.is_established and server.is_established, (client_events, server_events)
    done = [e for e in client_events if isinstance(e, ev.HandshakeComplete)]
    assert done and done[0].version == ProtocolVersion.TLS12
    assert recording.used == [scheme]
    server.send_data(b"pong")
    got = pump(client, server)[0]
    assert [e for e in got if isinstance(e, ev.ApplicationData)] == [ev.ApplicationData(b"pong")]


def test_tls13_client_rejects_a_token_key_with_the_wrong_certificate(
    softhsm: SoftHsm, certified: dict[str, CertifiedKey]
) -> None:
    """Control for the handshake test: the client does check the token's signature."""
    ec_signer = certified["api-ec"].signer
    spare_cert: x509.Certificate = softhsm.certs["spare-ec"]
    mismatched = CertifiedKey(chain=(spare_cert, softhsm.ca.cert), signer=ec_signer)
    client, server, client_events, _ = connected_pair(
        ServerConfig(certificates=(mismatched,)),
        ClientConfig(trust_roots=(softhsm.ca.cert,)),
        server_name="spare-ec.example",
    )
    assert not client.is_established
    assert any(isinstance(e, ev.ConnectionFailed) for e in client_events)


def test_dropped_signer_releases_its_session_and_login(softhsm: SoftHsm) -> None:
    def spare_logins() -> int:
        return sum(login.users for key, login in pkcs11_signer._logins.items() if key[0] == MODULE)

    before = spare_logins()
    signer = Pkcs11Signer(softhsm.uri("spare-ec", SPARE_TOKEN))
    assert spare_logins() == before + 1
    del signer
    gc.collect()
    assert spare_logins() == before
