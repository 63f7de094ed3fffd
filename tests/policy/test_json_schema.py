"""`outwork schema`: a JSON Schema that the demo config and the README's examples satisfy, a
broken config does not, and that describes policy steps as they are registered."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from outwork.config.json_schema import config_schema
from tests.conftest import ROOT
from tests.policy.test_all_problems import probe_step  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "outwork", "schema"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(document)
    return document


def errors(schema: dict[str, Any], config: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)
    )


def readme_examples() -> Iterator[tuple[int, Any]]:
    text = (ROOT / "README.md").read_text()
    for block in re.finditer(r"```yaml\n(.*?)```", text, re.DOTALL):
        yield text.count("\n", 0, block.start()) + 1, yaml.safe_load(block.group(1))


def test_the_schema_is_draft_2020_12(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    config = schema["$defs"]["ConfigSpec"]
    assert config["required"] == ["listeners", "routes", "upstreams"]
    assert config["additionalProperties"] is False
    # A policy is its registered steps, nothing else.
    assert config["properties"]["policies"]["additionalProperties"] == {"$ref": "#/$defs/Policy"}
    policy = schema["$defs"]["Policy"]
    assert policy["additionalProperties"] is False and "headers" in policy["properties"]


def test_the_demo_config_satisfies_the_schema(schema: dict[str, Any]) -> None:
    demo = yaml.safe_load((ROOT / "demo" / "outwork.yaml").read_text())
    assert errors(schema, demo) == []


def test_the_readme_examples_satisfy_the_schema(schema: dict[str, Any]) -> None:
    # The README shows fragments too (a `policies:` section alone): those are checked with the
    # top-level keys optional, everything else as strict.
    fragment = {**schema, "$defs": {**schema["$defs"]}}
    fragment["$defs"]["ConfigSpec"] = {**schema["$defs"]["ConfigSpec"], "required": []}
    examples = list(readme_examples())
    assert len(examples) >= 2
    for line, example in examples:
        assert isinstance(example, dict), line
        assert errors(fragment, example) == [], f"README.md:{line}"
    full = [example for _, example in examples if "listeners" in example]
    assert full and all(errors(schema, example) == [] for example in full)


def test_a_broken_config_fails_the_schema(schema: dict[str, Any]) -> None:
    broken = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0", "heartbeet": True}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "api", "policies": "p"}],
        "upstreams": {"api": {"targets": "http://127.0.0.1:9000"}},
        "policies": {"p": {"header": {"remove": ["Server"]}, "headers": {"remove": "Server"}}},
        "workers": 0,
    }
    assert errors(schema, broken) == [
        "listeners.0: Additional properties are not allowed ('heartbeet' was unexpected)",
        "policies.p.headers.remove: 'Server' is not of type 'array'",
        "policies.p: Additional properties are not allowed ('header' was unexpected)",
        "routes.0.policies: 'p' is not of type 'array'",
        "upstreams.api.targets: 'http://127.0.0.1:9000' is not of type 'array'",
        "workers: 0 is less than the minimum of 1",
    ]
    assert errors(schema, {"listeners": []}) == [
        ": 'routes' is a required property",
        ": 'upstreams' is a required property",
        "listeners: [] should be non-empty",
    ]


def test_a_step_registered_later_is_in_the_schema(probe_step: None) -> None:  # noqa: F811
    schema = config_schema()
    probe = schema["$defs"]["ProbeSpec"]
    assert probe["required"] == ["rate"]
    assert probe["properties"]["rate"]["pattern"] == r"^\d{1,10}/(\d+(\.\d+)?)?[smhd]$"
    policy = {"p": {"probe": {"rate": "10/s", "allow": ["10.0.0.0/8"], "token": "env:T"}}}
    base = {"listeners": [{"name": "l", "bind": "127.0.0.1:0"}], "routes": [], "upstreams": {}}
    assert errors(schema, {**base, "policies": policy}) == []
    policy["p"]["probe"]["rate"] = "often"
    (problem,) = errors(schema, {**base, "policies": policy})
    assert problem.startswith("policies.p.probe.rate: 'often' does not match")
