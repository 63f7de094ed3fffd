"""Signer for a private key held in a PKCS#11 token (an HSM; SoftHSM2 in development and tests).

The key never enters this process: the token signs, this module only hashes, asks and re-encodes
the answer in the TLS wire format (ECDSA as a DER `ECDSA-Sig-Value`, RSA and Ed25519 as raw
bytes). A key is named by an RFC 7512 URI (`outwork.keys.uri`), for example

    pkcs11:token=outwork;object=api-2026;type=private?pin-source=file:/etc/outwork/pin

Everything that can be wrong is found when the signer is made, not at the first handshake: the
module, the token, the PIN, the key, its attributes, the mechanisms the token offers, and - by a
test signature per scheme checked against the public key - that the key, its public half and the
certificate belong together.

Mechanisms, first choice then fallback when the token does not list the first:

    ECDSA            CKM_ECDSA over a digest made here     | CKM_ECDSA_SHA256/384/512
    RSA-PSS          CKM_RSA_PKCS_PSS over a digest        | CKM_SHA256/384/512_RSA_PKCS_PSS
    RSA PKCS#1 v1.5  CKM_RSA_PKCS over DigestInfo(digest)  | CKM_SHA256/384/512_RSA_PKCS
    Ed25519          CKM_EDDSA (pure Ed25519, no parameters)

PSS always uses MGF1 with the signature hash and a salt as long as the hash (RFC 8446 4.2.3).

Login. PKCS#11 login state belongs to the application, not to a session: once one session is
logged in, every session of the process on that token is, and a second C_Login answers
CKR_USER_ALREADY_LOGGED_IN without looking at the PIN. So signers on the same token share one
logged-in session here (opened by the first, closed with a logout by the last), each signer has its
own session for signing, and the PIN of a later signer is checked against the one that logged in
(kept only as a salted scrypt hash).

Processes. A PKCS#11 module must be initialised again in a forked child, and sessions do not cross
a fork: make signers in each worker after the fork. A signer used in another process than the one
that made it raises `Pkcs11SigningError`; the first signer made in a child re-initialises the
module. Opening a token (module, token, login, key, test signatures) holds a host-wide lock
(`token_lock.py`): SoftHSM2 rewrites the token file at each login, and another process reading
it at that moment finds no token.

Threads. `sign` holds a per-signer lock around the token call, so a signer may be shared by
threads; it blocks for as long as the token takes (SoftHSM2: about a millisecond for RSA-2048).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import exceptions as p11_errors
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.mechanisms import MGF, KeyType, Mechanism
from pkcs11.types import Object, PrivateKey, Session, SignMixin, Token

from outwork.config.files import MAX_PEM_FILE, FileTooLarge, read_bounded
from outwork.keys.token_lock import token_lock
from outwork.keys.uri import Pkcs11Uri, parse_pkcs11_uri
from outwork.tls.config import CertifiedKey
from outwork.tls.enums import SignatureScheme
from outwork.tls.signing import RSA_SCHEMES, scheme_hash

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Module

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MAX_PIN_FILE = 1024  # bytes; a PIN file is a few characters

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class Pkcs11KeyError(ValueError):
    """The key cannot be used: module, token, PIN, key or certificate. Raised at load time."""


class Pkcs11SigningError(RuntimeError):
    """The token refused or failed a signature after the key was loaded (device gone, session
    closed, signer used after close or in a forked child)."""


# ----- schemes and mechanisms -------------------------------------------------------------

# DER-encoded CKA_EC_PARAMS (a namedCurve OID) -> curve and its one TLS scheme.
_EC_CURVES: dict[bytes, tuple[ec.EllipticCurve, SignatureScheme]] = {
    bytes.fromhex("06082a8648ce3d030107"): (
        ec.SECP256R1(),
        SignatureScheme.ECDSA_SECP256R1_SHA256,
    ),
    bytes.fromhex("06052b81040022"): (ec.SECP384R1(), SignatureScheme.ECDSA_SECP384R1_SHA384),
    bytes.fromhex("06052b81040023"): (ec.SECP521R1(), SignatureScheme.ECDSA_SECP521R1_SHA512),
}
# Ed25519 in CKA_EC_PARAMS: the RFC 8410 OID, or the PrintableString PKCS#11 2.40 used.
_ED25519_PARAMS = frozenset({bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519"})

_HASH_MECHANISM = {
    "sha256": Mechanism.SHA256,
    "sha384": Mechanism.SHA384,
    "sha512": Mechanism.SHA512,
}
_MGF = {"sha256": MGF.SHA256, "sha384": MGF.SHA384, "sha512": MGF.SHA512}
_ECDSA_HASHING = {
    "sha256": Mechanism.ECDSA_SHA256,
    "sha384": Mechanism.ECDSA_SHA384,
    "sha512": Mechanism.ECDSA_SHA512,
}
_PSS_HASHING = {
    "sha256": Mechanism.SHA256_RSA_PKCS_PSS,
    "sha384": Mechanism.SHA384_RSA_PKCS_PSS,
    "sha512": Mechanism.SHA512_RSA_PKCS_PSS,
}
_PKCS1_HASHING = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
# RFC 8017 9.2 note 1: the DER DigestInfo header that precedes the digest.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

# Refusals that mean "this key or token does not do this mechanism": the scheme is left out.
_MECHANISM_REFUSED: tuple[type[Exception], ...] = (
    p11_errors.MechanismInvalid,
    p11_errors.MechanismParamInvalid,
    p11_errors.KeyTypeInconsistent,
    p11_errors.FunctionNotSupported,
)


@dataclass(frozen=True)
class _Plan:
    """How one signature scheme is done on this token."""

    mechanism: Mechanism
    param: tuple[Any, ...] | None = None
    digest: hashes.HashAlgorithm | None = None  # hash here first, the token signs the digest
    prefix: bytes = b""  # prepended to the digest (DigestInfo for raw PKCS#1)
    ecdsa_size: int = 0  # > 0: the token answers r||s of this many bytes each; re-encode as DER

    def payload(self, data: bytes) -> bytes:
        if self.digest is None:
            return data
        h = hashes.Hash(self.digest)
        h.update(data)
        return self.prefix + h.finalize()

    def encode(self, raw: bytes) -> bytes:
        if not self.ecdsa_size:
            return raw
        if len(raw) != 2 * self.ecdsa_size:
            raise Pkcs11SigningError(
                f"token returned an ECDSA signature of {len(raw)} bytes, "
                f"expected {2 * self.ecdsa_size}"
            )
        r = int.from_bytes(raw[: self.ecdsa_size], "big")
        s = int.from_bytes(raw[self.ecdsa_size :], "big")
        return encode_dss_signature(r, s)


def _candidates(scheme: SignatureScheme, curve: ec.EllipticCurve | None) -> list[_Plan]:
    """Ways to make `scheme`, preferred first."""
    if scheme == SignatureScheme.ED25519:
        return [_Plan(Mechanism.EDDSA)]
    digest = scheme_hash(scheme)
    name = digest.name
    if curve is not None:
        size = (curve.key_size + 7) // 8
        return [
            _Plan(Mechanism.ECDSA, digest=digest, ecdsa_size=size),
            _Plan(_ECDSA_HASHING[name], ecdsa_size=size),
        ]
    if scheme.name.startswith("RSA_PSS"):
        param = (_HASH_MECHANISM[name], _MGF[name], digest.digest_size)
        return [
            _Plan(Mechanism.RSA_PKCS_PSS, param=param, digest=digest),
            _Plan(_PSS_HASHING[name], param=param),
        ]
    return [
        _Plan(Mechanism.RSA_PKCS, digest=digest, prefix=_DIGEST_INFO[name]),
        _Plan(_PKCS1_HASHING[name]),
    ]


def _choose(
    scheme: SignatureScheme, curve: ec.EllipticCurve | None, mechanisms: set[Mechanism]
) -> _Plan | None:
    """The preferred way to make `scheme` with the mechanisms the token lists."""
    return next((p for p in _candidates(scheme, curve) if p.mechanism in mechanisms), None)


def _verify(public_key: PublicKey, scheme: SignatureScheme, data: bytes, signature: bytes) -> bool:
    """Check one signature with `cryptography` (the load-time self test)."""
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(scheme_hash(scheme)))
        elif scheme.name.startswith("RSA_PSS"):
            digest = scheme_hash(scheme)
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            public_key.verify(signature, data, pss, digest)
        else:
            public_key.verify(signature, data, padding.PKCS1v15(), scheme_hash(scheme))
    except InvalidSignature:
        return False
    return True


# ----- the module and the login, shared by the signers of one process ---------------------


@dataclass
class _Login:
    anchor: Session  # the session that logged in; closing it logs the token out
    salt: bytes
    pin_hash: bytes
    users: int


_registry_lock = threading.RLock()  # re-entrant: a finalizer may run inside it
_logins: dict[tuple[str, int], _Login] = {}
_module_pid: dict[str, int] = {}  # module path -> process that initialised it


def _pin_hash(pin: str, salt: bytes) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


def _open_module(path: str) -> Pkcs11Module:
    """Load and initialise the PKCS#11 module (once per process; again after a fork)."""
    with _registry_lock:
        pid = os.getpid()
        try:
            lib = pkcs11.lib(path)
            if _module_pid.setdefault(path, pid) != pid:
                # Forked: the parent's sessions and logins are not ours.
                for key in [k for k in _logins if k[0] == path]:
                    del _logins[key]
                lib.reinitialize()
                _module_pid[path] = pid
        except (p11_errors.PKCS11Error, RuntimeError, OSError) as exc:
            raise Pkcs11KeyError(f"cannot load PKCS#11 module {path}: {_describe(exc)}") from exc
        return lib


def _acquire_login(module: str, token: Token, pin: str, label: str) -> tuple[str, int]:
    key = (module, token.slot.slot_id)
    with _registry_lock:
        login = _logins.get(key)
        if login is not None:
            if not hmac.compare_digest(_pin_hash(pin, login.salt), login.pin_hash):
                raise Pkcs11KeyError(f"wrong PIN for token {label!r}")
            login.users += 1
            return key
        try:
            anchor = token.open(user_pin=pin)
        except (p11_errors.PinIncorrect, p11_errors.PinLenRange, p11_errors.PinInvalid) as exc:
            raise Pkcs11KeyError(f"wrong PIN for token {label!r}") from exc
        except p11_errors.PinLocked as exc:
            raise Pkcs11KeyError(f"the user PIN of token {label!r} is locked") from exc
        except p11_errors.PinExpired as exc:
            raise Pkcs11KeyError(f"the user PIN of token {label!r} has expired") from exc
        except p11_errors.UserPinNotInitialized as exc:
            raise Pkcs11KeyError(f"token {label!r} has no user PIN set") from exc
        except (p11_errors.UserAlreadyLoggedIn, p11_errors.AnotherUserAlreadyLoggedIn) as exc:
            raise Pkcs11KeyError(
                f"token {label!r} is already logged in by other code in this process, "
                "so the PIN cannot be checked; load every key of the token through this module"
            ) from exc
        except p11_errors.PKCS11Error as exc:
            raise Pkcs11KeyError(f"cannot log in to token {label!r}: {_describe(exc)}") from exc
        salt = secrets.token_bytes(16)
        _logins[key] = _Login(anchor, salt, _pin_hash(pin, salt), 1)
        return key


def _release_login(key: tuple[str, int]) -> None:
    with _registry_lock:
        login = _logins.get(key)
        if login is None:
            return
        login.users -= 1
        if login.users == 0:
            del _logins[key]
            try:
                login.anchor.close()  # C_Logout, then C_CloseSession
            except p11_errors.PKCS11Error:
                pass  # the device is gone or was reset: nothing left to log out of


# ----- the signer -------------------------------------------------------------------------


class Pkcs11Signer:
    """Signs with a private key that stays inside a PKCS#11 token.

    `uri` names the token and key (see the module docstring); the PKCS#11 library is the URI's
    `module-path`, else `module`, else SoftHSM2's. `public_key`, when given (the certificate's),
    must be the key's public half; without it the token's public key object is used (or, for
    RSA, the private key's public attributes).
    """

    def __init__(
        self,
        uri: str | Pkcs11Uri,
        module: str | None = None,
        public_key: CertificatePublicKeyTypes | None = None,
        *,
        allow_extractable: bool = False,
    ) -> None:
        self._uri = uri if isinstance(uri, Pkcs11Uri) else parse_pkcs11_uri(uri)
        self._lock = threading.Lock()
        self._closed = True
        self._pid = os.getpid()
        u = self._uri
        if u.type not in (None, "private"):
            raise Pkcs11KeyError(f"{u.display()}: names a {u.type} object, not a private key")
        if u.object is None and u.id is None:
            raise Pkcs11KeyError(f"{u.display()}: name the key with 'object=' or 'id='")
        self._module = _module_path(u, module)
        pin = _read_pin(u)
        with token_lock(self._module):  # another process's login must not run meanwhile
            self._open(pin, public_key, allow_extractable)
        self._closed = False

    def _open(
        self, pin: str, public_key: CertificatePublicKeyTypes | None, allow_extractable: bool
    ) -> None:
        u = self._uri
        lib = _open_module(self._module)
        token = _find_token(lib, u, self._module)
        self._token_label = token.label
        self._login = _acquire_login(self._module, token, pin, token.label)
        del pin
        try:
            self._session = token.open()  # logged in through the shared login
        except p11_errors.PKCS11Error as exc:
            _release_login(self._login)
            raise Pkcs11KeyError(f"{u.display()}: cannot open a session: {_describe(exc)}") from exc
        # Closes the session and releases the login when close() is called, or when the signer
        # is dropped without it (a reload that forgets to close must not leak token sessions).
        self._finalizer = weakref.finalize(
            self, _close_session, self._session, self._login, self._pid
        )
        try:
            self._setup(token, public_key, allow_extractable)
        except BaseException:
            self._finalizer()
            raise

    # -- loading --

    def _setup(
        self,
        token: Token,
        expected: CertificatePublicKeyTypes | None,
        allow_extractable: bool,
    ) -> None:
        where = self._uri.display()
        try:
            key = self._find_private_key()
            _check_key_attributes(key, where, allow_extractable)
            key_type = key.key_type
            curve: ec.EllipticCurve | None = None
            if key_type == KeyType.RSA:
                bits = len(_bytes_attr(key, Attribute.MODULUS).lstrip(b"\0")) * 8
                if bits < 2048:
                    raise Pkcs11KeyError(f"{where}: RSA key of {bits} bits is too small")
                schemes: tuple[SignatureScheme, ...] = RSA_SCHEMES
            elif key_type == KeyType.EC:
                params = _bytes_attr(key, Attribute.EC_PARAMS)
                if params not in _EC_CURVES:
                    raise Pkcs11KeyError(f"{where}: unsupported EC curve (params {params.hex()})")
                curve, scheme = _EC_CURVES[params]
                schemes = (scheme,)
            elif key_type == KeyType.EC_EDWARDS:
                if _bytes_attr(key, Attribute.EC_PARAMS) not in _ED25519_PARAMS:
                    raise Pkcs11KeyError(f"{where}: unsupported Edwards curve (only Ed25519)")
                schemes = (SignatureScheme.ED25519,)
            else:
                raise Pkcs11KeyError(f"{where}: unsupported key type {key_type!r}")
            public = self._public_key(key, key_type, expected)
            mechanisms = token.slot.get_mechanisms()
        except p11_errors.PKCS11Error as exc:
            raise Pkcs11KeyError(f"{where}: {_describe(exc)}") from exc
        self._key = key
        self._public = public
        self._plans = self._self_test(schemes, curve, mechanisms, public)
        self._schemes = tuple(s for s in schemes if s in self._plans)

    def _find_private_key(self) -> SignMixin:
        u = self._uri
        template: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if u.object is not None:
            template[Attribute.LABEL] = u.object
        if u.id is not None:
            template[Attribute.ID] = u.id
        found = list(self._session.get_objects(template))
        if not found:
            labels = sorted(
                str(o[Attribute.LABEL])
                for o in self._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            )
            raise Pkcs11KeyError(
                f"{u.display()}: no such private key on token {self._token_label!r}"
                f" (private keys there: {', '.join(map(repr, labels[:10])) or 'none'})"
            )
        if len(found) > 1:
            raise Pkcs11KeyError(
                f"{u.display()}: {len(found)} private keys match; add 'id=' to choose one"
            )
        key = found[0]
        if not isinstance(key, PrivateKey) or not isinstance(key, SignMixin):
            raise Pkcs11KeyError(f"{u.display()}: the object found is not a signing key")
        return key

    def _public_key(
        self, key: SignMixin, key_type: KeyType, expected: CertificatePublicKeyTypes | None
    ) -> PublicKey:
        where = self._uri.display()
        on_token = self._token_public_key(key, key_type)
        if expected is not None:
            if not isinstance(
                expected,
                (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey),
            ):
                raise Pkcs11KeyError(f"unsupported certificate key type {type(expected).__name__}")
            if on_token is not None and _spki(on_token) != _spki(expected):
                raise Pkcs11KeyError(
                    f"{where}: the certificate's public key is not the token's public key"
                )
            return expected  # and the self test proves the private key matches it
        if on_token is None:
            raise Pkcs11KeyError(
                f"{where}: no public key object for this key on the token; give the certificate"
            )
        return on_token

    def _token_public_key(self, key: SignMixin, key_type: KeyType) -> PublicKey | None:
        """The public key from the token: the matching public key object (same CKA_ID, else
        same label), else for RSA the private key's public attributes."""
        template: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PUBLIC_KEY}
        key_id = _bytes_attr(key, Attribute.ID)
        if key_id:
            template[Attribute.ID] = key_id
        else:
            template[Attribute.LABEL] = key[Attribute.LABEL]
        candidates = list(self._session.get_objects(template))
        source: Object | None = candidates[0] if len(candidates) == 1 else None
        if key_type == KeyType.RSA:
            holder: Object = source if source is not None else key
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(_bytes_attr(holder, Attribute.PUBLIC_EXPONENT), "big"),
                int.from_bytes(_bytes_attr(holder, Attribute.MODULUS), "big"),
            )
            return numbers.public_key()
        if source is None:
            return None
        params = _bytes_attr(source, Attribute.EC_PARAMS)
        point = _unwrap_octet_string(_bytes_attr(source, Attribute.EC_POINT))
        try:
            if key_type == KeyType.EC_EDWARDS:
                return ed25519.Ed25519PublicKey.from_public_bytes(point)
            if params not in _EC_CURVES:
                return None
            return ec.EllipticCurvePublicKey.from_encoded_point(_EC_CURVES[params][0], point)
        except ValueError as exc:
            raise Pkcs11KeyError(f"{self._uri.display()}: unreadable public key: {exc}") from exc

    def _self_test(
        self,
        schemes: Iterable[SignatureScheme],
        curve: ec.EllipticCurve | None,
        mechanisms: set[Mechanism],
        public: PublicKey,
    ) -> dict[SignatureScheme, _Plan]:
        """Choose a mechanism per scheme and sign a random message with each; keep the schemes
        that work, fail if a signature does not verify with `public`."""
        where = self._uri.display()
        plans: dict[SignatureScheme, _Plan] = {}
        refused: list[str] = []
        for scheme in schemes:
            plan = _choose(scheme, curve, mechanisms)
            if plan is None:
                refused.append(f"{scheme.name} (no mechanism on the token)")
                continue
            message = b"outwork PKCS#11 self test " + secrets.token_bytes(32)
            try:
                signature = plan.encode(self._raw_sign(plan, message))
            except p11_errors.PKCS11Error as exc:
                if _is_refusal(exc):
                    refused.append(f"{scheme.name} ({plan.mechanism.name}: {_describe(exc)})")
                    continue
                raise Pkcs11KeyError(f"{where}: test signature failed: {_describe(exc)}") from exc
            if not _verify(public, scheme, message, signature):
                raise Pkcs11KeyError(
                    f"{where}: a test signature ({scheme.name}) does not verify with the public"
                    " key: the key on the token and the certificate do not belong together"
                )
            plans[scheme] = plan
        if not plans:
            raise Pkcs11KeyError(
                f"{where}: the key cannot sign any TLS scheme: {'; '.join(refused)}"
            )
        return plans

    def _raw_sign(self, plan: _Plan, data: bytes) -> bytes:
        result = self._key.sign(
            plan.payload(data), mechanism=plan.mechanism, mechanism_param=plan.param
        )
        if not isinstance(result, bytes):
            raise Pkcs11SigningError(f"token returned {type(result).__name__}, not bytes")
        return result

    # -- the Signer protocol --

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._public

    def schemes(self) -> tuple[SignatureScheme, ...]:
        return self._schemes

    def sign(self, scheme: SignatureScheme, data: bytes) -> bytes:
        plan = self._plans.get(scheme)
        if plan is None:
            raise ValueError(f"key cannot sign with {scheme.name}")
        if os.getpid() != self._pid:
            raise Pkcs11SigningError(
                "PKCS#11 signer used in a forked process; make signers in each worker"
            )
        with self._lock:
            if self._closed:
                raise Pkcs11SigningError(f"{self._uri.display()}: signer is closed")
            try:
                raw = self._raw_sign(plan, data)
            except p11_errors.PKCS11Error as exc:
                raise Pkcs11SigningError(
                    f"{self._uri.display()}: token refused to sign ({scheme.name}): "
                    f"{_describe(exc)}"
                ) from exc
        return plan.encode(raw)

    # -- lifetime --

    @property
    def uri(self) -> Pkcs11Uri:
        return self._uri

    @property
    def mechanisms(self) -> dict[SignatureScheme, Mechanism]:
        """The mechanism each scheme uses on this token."""
        return {scheme: self._plans[scheme].mechanism for scheme in self._schemes}

    def close(self) -> None:
        """Close this signer's session; the token is logged out when its last signer closes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __enter__(self) -> Pkcs11Signer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ",".join(s.name for s in self._schemes)
        return f"<Pkcs11Signer {self._uri.display()} {state}>"


def _close_session(session: Session, login: tuple[str, int], pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child: the session and the login are the parent's
    try:
        session.close()  # this session did not log in itself: no C_Logout
    except p11_errors.PKCS11Error:
        pass
    _release_login(login)


def load_pkcs11_certified_key(
    cert_path: str | Path, uri: str | Pkcs11Uri, module: str | None = None
) -> CertifiedKey:
    """Load a PEM chain (leaf first) and the token key the URI names; check they belong
    together (the token's public key, and a test signature verified with the certificate)."""
    chain = tuple(x509.load_pem_x509_certificates(read_bounded(cert_path, MAX_PEM_FILE)))
    if not chain:
        raise ValueError(f"{cert_path}: no certificate found")
    try:
        signer = Pkcs11Signer(uri, module=module, public_key=chain[0].public_key())
    except Pkcs11KeyError as exc:
        raise Pkcs11KeyError(f"{exc} (certificate {cert_path})") from exc
    return CertifiedKey(chain=chain, signer=signer)


# ----- helpers ----------------------------------------------------------------------------


def _module_path(uri: Pkcs11Uri, module: str | None) -> str:
    path = uri.module_path or module
    if path is None:
        if uri.module_name is not None:
            raise Pkcs11KeyError(
                f"{uri.display()}: 'module-name' is not supported; give 'module-path'"
            )
        path = DEFAULT_MODULE
    if not os.path.isabs(path):
        raise Pkcs11KeyError(f"PKCS#11 module path must be absolute: {path!r}")
    if not os.path.isfile(path):
        raise Pkcs11KeyError(f"PKCS#11 module not found: {path}")
    return path


def _read_pin(uri: Pkcs11Uri) -> str:
    if uri.pin_value is not None:
        pin = uri.pin_value
    elif uri.pin_source is not None:
        pin = _read_pin_source(uri.pin_source)
    else:
        raise Pkcs11KeyError(
            f"{uri.display()}: no PIN; add '?pin-source=file:/path/to/pin' (or 'pin-value=')"
        )
    if pin == "":
        raise Pkcs11KeyError(f"{uri.display()}: the PIN is empty")
    return pin


def _read_pin_source(source: str) -> str:
    """RFC 7512 pin-source: a `file:` URI (file:/p, file:///p) or an absolute path."""
    if source.startswith("file://"):
        path = source[len("file://") :]
        if not path.startswith("/"):
            raise Pkcs11KeyError(f"pin-source {source!r}: only local files (file:///path)")
    elif source.startswith("file:"):
        path = source[len("file:") :]
    else:
        path = source
    if not path.startswith("/"):
        raise Pkcs11KeyError(f"pin-source {source!r}: expected file:/absolute/path")
    try:
        data = read_bounded(path, MAX_PIN_FILE)
    except OSError as exc:
        raise Pkcs11KeyError(f"cannot read PIN file {path}: {exc.strerror}") from exc
    except FileTooLarge:
        raise Pkcs11KeyError(f"PIN file {path} is larger than {MAX_PIN_FILE} bytes") from None
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise Pkcs11KeyError(f"PIN file {path} is not UTF-8") from None


def _find_token(lib: Pkcs11Module, uri: Pkcs11Uri, module: str) -> Token:
    try:
        tokens: list[Token] = list(lib.get_tokens(token_label=uri.token))
    except p11_errors.PKCS11Error as exc:
        raise Pkcs11KeyError(f"{module}: cannot list tokens: {_describe(exc)}") from exc
    checks: list[tuple[str | int | None, Callable[[Token], str | int]]] = [
        (uri.serial, lambda t: t.serial.decode("ascii", "replace").strip()),
        (uri.manufacturer, lambda t: t.manufacturer_id),
        (uri.model, lambda t: t.model),
        (uri.slot_id, lambda t: t.slot.slot_id),
        (uri.slot_description, lambda t: t.slot.slot_description),
        (uri.slot_manufacturer, lambda t: t.slot.manufacturer_id),
    ]
    matching = [t for t in tokens if all(want is None or get(t) == want for want, get in checks)]
    if not matching:
        try:
            labels = sorted(t.label for t in lib.get_tokens())
        except p11_errors.PKCS11Error:
            labels = []
        raise Pkcs11KeyError(
            f"{uri.display()}: no such token in {module}"
            f" (tokens there: {', '.join(map(repr, labels)) or 'none'})"
        )
    if len(matching) > 1:
        raise Pkcs11KeyError(
            f"{uri.display()}: {len(matching)} tokens match; add 'serial=' to choose one"
        )
    return matching[0]


def _check_key_attributes(key: SignMixin, where: str, allow_extractable: bool) -> None:
    if not key[Attribute.SIGN]:
        raise Pkcs11KeyError(f"{where}: the key is not allowed to sign (CKA_SIGN false)")
    if allow_extractable:
        return
    if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
        raise Pkcs11KeyError(
            f"{where}: the key can leave the token (CKA_EXTRACTABLE true or CKA_SENSITIVE false);"
            " make it non-extractable and sensitive, or pass allow_extractable=True"
        )


def _bytes_attr(obj: Object, attribute: Attribute) -> bytes:
    value = obj[attribute]
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, bytes):
        raise Pkcs11KeyError(f"attribute {attribute.name} is {type(value).__name__}, not bytes")
    return value


def _unwrap_octet_string(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING holding the point; some tokens give the bare point."""
    if len(value) < 2 or value[0] != 0x04:
        return value
    if value[1] < 0x80:
        length, header = value[1], 2
    elif value[1] == 0x81 and len(value) >= 3:
        length, header = value[2], 3
    elif value[1] == 0x82 and len(value) >= 4:
        length, header = int.from_bytes(value[2:4], "big"), 4
    else:
        return value
    return value[header:] if header + length == len(value) else value


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_refusal(exc: Exception) -> bool:
    """The token does not allow this mechanism with this key. python-pkcs11 has no class for
    CKR_KEY_FUNCTION_NOT_PERMITTED (0x68: the key's CKA_ALLOWED_MECHANISMS leaves it out)."""
    return isinstance(exc, _MECHANISM_REFUSED) or str(exc) == "Unmapped error code 0x68"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_token(uri: str | Pkcs11Uri, module: str | None = None) -> tuple[Token, str]:
    """The token a URI names and the PIN its pin-source gives, for tools that work on the token
    itself (`outwork keys generate`) rather than sign with one of its keys. The caller holds
    `token_lock(module_path(uri, module))` while it uses the token."""
    parsed = uri if isinstance(uri, Pkcs11Uri) else parse_pkcs11_uri(uri)
    path = _module_path(parsed, module)
    pin = _read_pin(parsed)
    with token_lock(path):
        return _find_token(_open_module(path), parsed, path), pin


def module_path(uri: str | Pkcs11Uri, module: str | None = None) -> str:
    """The PKCS#11 library a URI's key is used through (its `module-path`, else `module`, else
    SoftHSM2's)."""
    return _module_path(uri if isinstance(uri, Pkcs11Uri) else parse_pkcs11_uri(uri), module)
