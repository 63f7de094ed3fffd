"""Installing a certificate chain and key for a listener: the checks, and the config file edit.

Used twice: by `outwork certs install` (locally, before it calls the admin API: nothing changes
when a check fails) and by the admin API's `POST /certificates` in the running gateway, which
checks again (the gateway is the one that will serve it) before it swaps the listener's
certificate set.

The config file is edited, not re-dumped: the `cert:` and `key:` scalars of the listener's first
`tls.certificates` entry are located with PyYAML's node marks and replaced in the text, so
comments, order and quoting everywhere else stay byte for byte. The new text is written to a
temporary file next to the config (the same directory, so relative paths resolve the same),
loaded and checked as a whole config from there, and only then renamed over the config
(atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from outwork.config.config import GatewayConfig
from outwork.ops import OpsError
from outwork.tls.config import CertifiedKey
from outwork.tls.signing import verify_signature

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config file larger than this is not ours to rewrite


@dataclass
class Prepared:
    """A checked installation, not yet visible: the new config is in `staged`."""

    config_file: Path
    staged: Path
    config: GatewayConfig
    certified: CertifiedKey

    def commit(self) -> None:
        os.replace(self.staged, self.config_file)

    def discard(self) -> None:
        self.staged.unlink(missing_ok=True)


def _scalar_spans(text: str, listener: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character spans of the `cert` and `key` values of the listener's first certificate."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise OpsError(f"the config file is not YAML: {exc}") from None

    def get(node: yaml.Node | None, key: str) -> yaml.Node | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v  # type: ignore[no-any-return]
        return None

    listeners = get(root, "listeners")
    found = None
    if isinstance(listeners, yaml.SequenceNode):
        for item in listeners.value:
            name = get(item, "name")
            if isinstance(name, yaml.ScalarNode) and name.value == listener:
                found = item
    if found is None:
        raise OpsError(f"unknown listener {listener!r} in the config")
    certificates = get(get(found, "tls"), "certificates")
    if not isinstance(certificates, yaml.SequenceNode) or not certificates.value:
        raise OpsError(f"listener {listener!r} has no TLS certificates to replace")
    entry = certificates.value[0]
    cert, key = get(entry, "cert"), get(entry, "key")
    if not isinstance(cert, yaml.ScalarNode) or not isinstance(key, yaml.ScalarNode):
        raise OpsError(f"listener {listener!r}: its first certificate has no cert/key values")
    return (
        (cert.start_mark.index, cert.end_mark.index),
        (key.start_mark.index, key.end_mark.index),
    )


def rewrite_certificate(text: str, listener: str, cert: str, key: str) -> str:
    """`text` with the listener's first certificate entry pointing at `cert` and `key`; every
    other byte unchanged. Values are written as double-quoted scalars with everything but
    printable ASCII escaped, so no path or URI can change the document's structure."""
    cert_span, key_span = _scalar_spans(text, listener)
    edits = sorted([(cert_span, cert), (key_span, key)], reverse=True)  # the later one first
    for (start, end), value in edits:
        text = text[:start] + yaml_quoted(value) + text[end:]
    return text


def yaml_quoted(value: str) -> str:
    """A YAML double-quoted scalar for `value`, ASCII only: every other character escaped (JSON
    would write astral characters as surrogate pairs, which YAML reads as two characters)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def check_certified(certified: CertifiedKey, now: datetime | None = None) -> None:
    """Refuse a chain the gateway must not serve: key not matching (a signature made by the
    signer, where the key lives, verified with the leaf's public key), not valid now, no names,
    or certificates out of order (each one issued by the next)."""
    now = now or datetime.now(UTC)
    leaf = certified.chain[0]
    data = b"outwork certificate install check"
    for scheme in certified.signer.schemes():
        try:
            signature = certified.signer.sign(scheme, data)
        except Exception as exc:  # a token that refuses: the key is not usable
            raise OpsError(f"the key cannot sign: {exc}") from None
        if not verify_signature(leaf.public_key(), scheme, data, signature, tls12=True):
            raise OpsError("the key does not match the certificate")
        break
    else:
        raise OpsError("the key offers no signature scheme")
    for cert in certified.chain:
        subject = cert.subject.rfc4514_string() or "(empty subject)"
        if cert.not_valid_after_utc <= now:
            raise OpsError(f"certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
        if cert.not_valid_before_utc > now:
            raise OpsError(f"certificate {subject} is not valid before {cert.not_valid_before_utc}")
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise OpsError("the certificate names no host (no subjectAltName)") from None
    if not list(names):
        raise OpsError("the certificate names no host (empty subjectAltName)")
    for child, parent in zip(certified.chain, certified.chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, Exception):
            raise OpsError(
                f"broken chain: {child.subject.rfc4514_string()} is not issued by the next"
                f" certificate ({parent.subject.rfc4514_string()})"
            ) from None


def prepare(config_file: Path, listener: str, cert: str, key: str) -> Prepared:
    """Check everything and stage the new config file; raises OpsError (nothing changed)."""
    from outwork.config.load import load_config
    from outwork.config.source import ConfigError

    try:
        with open(config_file, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise OpsError(f"cannot read the config: {exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise OpsError("the config file is too large to rewrite")
    try:
        text = rewrite_certificate(raw.decode("utf-8"), listener, cert, key)
    except UnicodeDecodeError:
        raise OpsError("the config file is not UTF-8") from None
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{config_file.name}.", suffix=".install", dir=config_file.parent
        )
    except OSError as exc:
        raise OpsError(f"cannot write next to the config: {exc}") from None
    staged = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        os.chmod(staged, os.stat(config_file).st_mode & 0o7777)
        try:
            config = load_config(staged)
        except ConfigError as exc:
            first = exc.problems[0]
            raise OpsError(
                f"{first.path}: {first.message}" if first.path else first.message
            ) from None
        found = [li for li in config.listeners if li.name == listener]
        if not found or found[0].tls is None:
            raise OpsError(f"listener {listener!r} has no TLS")
        certified = found[0].tls.certificates[0]
        check_certified(certified)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise OpsError(f"cannot stage the new config: {exc}") from None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return Prepared(config_file, staged, config, certified)


ADMIN_CALL_TIMEOUT = 30.0  # seconds for the admin API to check, install and confirm


def install_remote(
    config: GatewayConfig, address: str | None, listener: str, cert: str, key: str
) -> dict[str, Any]:
    """POST the installation to the running gateway's admin API; its JSON answer."""
    import http.client

    from outwork.keys.secret import SecretError, parse_secret_ref, read_secret

    if address is None:
        if config.admin is None or config.admin.port == 0:
            raise OpsError("no admin listener with a fixed port in the config (or give --admin)")
        address = str(config.admin)
    if config.admin_token_ref is None:
        raise OpsError("no admin.token in the config: the admin API takes no changes")
    try:
        token = read_secret(parse_secret_ref(config.admin_token_ref), Path(config.file).parent)
    except SecretError as exc:
        raise OpsError(f"admin.token: {exc}") from None
    host, _, port = address.rpartition(":")
    body = json.dumps({"listener": listener, "cert": cert, "key": key}).encode()
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=ADMIN_CALL_TIMEOUT)
    try:
        connection.request(
            "POST",
            "/certificates",
            body,
            {"Authorization": f"Bearer {token.decode()}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        text = response.read(64 * 1024).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        raise OpsError(f"admin API at {address} unreachable: {exc}") from None
    finally:
        connection.close()
    if response.status == 401:
        raise OpsError(f"admin API at {address} refused the token (401)")
    if response.status != 200:
        try:
            reason = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            reason = text.strip().splitlines()[0] if text.strip() else ""
        raise OpsError(f"admin API at {address} refused ({response.status}): {reason}")
    return dict(json.loads(text))
