"""The `outwork` command."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from outwork import __version__
from outwork.policy.config import GatewayConfig
from outwork.policy.load import load_config
from outwork.policy.source import ConfigError

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The gateway's YAML config file.",
)
PID_FILE_OPTION = click.option(
    "--pid-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where `serve` writes its process id and `reload` reads it"
    " (default: the config file's name with .pid, next to it).",
)


def _pid_file(config_path: str, pid_file: str | None) -> Path:
    return Path(pid_file) if pid_file else Path(config_path).with_suffix(".pid")


def _load(config_path: str, refused: str | None = None) -> GatewayConfig:
    """The config, its warnings printed; or each problem with its line and exit 1."""
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
@CONFIG_OPTION
@PID_FILE_OPTION
def serve(config_path: str, pid_file: str | None) -> None:
    """Run the gateway until SIGTERM or SIGINT; SIGHUP reloads the config."""
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
def reload(config_path: str, pid_file: str | None) -> None:
    """Check the config, then ask the running gateway (its pid file) to reload it."""
    _load(config_path, "outwork: not reloaded: the config has errors")
    pid_path = _pid_file(config_path, pid_file)
    try:
        pid = int(pid_path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        click.echo(f"outwork: cannot signal the gateway ({pid_path}): {exc}", err=True)
        sys.exit(1)
    click.echo(f"reload requested (pid {pid})")


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
