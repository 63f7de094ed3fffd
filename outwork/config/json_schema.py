"""`outwork schema`: the whole config as a JSON Schema (draft 2020-12), made from the msgspec
schemas themselves (outwork/config/schema.py), with each policy described by the steps
registered at the time (outwork/filters): a key added to either appears here by itself."""

from __future__ import annotations

from typing import Any

import msgspec

import outwork.filters.steps  # noqa: F401  (registers every policy step)
from outwork.config.schema import ConfigSpec
from outwork.config.values import schema_hook
from outwork.filters import REGISTRY

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{name}"


def policy_struct() -> type[msgspec.Struct]:
    """A policy as a Struct: one optional key per registered step, nothing else."""
    fields = [
        (name, msgspec.UnsetType | step.schema, msgspec.UNSET) for name, step in REGISTRY.items()
    ]
    return msgspec.defstruct("Policy", fields, forbid_unknown_fields=True, kw_only=True)


def config_schema() -> dict[str, Any]:
    (root, policy), defs = msgspec.json.schema_components(
        [ConfigSpec, policy_struct()], schema_hook=schema_hook, ref_template=_REF
    )
    # ConfigSpec keeps a policy's steps open (`dict[str, Any]`): the loader checks each one
    # with its registered schema, which is what the schema says here.
    policies = defs["ConfigSpec"]["properties"]["policies"]
    policies["additionalProperties"] = policy
    policies["description"] = "named policies: {name: {step: {...}}}; routes name them"
    return {
        "$schema": DIALECT,
        "title": "outwork gateway config",
        **root,
        "$defs": defs,
    }
