"""Secret references (env:NAME | file:PATH): the parser, the reader, and the config using one
for an encrypted listener key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.keys.secret import (
    MAX_SECRET_FILE,
    SecretError,
    SecretRef,
    parse_secret_ref,
    read_secret,
)
from tests.ops.conftest import outwork

ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_secret_error_without_echoing_it(text: str) -> None:
    try:
        ref = parse_secret_ref(text)
    except SecretError as exc:
        # The text may be the secret itself, pasted by mistake: never in the message.
        if len(text) >= 8 and ":" not in text:
            assert text not in str(exc)
        return
    assert ref.display() == text
    assert ref.source in ("env", "file")


@given(ENV_NAMES)
def test_env_references_round_trip(name: str) -> None:
    assert parse_secret_ref(f"env:{name}") == SecretRef("env", name)


@given(st.text(min_size=1, max_size=100).filter(lambda t: "\x00" not in t))
def test_file_references_keep_the_path_as_written(path: str) -> None:
    assert parse_secret_ref(f"file:{path}") == SecretRef("file", path)


@pytest.mark.parametrize(
    "text", ["hunter2", "env:", "env:1ABC", "env:A-B", "file:", "vault:x", "ENV:X", "file:a\x00b"]
)
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(SecretError):
        parse_secret_ref(text)


def test_reading_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_SECRET", "s3cret")
    assert read_secret(parse_secret_ref("env:OPS_SECRET")) == b"s3cret"
    (tmp_path / "pw").write_bytes(b"from a file\n")
    assert read_secret(parse_secret_ref("file:pw"), tmp_path) == b"from a file"
    assert read_secret(parse_secret_ref(f"file:{tmp_path / 'pw'}")) == b"from a file"
    monkeypatch.delenv("OPS_SECRET")
    with pytest.raises(SecretError, match="not set"):
        read_secret(parse_secret_ref("env:OPS_SECRET"))
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(SecretError, match="empty"):
        read_secret(parse_secret_ref("file:empty"), tmp_path)
    with pytest.raises(SecretError, match="cannot read"):
        read_secret(parse_secret_ref("file:missing"), tmp_path)


def test_a_secret_file_beyond_the_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (MAX_SECRET_FILE + 1))
    with pytest.raises(SecretError, match=f"larger than {MAX_SECRET_FILE} bytes"):
        read_secret(parse_secret_ref("file:big"), tmp_path)
    (tmp_path / "max").write_bytes(b"x" * MAX_SECRET_FILE)
    assert len(read_secret(parse_secret_ref("file:max"), tmp_path)) == MAX_SECRET_FILE


def _tls_config(tmp_path: Path, passphrase: str | None) -> Path:
    entry = {"cert": "chain.pem", "key": "key.pem"}
    if passphrase is not None:
        entry["passphrase"] = passphrase
    config = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0", "tls": {"certificates": [entry]}}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "b"}],
        "upstreams": {"b": {"targets": ["http://127.0.0.1:9"]}},
    }
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    """An encrypted key (passphrase in $OPS_KEY_PW and in ./pw) and a chain for it."""
    env = {"OPS_KEY_PW": "correct horse"}
    (tmp_path / "pw").write_text("correct horse\n")
    for args in (
        ["keys", "generate", "--type", "ec-p256", "--out", "key.pem"]
        + ["--passphrase", "env:OPS_KEY_PW"],
        ["certs", "csr", "--key", "key.pem", "--passphrase", "file:pw"]
        + ["--name", "api.test", "--out", "req.csr"],
        ["ca", "init", "ca"],
        ["ca", "issue", "ca", "--csr", "req.csr", "--out", "chain.pem"],
    ):
        result = outwork(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    return tmp_path


def test_the_config_takes_the_same_passphrase_reference(
    encrypted_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = encrypted_key
    monkeypatch.setenv("OPS_KEY_PW", "correct horse")
    for reference in ("env:OPS_KEY_PW", "file:pw"):
        config = load_config(_tls_config(tmp_path, reference))
        assert config.listeners[0].tls is not None

    def problems(reference: str | None) -> str:
        with pytest.raises(ConfigError) as info:
            load_config(_tls_config(tmp_path, reference))
        return str(info.value)

    assert "the key is encrypted; give its passphrase" in problems(None)
    monkeypatch.setenv("OPS_KEY_PW", "wrong horse")
    assert "wrong passphrase" in problems("env:OPS_KEY_PW")
    assert "wrong horse" not in problems("env:OPS_KEY_PW")
    assert "env:NAME or file:PATH" in problems("correct horse")
    assert "correct horse" not in problems("correct horse")
    monkeypatch.delenv("OPS_KEY_PW")
    assert "env:OPS_KEY_PW: the environment variable is not set" in problems("env:OPS_KEY_PW")


def test_outwork_check_names_a_wrong_passphrase(encrypted_key: Path) -> None:
    config = _tls_config(encrypted_key, "env:OPS_KEY_PW")
    result = outwork("check", "-c", str(config), env={"OPS_KEY_PW": "nope"})
    assert result.returncode == 1
    assert "wrong passphrase for the key" in result.stderr
    assert outwork("check", "-c", str(config), env={"OPS_KEY_PW": "correct horse"}).stdout == (
        "ok\n"
    )
