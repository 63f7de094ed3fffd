"""The `outwork` command."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from outwork import __version__
from outwork.cli_options import CONFIG_OPTION, PID_FILE_OPTION, admin_option

# The config modules (cryptography, msgspec, the TLS engine) are imported when a command runs:
# `serve` first sets its start-up signal handlers, which must not wait for ~200 ms of imports.
if TYPE_CHECKING:
    from outwork.config.config import GatewayConfig


def _pid_file(config_path: str, pid_file: str | None) -> Path:
    return Path(pid_file) if pid_file else Path(config_path).with_suffix(".pid")


def _load(config_path: str, refused: str | None = None) -> GatewayConfig:
    """The config, its warnings printed; or each problem with its line and exit 1."""
    from outwork.config.load import load_config
    from outwork.config.source import ConfigError

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem.format(), err=True)
        if refused:
            click.echo(refused, err=True)
        sys.exit(1)
    # Settings that are accepted but weaken security: on stderr, every time the config is read.
    for warning in config.warnings:
        click.secho(warning, err=True, fg="yellow", bold=True)
    return config


@click.group()
@click.version_option(__version__, prog_name="outwork")
def main() -> None:
    """outwork: a security-first API gateway."""


@main.command()
@CONFIG_OPTION
def check(config_path: str) -> None:
    """Validate a config file: print `ok`, or each problem with its line; exit 1 on problems."""
    _load(config_path)
    click.echo("ok")


@main.command()
def schema() -> None:
    """Print the config's JSON Schema (draft 2020-12), policy steps included, for editors and
    CI; `check` remains the full check (files, keys, cross-references)."""
    import json

    from outwork.config.json_schema import config_schema

    click.echo(json.dumps(config_schema(), indent=2))


@main.command()
@CONFIG_OPTION
@PID_FILE_OPTION
def serve(config_path: str, pid_file: str | None) -> None:
    """Run the gateway until SIGTERM or SIGINT; SIGHUP reloads the config."""
    from outwork.proxy import startup_signals

    startup_signals.hold()  # first: a SIGHUP while the config loads must not kill us
    config = _load(config_path)
    pid_path: Path | None = _pid_file(config_path, pid_file)
    assert pid_path is not None
    try:
        pid_path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        click.echo(f"outwork: cannot write the pid file {pid_path}: {exc}", err=True)
        pid_path = None
    try:
        if config.workers > 1:
            from outwork.proxy.workers import supervise

            sys.exit(supervise(config))
        from outwork.proxy.server import run

        run(config)
    finally:
        # Only the process that wrote it removes it (a worker leaves through os._exit).
        if pid_path is not None:
            try:
                if pid_path.read_text().strip() == str(os.getpid()):
                    pid_path.unlink()
            except OSError:
                pass


@main.command()
@CONFIG_OPTION
@PID_FILE_OPTION
@click.option(
    "--timeout",
    type=click.FloatRange(0, 600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the gateway's verdict (0: do not wait).",
)
@admin_option(
    "admin_address",
    "The running gateway's admin listener, asked for the verdict (default: admin.bind of"
    " the config, unless its port is 0).",
)
def reload(
    config_path: str, pid_file: str | None, timeout: float, admin_address: str | None
) -> None:
    """Check the config, then ask the running gateway (its pid file) to reload it, and say
    whether it applied or refused it: from the admin listener's GET /reload, else from its
    audit line when logging.security_events is a file. Exit 1 when the config has errors or
    the gateway refused it."""
    from outwork.proxy import reload_audit

    config = _load(config_path, "outwork: not reloaded: the config has errors")
    digest = config.summary.digest if config.summary is not None else ""
    admin = admin_address
    if admin is None and config.admin is not None and config.admin.port != 0:
        admin = str(config.admin)
    # What the gateway says before the signal: the verdict to wait for is a later one.
    before = reload_audit.admin_status(admin) if admin and timeout else None
    sink = config.security_events
    offset = reload_audit.sink_size(sink) if reload_audit.readable_back(sink) else 0
    pid_path = _pid_file(config_path, pid_file)
    try:
        pid = int(pid_path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        click.echo(f"outwork: cannot signal the gateway ({pid_path}): {exc}", err=True)
        sys.exit(1)
    click.echo(f"reload requested (pid {pid})")
    if timeout == 0 or not digest:
        return
    if admin is not None and before is not None:
        outcome = reload_audit.wait_for_admin(admin, before.get("last"), digest, timeout)
        where = f"http://{admin}/reload"
    elif reload_audit.readable_back(sink):
        outcome = reload_audit.wait_for_outcome(sink, offset, digest, timeout)
        where = sink
    else:
        return  # no admin listener to ask, no audit file to read: see the gateway's log
    if outcome is None:
        click.echo(f"outwork: no verdict from the gateway within {timeout:g}s ({where})", err=True)
        sys.exit(1)
    event, detail = outcome
    if event == reload_audit.APPLIED:
        click.echo(f"reload applied: {digest}")
        return
    click.echo(f"outwork: reload refused: {detail.get('reason')}", err=True)
    for problem in detail.get("problems", []):
        click.echo(str(problem), err=True)
    sys.exit(1)


# ----- keys, certificates and the internal CA (outwork.ops) ------------------------------

import typing  # noqa: E402  (kept with the commands it serves: cli.py is edited by others too)


def _ops_refused(exc: Exception) -> typing.NoReturn:
    """A refusal of the operator commands: one line on stderr, exit 2, nothing written."""
    click.echo(f"outwork: {exc}", err=True)
    sys.exit(2)


def _passphrase(reference: str | None) -> bytes | None:
    from outwork.keys.secret import SecretError, parse_secret_ref, read_secret

    if reference is None:
        return None
    try:
        return read_secret(parse_secret_ref(reference))
    except SecretError as exc:
        _ops_refused(exc)


PASSPHRASE_OPTION = click.option(
    "--passphrase",
    metavar="env:NAME|file:PATH",
    default=None,
    help="Where the key file's passphrase is (the same reference the config takes).",
)
FORCE_OPTION = click.option("--force", is_flag=True, help="Replace an existing --out file.")


@main.group()
def keys() -> None:
    """Private keys: in a file or inside a PKCS#11 token."""


@keys.command("generate")
@click.option(
    "--type",
    "key_type",
    required=True,
    type=click.Choice(["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]),
)
@click.option("--out", required=True, metavar="FILE|pkcs11:URI", help="Where the key goes.")
@PASSPHRASE_OPTION
@FORCE_OPTION
def keys_generate(key_type: str, out: str, passphrase: str | None, force: bool) -> None:
    """Generate a key: a PKCS#8 PEM file (0600), or on the token a pkcs11: URI names
    (object= is its label; private, sensitive, never extractable)."""
    from outwork.ops import OpsError
    from outwork.ops.keygen import generate_file, generate_on_token

    try:
        if out.startswith("pkcs11:"):
            if passphrase is not None or force:
                raise OpsError(
                    "--passphrase and --force are for key files; a token key has a PIN and"
                    " is never replaced"
                )
            generated = generate_on_token(key_type, out)
        else:
            generated = generate_file(key_type, Path(out), _passphrase(passphrase), force)
    except OpsError as exc:
        _ops_refused(exc)
    click.echo(f"{generated.key_type} key: {generated.location}")
    click.echo(f"public key sha256: {generated.fingerprint()}")


@main.group()
def certs() -> None:
    """Certificate signing requests and the certificates a config uses."""


@certs.command("csr")
@click.option("--key", required=True, metavar="FILE|pkcs11:URI", help="The key to certify.")
@click.option(
    "--name",
    "names",
    required=True,
    multiple=True,
    metavar="DNS_OR_IP",
    help="A name for the certificate (repeat): a DNS name (*. allowed) or an IP address.",
)
@click.option("--subject", default=None, metavar="DN", help="RFC 4514, e.g. 'CN=api,O=Example'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The PEM CSR.")
@PASSPHRASE_OPTION
@FORCE_OPTION
def certs_csr(
    key: str,
    names: tuple[str, ...],
    subject: str | None,
    out: str,
    passphrase: str | None,
    force: bool,
) -> None:
    """Write a CSR for KEY with the names as SANs, signed where the key lives (the token signs
    for a pkcs11: key)."""
    from outwork.ops import OpsError
    from outwork.ops.csr import make_csr

    try:
        csr = make_csr(key, names, subject, Path(out), _passphrase(passphrase), force)
    except OpsError as exc:
        _ops_refused(exc)
    click.echo(f"CSR for {csr.subject.rfc4514_string() or '(empty subject)'}: {out}")


@certs.command("install")
@CONFIG_OPTION
@click.option("--listener", required=True, help="The listener whose certificate is replaced.")
@click.option(
    "--cert", required=True, type=click.Path(dir_okay=False), help="PEM chain, leaf first."
)
@click.option("--key", required=True, metavar="FILE|pkcs11:URI", help="The certificate's key.")
@click.option(
    "--index",
    type=click.IntRange(0, 15),
    default=0,
    show_default=True,
    help="Which of the listener's tls.certificates is replaced (0: the first).",
)
@admin_option("admin_address")
def certs_install(
    config_path: str, listener: str, cert: str, key: str, index: int, admin_address: str | None
) -> None:
    """Check CERT and KEY for LISTENER locally, then install them into the running gateway
    through its admin API: every worker serves them to new connections, connections in flight
    are untouched, and the config file is updated so a restart keeps them."""
    from outwork.ops import OpsError
    from outwork.ops.install import install

    cert = str(Path(cert).resolve())
    if not key.startswith("pkcs11:"):
        key = str(Path(key).resolve())
    try:
        result = install(Path(config_path), listener, cert, key, admin_address, index)
    except OpsError as exc:
        _ops_refused(exc)
    click.echo(
        f"installed on listener {listener} (certificate {index + 1}): serial {result['serial']},"
        f" {result['workers']} worker(s) serving it; {config_path} updated"
    )


@certs.command("list")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout instead of a table.")
def certs_list(config_path: str, as_json: bool) -> None:
    """Every certificate the config uses: names, key location, issuer, days to expiry."""
    import json

    from outwork.ops import OpsError
    from outwork.ops.inventory import certificates_in_use

    try:
        found = certificates_in_use(Path(config_path))
    except OpsError as exc:
        _ops_refused(exc)
    if as_json:
        click.echo(json.dumps([c.as_json() for c in found], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"certificates in {config_path}")
    for column in ("used by", "names", "key", "issuer", "expires", "days left"):
        table.add_column(column, overflow="fold")
    for c in found:
        colour = "red" if c.days_left < 0 else "yellow" if c.days_left < 30 else "green"
        table.add_row(
            f"{c.used_by} {c.name}",
            ", ".join(c.names),
            c.key,
            c.issuer,
            c.not_after[:10],
            f"[{colour}]{c.days_left}[/{colour}]",
        )
    Console().print(table)


@main.group("hash")
def hash_() -> None:
    """Hashes for the config: of an API key (`sha256:`), of a password (argon2id)."""


def _secret_from_stdin(what: str) -> bytes:
    """The secret: typed twice without echo on a terminal, else stdin's first line."""
    if sys.stdin.isatty():
        text = click.prompt(what, hide_input=True, confirmation_prompt=True, err=True)
        secret = str(text).encode()
    else:
        secret = sys.stdin.buffer.readline(64 * 1024 + 1).rstrip(b"\r\n")
    if not secret:
        raise click.UsageError(f"empty {what.lower()}")
    if len(secret) > 64 * 1024:
        raise click.UsageError(f"{what.lower()} longer than 64 KiB")
    return secret


@hash_.command("api-key")
def hash_api_key() -> None:
    """Print the `sha256:HEX` hash of an API key read from stdin (for `keys: [{hash: ...}]`)."""
    from outwork.filters.auth_apikey import key_hash

    click.echo(key_hash(_secret_from_stdin("API key")))


@hash_.command("password")
def hash_password() -> None:
    """Print an argon2id hash of a password read from stdin (for `users: [{hash: ...}]`)."""
    from argon2 import PasswordHasher

    password = _secret_from_stdin("Password")
    try:
        text = password.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError("the password is not UTF-8") from None
    click.echo(PasswordHasher().hash(text))


@main.group()
def ca() -> None:
    """A small internal CA, so the key flow runs offline."""


@ca.command("init")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--type",
    "key_type",
    default="ec-p384",
    show_default=True,
    type=click.Choice(["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]),
)
@click.option("--subject", default=None, metavar="DN", help="Default: CN=outwork internal CA.")
@click.option("--days", default=3650, show_default=True, type=int)
def ca_init(folder: str, key_type: str, subject: str | None, days: int) -> None:
    """Create FOLDER (0700) with the CA key (ca.key, 0600) and certificate (ca.pem)."""
    from outwork.ops import OpsError
    from outwork.ops.ca import init_ca

    try:
        authority = init_ca(Path(folder), key_type, subject, days)
    except OpsError as exc:
        _ops_refused(exc)
    click.echo(f"CA {authority.cert.subject.rfc4514_string()}: {Path(folder) / 'ca.pem'}")


@ca.command("issue")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--csr", "csr_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Leaf + CA, PEM.")
@click.option("--days", default=90, show_default=True, type=int, help="At most 397.")
@FORCE_OPTION
def ca_issue(folder: str, csr_path: str, out: str, days: int, force: bool) -> None:
    """Issue a certificate for a CSR (its signature verified first); write the chain."""
    from outwork.ops import OpsError
    from outwork.ops.ca import issue

    try:
        cert = issue(Path(folder), Path(csr_path), Path(out), days, force)
    except OpsError as exc:
        _ops_refused(exc)
    click.echo(f"issued serial {cert.serial_number:x}, until {cert.not_valid_after_utc}: {out}")


@main.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Scan every upstream target of this gateway config.",
)
@click.argument("targets", nargs=-1)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON report.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML report.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=None,
    help="Targets scanned at once (default: the config's scan.concurrency, else 8).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=None,
    help="Seconds per connection (default: the config's scan.timeout, else 5).",
)
def scan(
    config_path: str | None,
    targets: tuple[str, ...],
    json_path: str | None,
    html_path: str | None,
    concurrency: int | None,
    timeout: float | None,
) -> None:
    """Scan backends for TLS versions, suites, certificates, Heartbleed, CCS injection,
    renegotiation and compression. Exit 0: nothing vulnerable; 1: something is; 2: usage
    error or an unreachable target."""
    from outwork.scan.cli import run_scan

    sys.exit(run_scan(config_path, targets, json_path, html_path, concurrency, timeout))


# ----- incident response (outwork.ops.incident) ------------------------------------------

from outwork.ops.incident_cli import incident  # noqa: E402  (its heavy imports run in commands)

main.add_command(incident)
