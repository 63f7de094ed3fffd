"""The incident's edits of the config file: `revocation.not_before` set, API keys created before
it marked revoked, every basic user told to change password; every other byte kept, whatever
the values and however the file lays them out. And the config keys they rely on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from outwork.config.load import load_config
from outwork.ops import OpsError
from outwork.ops.config_edit import Edits, compose
from outwork.ops.revocation import revoke
from tests.conftest import gateway_config

INCIDENT = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)

CONFIG = """\
# operator's comment
listeners:
  - name: public   # the edge
    bind: 127.0.0.1:0
policies:
  api:
    authenticate:
      - api_key: {header: X-API-Key, keys: [{id: k1, hash: "sha256:00"},
                  {id: k2, hash: "sha256:11", created: "2027-01-01T00:00:00Z"}]}
      - api_key:
          keys:
            - id: k3            # an old one
              hash: "sha256:22"
              created: 2020-01-01T00:00:00Z
            - id: k4
              hash: "sha256:33"
              revoked: true
      - basic:
          users:
            - name: ops
              hash: x
            - {name: dev, hash: y, must_change_password: false}
"""


def test_old_keys_are_revoked_users_flagged_and_the_rest_kept() -> None:
    text, revoked = revoke(CONFIG, INCIDENT)
    assert revoked.api_keys == ["k1", "k3"]  # k2 is newer, k4 was revoked already
    assert revoked.users == ["ops", "dev"]
    data = yaml.safe_load(text)
    assert data["revocation"] == {"not_before": "2026-12-06T22:00:00Z"}
    steps = data["policies"]["api"]["authenticate"]
    keys = steps[0]["api_key"]["keys"] + steps[1]["api_key"]["keys"]
    assert [k.get("revoked", False) for k in keys] == [True, False, True, True]
    assert [u["must_change_password"] for u in steps[2]["basic"]["users"]] == [True, True]
    # Insertions and the one value replaced, in each mapping's style; the rest as it was.
    assert (
        text
        == CONFIG.replace("[{id: k1", "[{revoked: true, id: k1")
        .replace("            - id: k3", "            - revoked: true\n              id: k3")
        .replace(
            "            - name: ops",
            "            - must_change_password: true\n              name: ops",
        )
        .replace("must_change_password: false", "must_change_password: true")
        + 'revocation: {not_before: "2026-12-06T22:00:00Z"}\n'
    )


def test_an_existing_revocation_time_is_replaced() -> None:
    for before in ("revocation:\n  not_before: 2020-01-01T00:00:00Z\n", "revocation:\n"):
        text, _ = revoke("listeners: []\n" + before, INCIDENT)
        assert yaml.safe_load(text)["revocation"] == {"not_before": "2026-12-06T22:00:00Z"}


def test_a_structure_where_a_value_goes_is_refused() -> None:
    with pytest.raises(OpsError):
        revoke("listeners: []\nrevocation: {not_before: [1]}\n", INCIDENT)


texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@given(st.lists(st.tuples(texts, texts, st.booleans()), min_size=1, max_size=5), st.booleans())
def test_any_key_ids_and_layout_give_the_same_document_plus_the_edits(
    entries: list[tuple[str, str, bool]], flow: bool
) -> None:
    keys = [{"id": i, "hash": h, **({"created": "2030-01-01T00:00:00Z"} if new else {})}
            for i, h, new in entries]  # fmt: skip
    document = {"listeners": [], "policies": {"p": {"authenticate": [{"api_key": {"keys": keys}}]}}}
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)
    edited, revoked = revoke(text, INCIDENT)
    # As PyYAML reads the unedited text (it does not read back every string it writes).
    parsed = yaml.safe_load(text)["policies"]["p"]["authenticate"][0]["api_key"]["keys"]
    expected = [{**k, "revoked": True} if "created" not in k else k for k in parsed]
    result = yaml.safe_load(edited)
    assert result["policies"]["p"]["authenticate"][0]["api_key"]["keys"] == expected
    assert result["revocation"] == {"not_before": "2026-12-06T22:00:00Z"}
    assert len(revoked.api_keys) == sum(1 for _, _, new in entries if not new)


def test_edits_keep_the_style_of_each_mapping() -> None:
    text = "a: {x: 1}\nb:\n  - y: 2\n    z: 3\nc: {}\n"
    root = compose(text)
    assert isinstance(root, yaml.MappingNode)
    edits = Edits(text)
    for name in ("a", "c"):
        edits.set(root.value[[k.value for k, _ in root.value].index(name)][1], "new", "true")
    edits.set(root.value[1][1].value[0], "new", "true")
    result = edits.result()
    assert result == "a: {new: true, x: 1}\nb:\n  - new: true\n    y: 2\n    z: 3\nc: {new: true}\n"


def test_the_config_names_the_incident_files(tmp_path: Path) -> None:
    config = gateway_config("http://127.0.0.1:9")
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    assert loaded.incident_state == str(tmp_path / "gw.incident.json")
    assert loaded.incident_advisory == str(tmp_path / "gw.advisory.md")
    files = {"state": "s/x.json", "advisory": "/a.md"}
    path.write_text(yaml.safe_dump({**config, "incident": files}))
    loaded = load_config(path)
    assert loaded.incident_state == str(tmp_path / "s/x.json")
    assert loaded.incident_advisory == "/a.md"
