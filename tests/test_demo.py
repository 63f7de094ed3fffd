"""`make demo` does what it says: every `try:` command that scripts/run-demo prints runs against
a gateway with the demo's config (demo/outwork.yaml, only its addresses and certificate changed)
and prints what its `# ...` comment says."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.conftest import ROOT, Backend, Gateway, require_tool

TRY = re.compile(r"^\s+try: (?P<command>.*?)(?:\s+# (?P<expect>.*))?$")
# GCRA: a full burst again after this long without requests (5 a second, burst 5).
RATE_LIMIT_REFILL = 1.2


def try_commands() -> list[tuple[str, str | None]]:
    text = (ROOT / "scripts" / "run-demo").read_text()
    found = [TRY.match(line) for line in text.splitlines()]
    return [(m.group("command"), m.group("expect")) for m in found if m]


def demo_config(tmp_path: Path, backend: Backend) -> str:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    config = yaml.safe_load((ROOT / "demo" / "outwork.yaml").read_text())
    config["listeners"][0]["bind"] = "127.0.0.1:0"
    config["listeners"][0]["tls"]["certificates"] = [
        {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}
    ]
    config["upstreams"]["demo"]["targets"] = [backend.url]
    config["admin"]["bind"] = "127.0.0.1:0"
    config["logging"] = {"security_events": str(tmp_path / "events.jsonl")}
    return yaml.safe_dump(config)


def test_the_demo_config_is_the_one_with_the_features() -> None:
    config = yaml.safe_load((ROOT / "demo" / "outwork.yaml").read_text())
    policies = config["policies"]
    assert {"headers", "waf"} <= set(policies["baseline"])
    assert {"authenticate", "rate_limit", "threat_protection"} <= set(policies["partners"])


def test_every_try_command_of_the_demo_prints_what_it_promises(
    tmp_path: Path,
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
) -> None:
    require_tool("curl")
    gateway = make_gateway(demo_config(tmp_path, make_backend()))
    public = urlsplit(gateway.url).netloc
    assert gateway.admin_url is not None
    admin = urlsplit(gateway.admin_url).netloc
    commands = try_commands()
    assert len(commands) >= 10, commands
    for command, expect in commands:
        command = command.replace("127.0.0.1:8443", public).replace("127.0.0.1:9901", admin)
        time.sleep(RATE_LIMIT_REFILL)  # each command starts with the API key's whole burst
        result = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert result.stdout.strip(), command
        if expect is None:
            continue
        got = result.stdout.split()
        if expect.startswith("..."):
            # Each status listed appears, in this order (the rest depends on timing).
            wanted = expect.removeprefix("...").split()
            positions = [got.index(status) for status in wanted]
            assert positions == sorted(positions), (command, got)
        else:
            assert got == expect.split(), command
