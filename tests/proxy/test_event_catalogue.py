"""The catalogue of security events (`outwork.observe.security_events.EVENTS`, what
`ban.weights` may name) and the README agree."""

from __future__ import annotations

import re

from outwork.config.schema import BAN_WEIGHTS, INSTANT_BAN
from outwork.observe.security_events import EVENTS
from tests.conftest import ROOT


def test_every_event_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_]+\.[a-z0-9_]+)`", readme))
    named = {e for e in EVENTS if not e.startswith("policy.")}
    assert named - documented == set()


def test_the_default_weights_name_real_events() -> None:
    assert set(BAN_WEIGHTS) - EVENTS == set()
    assert INSTANT_BAN <= EVENTS and not INSTANT_BAN & set(BAN_WEIGHTS)
