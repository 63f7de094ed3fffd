"""Fuzz target: the incident's edit of a config file (`outwork/ops/revocation.py` over
`outwork/ops/config_edit.py`).

    .venv/bin/python fuzz/fuzz_config_edit.py /tmp/fuzz-edit fuzz/corpus/config_edit

The input, read as UTF-8 (undecodable bytes replaced), is a config file's text. `revoke` must
either refuse it with OpsError (not YAML, a structure where a value goes) or give a text that
is still YAML and says the incident time where `revocation.not_before` is read; then a second
edit of that text changes nothing more (the edits are idempotent, as `incident resume` needs).
`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from datetime import UTC, datetime

from outwork.ops import OpsError
from outwork.ops.config_edit import compose, get, scalar
from outwork.ops.revocation import revoke

INCIDENT = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (the name atheris and libFuzzer use)
    text = data.decode("utf-8", "replace")
    try:
        edited, _ = revoke(text, INCIDENT)
    except OpsError:
        return
    root = compose(edited)  # still YAML: an OpsError here is a crash of the harness
    assert scalar(get(get(root, "revocation"), "not_before")) == "2026-12-06T22:00:00Z"
    again, _ = revoke(edited, INCIDENT)
    assert again == edited


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
