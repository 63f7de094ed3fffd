"""What a config file is (its hash) and what changed between two of them, for the reload audit.

A summary is taken from the parsed YAML, before any check, so that a refused reload can say
what it would have changed too. It keeps digests, not values: the audit line names the
top-level keys, policies and routes added, removed or changed, never a setting's value (which
may be a secret's location or a key's path nobody asked to log).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# What the audit line lists per kind; a change touching more is cut, with the total.
MAX_NAMES = 50


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    digest: str  # "sha256:HEX" of the file's bytes
    parsed: bool = False  # the YAML was read (else only the digest is known)
    keys: dict[str, str] = field(default_factory=dict)  # top-level key -> digest of its value
    policies: dict[str, str] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # route name -> digest


def file_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _route_names(routes: list[Any]) -> list[str]:
    """A name per route: its `name`, else its upstream's (as metrics name it), made unique by
    `#2`, `#3` for the unnamed routes that share an upstream; `routes[i]` for a broken entry."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, route in enumerate(routes):
        name = None
        if isinstance(route, dict):
            name = route.get("name") or route.get("upstream")
        base = name if isinstance(name, str) else f"routes[{i}]"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def summarize(digest: str, data: Any) -> ConfigSummary:
    """The summary of a parsed config (any YAML value: a broken file is summarized too)."""
    if not isinstance(data, dict):
        return ConfigSummary(digest, parsed=True)
    keys = {str(k): _digest(v) for k, v in data.items()}
    policies: dict[str, str] = {}
    if isinstance(data.get("policies"), dict):
        policies = {str(k): _digest(v) for k, v in data["policies"].items()}
    routes: dict[str, str] = {}
    if isinstance(data.get("routes"), list):
        routes = dict(zip(_route_names(data["routes"]), map(_digest, data["routes"]), strict=True))
    return ConfigSummary(digest, True, keys, policies, routes)


def _compare(old: dict[str, str], new: dict[str, str]) -> dict[str, Any]:
    found = {
        "added": sorted(k for k in new if k not in old),
        "removed": sorted(k for k in old if k not in new),
        "changed": sorted(k for k in new if k in old and old[k] != new[k]),
    }
    result: dict[str, Any] = {}
    for what, names in found.items():
        result[what] = names[:MAX_NAMES]
        if len(names) > MAX_NAMES:
            result[f"{what}_total"] = len(names)
    return result


def changes(old: ConfigSummary | None, new: ConfigSummary | None) -> dict[str, Any] | None:
    """`{"keys"|"policies"|"routes": {"added", "removed", "changed": [names]}}`, or None when
    either file could not be read as YAML."""
    if old is None or new is None or not old.parsed or not new.parsed:
        return None
    return {
        "keys": _compare(old.keys, new.keys),
        "policies": _compare(old.policies, new.policies),
        "routes": _compare(old.routes, new.routes),
    }
