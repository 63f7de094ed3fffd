"""A real SoftHSM2 for the PKCS#11 tests: tokens in a temporary folder, keys generated inside the
tokens (sensitive, not extractable), and certificates for them from a test CA.

    softhsm.uri("api-ec")              # pkcs11:token=outwork;object=api-ec?pin-source=file:...
    softhsm.cert_path("api-ec")        # PEM: the leaf for that key, then the CA
    softhsm.certs["api-ec"]            # the leaf as an x509.Certificate

SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and python-pkcs11 loads a module once
per process, so the fixture is per session: it sets SOFTHSM2_CONF for the whole run (and for child
processes) and re-initialises the module after making the tokens.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from tests.conftest import require_file, require_tool
from tests.tls.pki import CertAuthority

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "outwork"
SPARE_TOKEN = "spare"  # never logged in by the signer tests except where a test says so
PIN = "1234"
SO_PIN = "5678"

# label -> (kind, token, id, options)
KEYS: dict[str, tuple[str, str, bytes, dict[str, bool]]] = {
    "api-ec": ("ecdsa-p256", TOKEN, b"\x01", {}),
    "api-rsa": ("rsa-2048", TOKEN, b"\x02", {}),
    "api-p384": ("ecdsa-p384", TOKEN, b"\x03", {}),
    "api-ed": ("ed25519", TOKEN, b"\x04", {}),
    # Its public key object is deleted: the certificate must supply the public key.
    "nopub-ec": ("ecdsa-p256", TOKEN, b"\x05", {"drop_public": True}),
    "spare-ec": ("ecdsa-p256", SPARE_TOKEN, b"\x01", {}),
    # Generated on the token but exportable: the signer must refuse it by default.
    "loose-ec": ("ecdsa-p256", SPARE_TOKEN, b"\x02", {"extractable": True}),
}

_CURVES = {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1"}
_CRYPTO_CURVES: dict[str, ec.EllipticCurve] = {
    "ecdsa-p256": ec.SECP256R1(),
    "ecdsa-p384": ec.SECP384R1(),
}


@dataclass
class SoftHsm:
    folder: Path
    conf: Path
    pin_file: Path
    ca: CertAuthority
    module: str = MODULE
    certs: dict[str, x509.Certificate] = field(default_factory=dict)

    def uri(self, label: str, token: str = TOKEN, pin: str | None = None, extra: str = "") -> str:
        query = f"pin-value={pin}" if pin is not None else f"pin-source=file:{self.pin_file}"
        return f"pkcs11:token={token};object={label}{extra}?{query}&module-path={self.module}"

    def cert_path(self, label: str) -> Path:
        path = self.folder / f"{label}.pem"
        if not path.exists():
            pem = self.certs[label].public_bytes(serialization.Encoding.PEM)
            path.write_bytes(pem + self.ca.cert.public_bytes(serialization.Encoding.PEM))
        return path


def _public_key(kind: str, public: Any) -> CertificatePublicKeyTypes:
    """The public key from the token's public key object, decoded here independently of the
    signer's own code."""
    if kind == "rsa-2048":
        return rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
    point = bytes(public[Attribute.EC_POINT])
    assert point[0] == 0x04 and point[1] == len(point) - 2  # DER OCTET STRING, short length
    if kind == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(point[2:])
    return ec.EllipticCurvePublicKey.from_encoded_point(_CRYPTO_CURVES[kind], point[2:])


def _generate(session: Any, label: str, kind: str, key_id: bytes, extractable: bool) -> Any:
    """Generate a key pair inside the token; returns the public key object."""
    private_template = {
        Attribute.SENSITIVE: not extractable,
        Attribute.EXTRACTABLE: extractable,
        Attribute.SIGN: True,
    }
    if kind == "rsa-2048":
        public, _ = session.generate_keypair(
            KeyType.RSA, 2048, store=True, label=label, id=key_id, private_template=private_template
        )
        return public
    if kind == "ed25519":
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
            local=True,
        )
        mechanism = Mechanism.EC_EDWARDS_KEY_PAIR_GEN
    else:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[kind])},
            local=True,
        )
        mechanism = Mechanism.EC_KEY_PAIR_GEN
    public, _ = params.generate_keypair(
        store=True, label=label, id=key_id, private_template=private_template, mechanism=mechanism
    )
    return public


def issue_leaf(ca: CertAuthority, public: CertificatePublicKeyTypes, name: str) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = require_tool("softhsm2-util")
    require_file(MODULE, "softhsm2")
    folder = tmp_path_factory.mktemp("softhsm")
    tokens = folder / "tokens"
    tokens.mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = folder / "pin.txt"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        for label in (TOKEN, SPARE_TOKEN):
            subprocess.run(
                [
                    util,
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--pin",
                    PIN,
                    "--so-pin",
                    SO_PIN,
                ],
                check=True,
                capture_output=True,
            )
        lib = pkcs11.lib(MODULE)
        lib.reinitialize()  # read SOFTHSM2_CONF and the new tokens, whatever ran before
        hsm = SoftHsm(folder=folder, conf=conf, pin_file=pin_file, ca=CertAuthority())
        for token_label in (TOKEN, SPARE_TOKEN):
            token = lib.get_token(token_label=token_label)
            with token.open(rw=True, user_pin=PIN) as session:  # closing logs out
                for label, (kind, where, key_id, options) in KEYS.items():
                    if where != token_label:
                        continue
                    public = _generate(
                        session, label, kind, key_id, options.get("extractable", False)
                    )
                    hsm.certs[label] = issue_leaf(
                        hsm.ca, _public_key(kind, public), f"{label}.example"
                    )
                    if options.get("drop_public"):
                        public.destroy()
                objects = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
                assert len(objects) == sum(1 for k in KEYS.values() if k[1] == token_label)
        yield hsm
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved
