"""Signals that arrive while `outwork serve` starts, before the gateway's own handlers exist.

Loading a config can take seconds (keys, a PKCS#11 login, trust stores). Left to the default
actions, a SIGHUP in that time (`outwork reload`, a log rotation script, a terminal hang-up)
would kill the process, and a SIGTERM would leave its pid file behind. From the first moment of
`serve`: a SIGHUP is remembered and becomes a reload once the gateway is ready (the file may
have changed after it was read); SIGTERM and SIGINT stop the start cleanly (exit 0, pid file
removed by `serve`).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

_reload_requested = False


def _on_hup(signum: int, frame: FrameType | None) -> None:
    global _reload_requested
    _reload_requested = True


def _on_stop(signum: int, frame: FrameType | None) -> None:
    # Restored first: a second signal while unwinding must not raise again in a `finally`.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(
        f"outwork: {signal.Signals(signum).name} before ready: stopped", file=sys.stderr, flush=True
    )
    raise SystemExit(0)


def hold() -> None:
    """Install the start-up handlers (the gateway replaces them with its own)."""
    signal.signal(signal.SIGHUP, _on_hup)
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)


def take_reload_request() -> bool:
    """Whether a SIGHUP came while starting (once: the flag is cleared)."""
    global _reload_requested
    requested, _reload_requested = _reload_requested, False
    return requested
