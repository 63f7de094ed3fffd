"""admin.token: a bearer token by reference, read at load; too short or unreadable: an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from outwork.config.load import MIN_ADMIN_TOKEN, load_config
from outwork.config.source import ConfigError

BASE = """
listeners: [{name: public, bind: "127.0.0.1:0"}]
routes: [{match: {path_prefix: /}, upstream: b}]
upstreams: {b: {targets: ["http://127.0.0.1:1"]}}
admin: {bind: "127.0.0.1:0", token: "%s"}
"""


def load(tmp_path: Path, reference: str) -> object:
    path = tmp_path / "outwork.yaml"
    path.write_text(BASE % reference)
    return load_config(path)


def test_token_read_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("x" * MIN_ADMIN_TOKEN + "\n")
    config = load(tmp_path, "file:token")
    assert config.admin_token == b"x" * MIN_ADMIN_TOKEN  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "expected"),
    [("x" * (MIN_ADMIN_TOKEN - 1), "shorter than"), (None, "token")],
)
def test_short_or_missing_token_is_an_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / "token").write_text(content)
    with pytest.raises(ConfigError) as error:
        load(tmp_path, "file:token")
    problem = error.value.problems[0]
    assert problem.path == "admin.token"
    assert expected in problem.message
