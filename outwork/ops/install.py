"""Installing a certificate chain and key for a listener: the checks, and the config file edit.

Used twice: by `outwork certs install` (locally, before it calls the admin API: nothing changes
when a check fails) and by the admin API's `POST /certificates` in the running gateway, which
checks again (the gateway is the one that will serve it) before it swaps the listener's
certificate set.

The config file is edited, not re-dumped (`config_edit`): the `cert:` and `key:` scalars of one
`tls.certificates` entry of the listener (the first unless an index says which: a listener can
serve an RSA and an ECDSA certificate, or one per SNI name; `index` counts from 0) are replaced
in the text, so comments, order and quoting everywhere else stay byte for byte; the new file is
staged, loaded as a whole config and only then renamed over the config. An upstream's
`tls.client_cert` is edited the same way (the incident renews it; a reload applies it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from outwork.config.config import GatewayConfig
from outwork.ops import OpsError
from outwork.ops.config_edit import (
    Edits,
    Staged,
    compose,
    get,
    read_config,
    scalar,
    stage,
    yaml_quoted,
)
from outwork.tls.config import CertifiedKey
from outwork.tls.signing import verify_signature

# Staging and the edit itself live in config_edit (the incident edits the same file).
Prepared = Staged


def _entry_cert_key(entry: yaml.Node | None, where: str) -> tuple[yaml.Node, yaml.Node]:
    cert, key = get(entry, "cert"), get(entry, "key")
    if not isinstance(cert, yaml.ScalarNode) or not isinstance(key, yaml.ScalarNode):
        raise OpsError(f"{where} has no cert/key values")
    return cert, key


def _certificate_nodes(text: str, listener: str, index: int = 0) -> tuple[yaml.Node, yaml.Node]:
    """The `cert` and `key` value nodes of the listener's certificate at `index`."""
    listeners = get(compose(text), "listeners")
    found = None
    if isinstance(listeners, yaml.SequenceNode):
        for item in listeners.value:
            if scalar(get(item, "name")) == listener:
                found = item
    if found is None:
        raise OpsError(f"unknown listener {listener!r} in the config")
    certificates = get(get(found, "tls"), "certificates")
    if not isinstance(certificates, yaml.SequenceNode) or not certificates.value:
        raise OpsError(f"listener {listener!r} has no TLS certificates to replace")
    if not 0 <= index < len(certificates.value):
        raise OpsError(
            f"listener {listener!r} has {len(certificates.value)} certificate(s): no number"
            f" {index + 1}"
        )
    return _entry_cert_key(
        certificates.value[index], f"listener {listener!r}: its certificate {index + 1}"
    )


def rewrite_certificate(text: str, listener: str, cert: str, key: str, index: int = 0) -> str:
    """`text` with the listener's certificate entry at `index` pointing at `cert` and `key`;
    every other byte unchanged. Values are written as double-quoted scalars with everything but
    printable ASCII escaped, so no path or URI can change the document's structure."""
    return _rewrite(text, _certificate_nodes(text, listener, index), cert, key)


def rewrite_client_certificate(text: str, upstream: str, cert: str, key: str) -> str:
    """`text` with the upstream's `tls.client_cert` pointing at `cert` and `key`."""
    node = get(get(get(get(compose(text), "upstreams"), upstream), "tls"), "client_cert")
    if node is None:
        raise OpsError(f"upstream {upstream!r} has no tls.client_cert to replace")
    where = f"upstream {upstream!r}: its client_cert"
    return _rewrite(text, _entry_cert_key(node, where), cert, key)


def _rewrite(text: str, nodes: tuple[yaml.Node, yaml.Node], cert: str, key: str) -> str:
    edits = Edits(text)
    edits.replace(nodes[0], yaml_quoted(cert))
    edits.replace(nodes[1], yaml_quoted(key))
    return edits.result()


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


def prepare(config_file: Path, listener: str, cert: str, key: str, index: int = 0) -> Prepared:
    """Check everything and stage the new config file; raises OpsError (nothing changed)."""
    text = rewrite_certificate(read_config(config_file), listener, cert, key, index)
    staged = stage(config_file, text)
    try:
        check_certified(certified_of(staged, listener, index))
    except BaseException:
        staged.discard()
        raise
    return staged


def prepare_client_certificate(config_file: Path, upstream: str, cert: str, key: str) -> Prepared:
    """The same for an upstream's client certificate (mTLS to its backends)."""
    text = rewrite_client_certificate(read_config(config_file), upstream, cert, key)
    staged = stage(config_file, text)
    try:
        found = staged.config.upstreams.get(upstream)
        client = found.tls.client.client_certificate if found and found.tls else None
        if client is None:
            raise OpsError(f"upstream {upstream!r} has no client certificate")
        check_certified(client)
    except BaseException:
        staged.discard()
        raise
    return staged


def certified_of(prepared: Prepared, listener: str, index: int = 0) -> CertifiedKey:
    """The certificate and key at `index` of `listener` in the staged config."""
    found = [li for li in prepared.config.listeners if li.name == listener]
    if not found or found[0].tls is None:
        raise OpsError(f"listener {listener!r} has no TLS")
    return found[0].tls.certificates[index]


def install(
    config_file: Path, listener: str, cert: str, key: str, admin: str | None, index: int = 0
) -> dict[str, Any]:
    """`outwork certs install`: check locally (nothing changes when a check fails), then have
    the running gateway check, write the config and serve it (the admin API); its answer."""
    prepared = prepare(config_file, listener, cert, key, index)
    prepared.discard()  # checked only: the gateway writes the file
    return install_remote(prepared.config, admin, listener, cert, key, index)


ADMIN_CALL_TIMEOUT = 30.0  # seconds for the admin API to check, install and confirm


def install_remote(
    config: GatewayConfig,
    address: str | None,
    listener: str,
    cert: str,
    key: str,
    index: int = 0,
) -> dict[str, Any]:
    """POST the installation to the running gateway's admin API; its JSON answer."""
    payload: dict[str, Any] = {"listener": listener, "cert": cert, "key": key, "index": index}
    return admin_post(config, address, "/certificates", payload)


def admin_post(
    config: GatewayConfig, address: str | None, path: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """POST a change to the running gateway's admin API (`address`, else `admin.bind`) with
    the token of `admin.token`; its JSON answer, or OpsError with one line."""
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
    body = json.dumps(payload).encode()
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=ADMIN_CALL_TIMEOUT)
    try:
        connection.request(
            "POST",
            path,
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
