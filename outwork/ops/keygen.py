"""`outwork keys generate`: a new private key in a file (PKCS#8 PEM, 0600, optionally encrypted)
or inside a PKCS#11 token (private, sensitive, never extractable)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from outwork.keys.file_signer import SigningKey
from outwork.ops import OpsError
from outwork.ops.files import PRIVATE, refuse_existing, write_file

if TYPE_CHECKING:
    from outwork.keys.uri import Pkcs11Uri

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")
_CURVES: dict[str, ec.EllipticCurve] = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1()}
_CURVE_OIDS = {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}
ED25519_OID = "1.3.101.112"


@dataclass(frozen=True)
class GeneratedKey:
    location: str  # the file, or the URI without its PIN
    key_type: str
    public_key: CertificatePublicKeyTypes

    def fingerprint(self) -> str:
        """SHA-256 of the SubjectPublicKeyInfo: what `openssl pkey -pubout | sha256sum` shows."""
        spki = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()


def new_private_key(key_type: str) -> SigningKey:
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type.startswith("rsa-") and key_type in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise OpsError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")


def private_key_pem(key: SigningKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def generate_file(
    key_type: str, path: Path, passphrase: bytes | None = None, overwrite: bool = False
) -> GeneratedKey:
    refuse_existing(path, overwrite)
    key = new_private_key(key_type)
    write_file(path, private_key_pem(key, passphrase), PRIVATE, overwrite)
    return GeneratedKey(str(path), key_type, key.public_key())


def generate_on_token(key_type: str, uri_text: str, module: str | None = None) -> GeneratedKey:
    """Generate the pair inside the token the URI names, labelled with its `object=`; then load
    it as the gateway will (Pkcs11Signer: attributes checked, a test signature verified)."""
    from outwork.keys.pkcs11_signer import Pkcs11KeyError, module_path
    from outwork.keys.token_lock import token_lock
    from outwork.keys.uri import parse_pkcs11_uri

    if key_type not in KEY_TYPES:
        raise OpsError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")
    try:
        uri = parse_pkcs11_uri(uri_text)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    where = uri.display()
    if uri.object is None:
        raise OpsError(f"{where}: name the new key with 'object=' (its label on the token)")
    if uri.type not in (None, "private"):
        raise OpsError(f"{where}: 'type={uri.type}': a generated key is a private key")
    try:
        locked = token_lock(module_path(uri, module))
    except (Pkcs11KeyError, ValueError) as exc:
        raise OpsError(str(exc)) from None
    with locked:  # no other process logs in to the token while the key is written
        return _generate_on_token(key_type, uri, module)


def _generate_on_token(key_type: str, uri: Pkcs11Uri, module: str | None) -> GeneratedKey:
    from pkcs11 import exceptions as p11_errors
    from pkcs11.constants import Attribute

    from outwork.keys.pkcs11_signer import Pkcs11KeyError, Pkcs11Signer, open_token

    where = uri.display()
    assert uri.object is not None
    try:
        token, pin = open_token(uri, module)
    except (Pkcs11KeyError, ValueError) as exc:
        raise OpsError(str(exc)) from None
    try:
        session = token.open(rw=True, user_pin=pin)
    except (p11_errors.PinIncorrect, p11_errors.PinLenRange, p11_errors.PinInvalid):
        raise OpsError(f"{where}: wrong PIN for token {token.label!r}") from None
    except p11_errors.PKCS11Error as exc:
        raise OpsError(f"{where}: cannot log in to token {token.label!r}: {exc!r}") from None
    with session:  # closing logs out
        taken: dict[Any, Any] = {Attribute.LABEL: uri.object}
        if any(True for _ in session.get_objects(taken)):
            raise OpsError(
                f"{where}: token {token.label!r} already has an object labelled"
                f" {uri.object!r}; keys on a token are never replaced, choose another object="
            )
        if uri.id is not None and any(True for _ in session.get_objects({Attribute.ID: uri.id})):
            # The signer pairs a private key with its public half by CKA_ID: keep it unique.
            raise OpsError(f"{where}: token {token.label!r} already has an object with this id=")
        key_id = uri.id if uri.id is not None else secrets.token_bytes(8)
        try:
            _generate_pair(session, key_type, uri.object, key_id)
        except p11_errors.PKCS11Error as exc:
            raise OpsError(f"{where}: the token did not generate the key: {exc!r}") from None
    # Load it back the way `serve` will: refuses a key that could leave the token, and proves
    # with a test signature that the private key and the public key object belong together.
    try:
        with Pkcs11Signer(uri, module=module) as signer:
            public = signer.public_key()
    except (Pkcs11KeyError, ValueError) as exc:
        raise OpsError(f"{where}: generated, but cannot be used: {exc}") from None
    return GeneratedKey(where, key_type, public)


def _generate_pair(session: Any, key_type: str, label: str, key_id: bytes) -> None:
    from pkcs11.constants import Attribute
    from pkcs11.mechanisms import KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    private = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,  # its value never leaves in clear
        Attribute.EXTRACTABLE: False,  # nor wrapped
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    public = {Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.ENCRYPT: False}
    options = {
        "store": True,
        "label": label,
        "id": key_id,
        "public_template": public,
        "private_template": private,
    }
    if key_type.startswith("rsa-"):
        session.generate_keypair(KeyType.RSA, int(key_type[4:]), **options)
        return
    if key_type == "ed25519":
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
            local=True,
        )
        params.generate_keypair(mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, **options)
        return
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVE_OIDS[key_type])},
        local=True,
    )
    params.generate_keypair(mechanism=Mechanism.EC_KEY_PAIR_GEN, **options)
