"""The ticket-key file shared by the workers of a node: separate processes agree on keys,
rotation keeps the previous key for one period, and older keys are gone from the file."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

from outwork.keys.ticket_keys import FileTicketKeys
from outwork.tls.tickets import SessionState, open_ticket, seal_ticket

PERIOD = 100.0
START = 1_000_000.0 * PERIOD + 5


def _state(now: float) -> SessionState:
    return SessionState(0x0304, 0x1301, bytes(32), int(now * 1000), 100_000, 7, True, "", "x")


def _seal_in_another_process(path: str, now: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(seal_ticket(FileTicketKeys(path, PERIOD), _state(now), now))


def test_a_ticket_sealed_by_one_worker_opens_in_another(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    worker = multiprocessing.get_context("fork").Process(
        target=_seal_in_another_process, args=(str(path), START, queue)
    )
    worker.start()
    ticket = queue.get(timeout=20)
    worker.join(timeout=20)
    assert open_ticket(FileTicketKeys(path, PERIOD), ticket, START + 1) == _state(START)


def test_rotation_keeps_one_previous_key_and_forgets_older(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    first, second = FileTicketKeys(path, PERIOD), FileTicketKeys(path, PERIOD)
    ticket = seal_ticket(first, _state(START), START)
    assert open_ticket(second, ticket, START + PERIOD) is not None  # previous period: accepted
    # Two periods later the key is gone, for both workers and from the file itself.
    seal_ticket(first, _state(START + 2 * PERIOD), START + 2 * PERIOD)
    assert open_ticket(second, ticket, START + 2 * PERIOD) is None
    periods = [entry["period"] for entry in json.loads(path.read_text())["keys"]]
    first_period = int(START // PERIOD)
    assert periods == [first_period + 1, first_period + 2]  # the ticket's key is not there


def test_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    FileTicketKeys(path, PERIOD).encryption_key(START)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_workers_agree_on_the_current_key(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    keys = [FileTicketKeys(path, PERIOD) for _ in range(3)]
    assert len({k.encryption_key(START) for k in keys}) == 1
    assert len({k.encryption_key(START + PERIOD) for k in keys}) == 1


def test_an_incident_drops_every_key_made_before_it_in_every_worker(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    first, second = FileTicketKeys(path, PERIOD), FileTicketKeys(path, PERIOD)
    before = seal_ticket(first, _state(START), START)
    assert open_ticket(second, before, START + 1) is not None
    incident = START + 2
    # Each worker is told the same time; the first rewrites the file, the second keeps its key.
    first.drop_before(incident, START + 3)
    second.drop_before(incident, START + 4)
    assert open_ticket(first, before, START + 5) is None
    assert open_ticket(second, before, START + 5) is None
    assert first.encryption_key(START + 5) == second.encryption_key(START + 5)
    after = seal_ticket(second, _state(START + 5), START + 5)
    assert open_ticket(first, after, START + 6) == _state(START + 5)
    entries = json.loads(path.read_text())["keys"]
    assert len(entries) == 1 and entries[0]["created"] >= incident
    # A restarted worker reads the file: the old ticket stays refused.
    assert open_ticket(FileTicketKeys(path, PERIOD), before, START + 7) is None
