"""`outwork certs list`: the certificates a config uses, as a table and as JSON."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import yaml

from tests.ops.conftest import outwork, refused


def run_ok(*args: str, cwd: Path) -> str:
    result = outwork(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Two listeners (one with two certificates, one key said to be in a token) and an upstream
    client certificate, all issued by a fresh internal CA."""
    run_ok("ca", "init", "ca", "--subject", "CN=Ops Test CA,O=outwork", cwd=tmp_path)
    for stem, names, days in (
        ("api", ["api.test", "127.0.0.1"], "90"),
        ("www", ["www.test"], "10"),
        ("client", ["gateway.internal"], "30"),
    ):
        run_ok("keys", "generate", "--type", "ec-p256", "--out", f"{stem}.key", cwd=tmp_path)
        names_args = [a for n in names for a in ("--name", n)]
        run_ok("certs", "csr", "--key", f"{stem}.key", *names_args, "--out", f"{stem}.csr",
               cwd=tmp_path)  # fmt: skip
        run_ok("ca", "issue", "ca", "--csr", f"{stem}.csr", "--out", f"{stem}.pem",
               "--days", days, cwd=tmp_path)  # fmt: skip
    hsm_key = (
        "pkcs11:token=ops;object=www?pin-value=1234&module-path=/usr/lib/softhsm/libsofthsm2.so"
    )
    data = {
        "listeners": [
            {"name": "public", "bind": "127.0.0.1:0", "tls": {"certificates": [
                {"cert": "api.pem", "key": "api.key"},
                {"cert": "www.pem", "key": hsm_key},
            ]}},
            {"name": "plain", "bind": "127.0.0.1:0"},
        ],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "secure"}],
        "upstreams": {"secure": {"targets": ["https://127.0.0.1:9"], "tls": {
            "client_cert": {"cert": "client.pem", "key": "client.key"}}}},
    }  # fmt: skip
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_json_lists_every_certificate_in_use(config: Path) -> None:
    result = outwork("certs", "list", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    base = config.parent.resolve()
    assert [(c["used_by"], c["name"], c["names"]) for c in found] == [
        ("listener", "public", ["api.test", "127.0.0.1"]),
        ("listener", "public", ["www.test"]),
        ("upstream", "secure", ["gateway.internal"]),
    ]
    assert found[0]["key"] == str(base / "api.key")
    # The token key's location without its PIN.
    assert found[1]["key"] == (
        "pkcs11:token=ops;object=www?module-path=/usr/lib/softhsm/libsofthsm2.so"
    )
    assert "1234" not in result.stdout
    assert {c["issuer"] for c in found} == {"Ops Test CA"}
    # Issued with --days 90, 10 and 30 a moment ago: that many days left, minus the part of a
    # day that has passed since.
    assert [c["days_left"] for c in found] == [89, 9, 29]
    for c in found:
        assert datetime.datetime.fromisoformat(c["not_after"]).tzinfo is not None
        assert c["cert"].startswith(str(base))


def test_the_table_shows_the_same(config: Path) -> None:
    result = outwork("certs", "list", "-c", str(config), env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    for text in ("listener public", "upstream secure", "api.test, 127.0.0.1", "www.test",
                 "Ops Test CA", "pkcs11:token=ops;object=www", "89", "9", "29"):  # fmt: skip
        assert text in result.stdout
    assert "1234" not in result.stdout


def test_refusals(config: Path, tmp_path: Path) -> None:
    assert "cannot read" in refused(outwork("certs", "list", "-c", str(tmp_path / "none.yaml")))
    (tmp_path / "www.pem").unlink()
    line = refused(outwork("certs", "list", "-c", str(config)))
    assert "listener public: cannot read" in line and "www.pem" in line
    (tmp_path / "www.pem").write_text("junk")
    assert "is not a PEM certificate" in refused(outwork("certs", "list", "-c", str(config)))
    (tmp_path / "bad.yaml").write_text("listeners: 3\n")
    assert refused(outwork("certs", "list", "-c", str(tmp_path / "bad.yaml")))
