"""`outwork scan`: targets in, progress while it runs, table and reports out, exit status."""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from outwork.scan.report import print_table, render_html, write_json
from outwork.scan.result import TargetResult
from outwork.scan.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    MAX_TARGETS,
    TargetError,
    config_targets,
    dedupe,
    parse_target,
    scan_all,
)

EXIT_OK = 0
EXIT_VULNERABLE = 1
EXIT_USAGE = 2


def _usage(message: str) -> int:
    click.echo(f"outwork scan: {message}", err=True)
    return EXIT_USAGE


def run_scan(
    config_path: str | None,
    arguments: tuple[str, ...],
    json_path: str | None,
    html_path: str | None,
    concurrency: int | None,
    timeout: float | None,
) -> int:
    """Exit status of `outwork scan`; None options come from the config, else the defaults."""
    targets: list[TargetResult] = []
    if config_path is not None:
        from outwork.config.load import load_config
        from outwork.config.source import ConfigError

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem.format(), err=True)
            return _usage(f"cannot use the config {config_path}")
        targets.extend(config_targets(config))
        concurrency = concurrency or config.scan.concurrency
        timeout = timeout or config.scan.timeout
    concurrency = concurrency or DEFAULT_CONCURRENCY
    timeout = timeout or DEFAULT_TIMEOUT
    try:
        targets.extend(parse_target(a) for a in arguments)
    except TargetError as exc:
        return _usage(str(exc))
    targets = dedupe(targets)
    if not targets:
        return _usage("nothing to scan: give -c CONFIG and/or HOST:PORT")
    if len(targets) > MAX_TARGETS:
        return _usage(f"{len(targets)} targets, at most {MAX_TARGETS} per scan")
    for path in (json_path, html_path):
        if path is not None and not Path(path).parent.is_dir():
            return _usage(f"no directory for {path}")

    err = Console(stderr=True)
    if sys.stderr.isatty():
        with Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            console=err,
        ) as progress:
            task = progress.add_task("scan", total=len(targets), last="")

            def done(t: TargetResult) -> None:
                progress.update(task, advance=1, last=f"{t.target}: {t.verdict}")

            asyncio.run(scan_all(targets, concurrency, timeout, done))
    else:

        def done(t: TargetResult) -> None:
            click.echo(f"scanned {t.target}: {t.verdict}", err=True)

        asyncio.run(scan_all(targets, concurrency, timeout, done))

    for t in targets:
        if not t.reachable:  # one clear line each
            click.echo(f"outwork scan: {t.target} unreachable: {t.error}", err=True)
    now = datetime.datetime.now(datetime.UTC)
    print_table(targets, Console(width=None if sys.stdout.isatty() else 160))
    if json_path:
        write_json(targets, Path(json_path), now)
    if html_path:
        Path(html_path).write_text(render_html(targets, now))
    if any(t.verdict == "VULNERABLE" for t in targets):
        return EXIT_VULNERABLE
    if any(not t.reachable for t in targets):
        return EXIT_USAGE
    return EXIT_OK
