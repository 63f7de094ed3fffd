"""The `outwork incident` commands: the plan and the progress shown with rich, exit statuses.

Exit status: 0 done (or nothing to do); 1 an incident is already open (`start`), none is open
(`resume`, `install`, `close`), or a step failed (recorded: `resume` goes on from it); 2 a
refusal before anything changed (bad option, unknown listener, unreadable config).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from outwork.cli_options import CONFIG_OPTION, PID_FILE_OPTION, admin_option
from outwork.ops import OpsError

# rich and msgspec are imported by the commands that use them: `outwork serve` must not wait.
if TYPE_CHECKING:
    from rich.console import Console

    from outwork.ops.incident_state import IncidentState, Step

# By step status (outwork.ops.incident_state).
STYLE = {"done": "green", "failed": "bold red", "running": "yellow", "waiting": "cyan"}
MARK = {"done": "✓", "failed": "✗", "waiting": "…"}

ADMIN_OPTION = admin_option()


def _refused(exc: Exception) -> NoReturn:
    click.echo(f"outwork: {exc}", err=True)
    sys.exit(2)


def _stop(message: str) -> NoReturn:
    click.echo(f"outwork: {message}", err=True)
    sys.exit(1)


def _state_path(config_path: str) -> Path:
    from outwork.config.load import incident_files
    from outwork.ops.inventory import config_spec

    spec = config_spec(Path(config_path))
    return Path(incident_files(Path(config_path), spec.incident)[0])


def _open_elsewhere(state: IncidentState, path: Path) -> str:
    return (
        f"incident {state.id} is open (since {state.started}: {state.reason.splitlines()[0]});"
        f" see `outwork incident status`, `resume` it or `close` it ({path})"
    )


def _console() -> Console:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _print_plan(console: Console, state: IncidentState, path: Path) -> None:
    from rich.table import Table

    console.print(f"[bold]Incident {state.id}[/]: {state.reason}")
    console.print(f"incident time {state.at}: credentials issued before it are refused")
    console.print(f"state file {path}; advisory {state.advisory}")
    table = Table(title="plan")
    for column in ("#", "step", "status"):
        table.add_column(column)
    for number, step in enumerate(state.steps, 1):
        table.add_row(str(number), step.title, step.detail or step.status)
    console.print(table)
    for plan in state.certificates:
        if plan.action != "renew":  # the advisory lists it too
            console.print(f"[yellow]to renew by hand[/] {plan.label}: {plan.why}")


def _run(console: Console, path: Path, state: IncidentState) -> None:
    """Run the steps left with a progress display; exit 1 when one fails."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from outwork.ops.incident import Incident, waiting

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("incident", total=len(state.left()))

        def ended(step: Step) -> None:
            style = STYLE.get(step.status, "")
            mark = MARK.get(step.status, "?")
            progress.console.print(f"[{style}]{mark}[/] {step.title}: {step.detail}")
            progress.advance(task)

        failed = Incident(path, state, ended).run(
            lambda step: progress.update(task, description=step.title)
        )
    if failed is not None:
        _stop(
            f"step {failed.id} failed: {failed.detail}; the state is kept:"
            " `outwork incident resume` goes on from this step"
        )
    for step in waiting(state):
        console.print(f"[cyan]pending[/] {step.title}: {step.detail}")
    console.print(f"advisory: {state.advisory}")


@click.group()
def incident() -> None:
    """Incident response at the gateway: new keys and certificates, old sessions and
    credentials refused, an advisory, a scan of the backends."""


@incident.command()
@CONFIG_OPTION
@click.option("--reason", required=True, help="What happened (goes into the advisory).")
@click.option(
    "--listener",
    "listeners",
    multiple=True,
    metavar="NAME",
    help="An affected listener (repeat; default: every TLS listener).",
)
@click.option(
    "--ca",
    "ca_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Issue the certificates at once with this internal CA (else `incident install`).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option(
    "--advisory", type=click.Path(dir_okay=False), default=None, help="Where the advisory goes."
)
@click.option("--at", "at_text", default=None, metavar="RFC3339", help="Incident time (now).")
@ADMIN_OPTION
@PID_FILE_OPTION
def start(
    config_path: str,
    reason: str,
    listeners: tuple[str, ...],
    ca_dir: str | None,
    dry_run: bool,
    advisory: str | None,
    at_text: str | None,
    admin: str | None,
    pid_file: str | None,
) -> None:
    """Print the plan, then run it step by step (see README "Incident response")."""
    from outwork.ops.incident import is_open
    from outwork.ops.incident_plan import make_plan
    from outwork.ops.incident_state import archive, load_state, locked, save_state
    from outwork.ops.revocation import parse_rfc3339

    console = _console()
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        at = parse_rfc3339(at_text) if at_text else now
        path = _state_path(config_path)
        existing = load_state(path)
        if is_open(existing):
            assert existing is not None
            _stop(_open_elsewhere(existing, path))
        pids = Path(pid_file) if pid_file else Path(config_path).with_suffix(".pid")
        state = make_plan(
            Path(config_path),
            reason,
            listeners,
            Path(ca_dir) if ca_dir else None,
            at,
            Path(advisory) if advisory else None,
            admin,
            pids,
            now,
        )
    except OpsError as exc:
        _refused(exc)
    _print_plan(console, state, path)
    if dry_run:
        console.print("dry run: nothing changed")
        return
    try:
        with locked(path):
            existing = load_state(path)  # again, under the lock
            if is_open(existing):
                assert existing is not None
                _stop(_open_elsewhere(existing, path))
            if existing is not None:
                archive(path, existing)
            save_state(path, state)
            _run(console, path, state)
    except OpsError as exc:
        _refused(exc)


def _open_state(config_path: str) -> tuple[Path, IncidentState]:
    from outwork.ops.incident_state import load_state

    path = _state_path(config_path)
    state = load_state(path)
    if state is None or state.status != "open":
        _stop(f"no open incident in {path}")
    return path, state


@incident.command()
@CONFIG_OPTION
@ADMIN_OPTION
def resume(config_path: str, admin: str | None) -> None:
    """Go on with an open incident from its first step not done (after a crash or a fix)."""
    from outwork.ops.incident_state import locked

    console = _console()
    try:
        path = _state_path(config_path)
        with locked(path):
            path, state = _open_state(config_path)
            if admin is not None:
                state.admin = admin
            _run(console, path, state)
    except OpsError as exc:
        _refused(exc)


@incident.command("install")
@CONFIG_OPTION
@click.argument("certs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@ADMIN_OPTION
def install_later(config_path: str, certs: tuple[str, ...], admin: str | None) -> None:
    """Install certificate chains issued for the incident's new keys (those --ca did not
    issue): each CERT goes where its new key is (matched by public key); a CERT that matches
    none is refused before anything is installed."""
    from outwork.ops.incident import Incident
    from outwork.ops.incident_state import locked

    try:
        path = _state_path(config_path)
        with locked(path):
            path, state = _open_state(config_path)
            if admin is not None:
                state.admin = admin
            incident_run = Incident(path, state)
            for plan, cert in incident_run.match_chains([Path(c) for c in certs]):
                step = incident_run.install_later(plan, cert)
                if step.status != "done":
                    _stop(f"step {step.id} failed: {step.detail}")
                click.echo(f"{step.title}: {step.detail}")
    except OpsError as exc:
        _refused(exc)


@incident.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="The state file's JSON on stdout.")
def status(config_path: str, as_json: bool) -> None:
    """What the incident has done and what is pending."""
    import msgspec

    from outwork.ops.incident_state import load_state

    try:
        path = _state_path(config_path)
        state = load_state(path)
    except OpsError as exc:
        _refused(exc)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(state)).decode())
        return
    if state is None:
        click.echo(f"no incident recorded ({path})")
        return
    from rich.table import Table

    console = _console()
    closed = f", closed {state.closed}" if state.closed else ""
    console.print(f"[bold]Incident {state.id}[/]: {state.status} (started {state.started}{closed})")
    console.print(f"reason: {state.reason}")
    console.print(f"incident time {state.at}; advisory {state.advisory}")
    table = Table(title="steps")
    for column in ("step", "status", "detail"):
        table.add_column(column, overflow="fold")
    for step in state.steps:
        style = STYLE.get(step.status, "dim")
        table.add_row(step.title, f"[{style}]{step.status}[/]", step.detail)
    console.print(table)
    done = sum(1 for s in state.steps if s.status == "done")
    console.print(f"{done} of {len(state.steps)} steps done")


@incident.command()
@CONFIG_OPTION
def close(config_path: str) -> None:
    """End the open incident (a new one can then start); its state file is kept."""
    from outwork.ops.incident import Incident
    from outwork.ops.incident_state import locked

    try:
        path = _state_path(config_path)
        with locked(path):
            path, state = _open_state(config_path)
            Incident(path, state).close()
    except OpsError as exc:
        _refused(exc)
    click.echo(f"incident {state.id} closed")


incident.add_command(close, "resolve")
