"""An incident's state file: the plan, and what each step did, so that `incident status` can
say what is done and pending, and a crash or a restart resumes where it stopped.

JSON, written atomically with mode 0600 after every step (a reader sees the old or the new file,
never half of one; it names key locations, so only its owner reads it). A run holds a lock on
`<state>.lock` for as long as it changes the state: a second `incident` command waits for
nothing and is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from outwork.ops import OpsError
from outwork.ops.files import PRIVATE, write_file

STATE_VERSION = 2  # 2: every certificate of a listener, upstream client certificates
MAX_STATE_FILE = 4 * 1024 * 1024

PENDING, RUNNING, DONE, FAILED, WAITING = "pending", "running", "done", "failed", "waiting"
OPEN, CLOSED = "open", "closed"


LISTENER, UPSTREAM = "listener", "upstream"
RENEW, BY_HAND = "renew", "by hand"


class CertificatePlan(msgspec.Struct, kw_only=True):
    """One certificate the gateway holds (a listener's, or an upstream's client certificate for
    mTLS) and what replaces it."""

    id: str  # in step ids: the listener's name for its first certificate, else `name#N`
    used_by: str  # LISTENER or UPSTREAM
    name: str  # the listener's or the upstream's name
    index: int = 0  # its place in the listener's `tls.certificates` (0 for an upstream)
    action: str = RENEW  # or BY_HAND: listed in the advisory, nothing made
    why: str = ""  # for BY_HAND: why the gateway cannot replace the key
    names: list[str]  # host names of the current certificate (the new one gets the same)
    subject: str  # RFC 4514 subject of the current leaf ("" when empty)
    issuer: str  # RFC 4514 issuer of the current leaf
    key_type: str  # `keys generate --type` of the new key: the current key's type
    old_key: str  # where the current key is (a path, or the pkcs11: URI without PIN)
    old_cert: str
    old_fingerprint: str  # SHA-256 of the current leaf (DER)
    new_key: str = ""  # where the new key goes: a path, or a pkcs11: URI as the config names it
    new_key_display: str = ""  # the same without PIN
    passphrase: str | None = None  # the entry's passphrase reference: the new file key's too
    csr: str = ""
    cert: str = ""  # the new chain (issued with --ca, else given to `incident install`)
    issue: bool = False  # the --ca issues it (it issued the current one, or is a listener's)
    key_fingerprint: str = ""  # SHA-256 of the new public key (SubjectPublicKeyInfo)
    fingerprint: str = ""  # SHA-256 of the new leaf, once issued
    not_after: str = ""  # its expiry (RFC 3339), once issued

    @property
    def label(self) -> str:
        """How the plan, the progress and the advisory name it."""
        if self.used_by == UPSTREAM:
            return f"upstream {self.name} (client certificate)"
        return self.id if self.index == 0 else f"{self.name} certificate {self.index + 1}"


class Step(msgspec.Struct, kw_only=True):
    id: str  # "key:public", "tickets", ...
    title: str
    status: str = PENDING
    detail: str = ""
    ended: str = ""  # RFC 3339, when it last ended


class IncidentState(msgspec.Struct, kw_only=True):
    version: int = STATE_VERSION
    id: str  # from the start time: 20261206T223000Z
    status: str = OPEN
    reason: str
    at: str  # the incident time (RFC 3339): credentials issued before are refused
    started: str
    closed: str = ""
    config: str
    ca: str | None = None
    admin: str | None = None  # --admin HOST:PORT
    pid_file: str
    advisory: str
    scan_report: str
    certificates: list[CertificatePlan]
    steps: list[Step]
    revoked_api_keys: list[str] = msgspec.field(default_factory=list)
    flagged_users: list[str] = msgspec.field(default_factory=list)
    tickets_listeners: list[str] = msgspec.field(default_factory=list)
    reload: str = ""  # how the gateway was told to re-read its config
    scan_summary: dict[str, int] = msgspec.field(default_factory=dict)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def certificate(self, plan_id: str) -> CertificatePlan:
        for plan in self.certificates:
            if plan.id == plan_id:
                return plan
        raise KeyError(plan_id)

    def renewed(self) -> list[CertificatePlan]:
        return [plan for plan in self.certificates if plan.action == RENEW]

    def left(self) -> list[Step]:
        """Steps a run still has to do (not done, not waiting for `incident install`)."""
        return [s for s in self.steps if s.status not in (DONE, WAITING)]


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_state(path: Path) -> IncidentState | None:
    """The state in `path`, or None when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OpsError(f"{path}: cannot read the incident state: {exc.strerror}") from None
    if len(data) > MAX_STATE_FILE:
        raise OpsError(f"{path}: not an incident state file (too large)")
    try:
        state = msgspec.json.decode(data, type=IncidentState)
    except msgspec.DecodeError as exc:
        raise OpsError(f"{path}: not an incident state file: {exc}") from None
    if state.version != STATE_VERSION:
        raise OpsError(f"{path}: incident state version {state.version}, expected {STATE_VERSION}")
    return state


def save_state(path: Path, state: IncidentState) -> None:
    write_file(path, msgspec.json.format(msgspec.json.encode(state)) + b"\n", PRIVATE, True)


def archive(path: Path, state: IncidentState) -> Path:
    """Move a closed incident's state aside (`<state>.<id>.json`) for a new one."""
    kept = path.with_name(f"{path.stem}.{state.id}{path.suffix}")
    os.replace(path, kept)
    return kept


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `<state>.lock` (0600) while this command changes the state; refused when another
    incident command holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OpsError(f"{lock_path}: cannot lock the incident state: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OpsError(f"another `outwork incident` command is running on {path}") from None
        yield
    finally:
        os.close(fd)
