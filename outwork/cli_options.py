"""Options shared by the `outwork` commands (cli.py) and the `outwork incident` group
(ops/incident_cli.py): one definition each, so their names and help stay the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

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
ADMIN_HELP = "The running gateway's admin listener (default: admin.bind of the config)."


def admin_option(name: str = "admin", help: str = ADMIN_HELP) -> Callable[[Any], Any]:
    """`--admin HOST:PORT`, passed as `name`."""
    return click.option("--admin", name, default=None, metavar="HOST:PORT", help=help)
