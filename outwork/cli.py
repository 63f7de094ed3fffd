"""The `outwork` command."""

from __future__ import annotations

import sys

import click

from outwork import __version__
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


@click.group()
@click.version_option(__version__, prog_name="outwork")
def main() -> None:
    """outwork: a security-first API gateway."""


@main.command()
@CONFIG_OPTION
def check(config_path: str) -> None:
    """Validate a config file: print `ok`, or each problem with its line; exit 1 on problems."""
    try:
        load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem.format(), err=True)
        sys.exit(1)
    click.echo("ok")


@main.command()
@CONFIG_OPTION
def serve(config_path: str) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem.format(), err=True)
        sys.exit(1)
    from outwork.proxy.server import run

    run(config)
