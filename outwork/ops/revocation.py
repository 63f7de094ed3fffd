"""An incident's credential revocation, written into the config file (the authenticate step
enforces it; see README "Security policy"):

- `revocation.not_before`: the incident time. JWTs issued before it (`iat`), API keys created
  before it (`created`, or none) are refused from the next config load on;
- every API key created before it (or without `created`) gets `revoked: true`, so it stays
  refused even if `not_before` is moved later;
- every basic-auth user gets `must_change_password: true`.

Only the `policies:` section is searched for `api_key: {keys: [...]}` and `basic: {users: [...]}`
(wherever a policy puts them). Edits are targeted (`config_edit`): the rest of the file stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import yaml

from outwork.ops import OpsError
from outwork.ops.config_edit import Edits, compose, get, is_null, scalar, yaml_quoted

_TRUE = frozenset({"true", "True", "TRUE"})


@dataclass
class Revoked:
    """What an incident's edit revoked (for the state file and the advisory)."""

    api_keys: list[str] = field(default_factory=list)  # key ids (never the hashes)
    users: list[str] = field(default_factory=list)  # basic-auth user names


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """A time with its offset (`2026-12-06T22:00:00Z`); OpsError otherwise."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in text.upper():
        raise OpsError(f"{text!r} is not an RFC 3339 time (e.g. 2026-12-06T22:00:00Z)")
    return when.astimezone(UTC)


def _created_before(entry: yaml.Node, not_before: datetime) -> bool:
    created = scalar(get(entry, "created"))
    if created is None or created == "":
        return True  # the contract: a key without `created` is as old as can be
    try:
        return parse_rfc3339(created) < not_before
    except OpsError:
        return True  # unreadable: the config check reports it; revoking is the safe side


def _entries(node: yaml.Node | None, container: str, items: str) -> list[yaml.Node]:
    """The mappings listed under every `container: {items: [...]}` below `node`."""
    found: list[yaml.Node] = []
    seen: set[int] = set()
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if id(current) in seen:  # an alias names a node twice
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            listed = get(get(current, container), items)
            if isinstance(listed, yaml.SequenceNode):
                found += [e for e in listed.value if isinstance(e, yaml.MappingNode)]
            stack += [v for _, v in current.value]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value
    unique: dict[int, yaml.Node] = {id(e): e for e in found}
    return sorted(unique.values(), key=lambda e: e.start_mark.index)


def revoke(text: str, not_before: datetime) -> tuple[str, Revoked]:
    """`text` with the incident's revocation written in, and what it revoked."""
    root = compose(text)
    if not isinstance(root, yaml.MappingNode) or not root.value:
        raise OpsError("the config file is not a YAML mapping")
    edits = Edits(text)
    stamp = yaml_quoted(rfc3339(not_before))
    section = get(root, "revocation")
    if section is None:
        edits.append(root, "revocation", f"{{not_before: {stamp}}}")
    elif is_null(section):
        edits.replace(section, f"{{not_before: {stamp}}}")
    else:
        edits.set(section, "not_before", stamp)
    revoked = Revoked()
    policies = get(root, "policies")
    for key in _entries(policies, "api_key", "keys"):
        if scalar(get(key, "revoked")) in _TRUE or not _created_before(key, not_before):
            continue
        edits.set(key, "revoked", "true")
        revoked.api_keys.append(scalar(get(key, "id")) or f"line {key.start_mark.line + 1}")
    for user in _entries(policies, "basic", "users"):
        name = scalar(get(user, "name")) or f"line {user.start_mark.line + 1}"
        if scalar(get(user, "must_change_password")) not in _TRUE:
            edits.set(user, "must_change_password", "true")
        revoked.users.append(name)
    text = edits.result()
    # The edits follow the layout of the file; one they cannot follow (explicit `?` keys, odd
    # indentation) must not go unnoticed: the result is read back before anything uses it.
    written = scalar(get(get(compose(text), "revocation"), "not_before"))
    if written != rfc3339(not_before):
        raise OpsError("cannot write revocation.not_before into this file's layout: set it by hand")
    return text, revoked
