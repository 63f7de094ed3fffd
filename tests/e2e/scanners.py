"""Run the Heartbleed checks of testssl.sh, nmap and sslyze, and read their reports.

Verdicts come from the reports they write (JSON or XML), never from exit codes. Each parser
returns a `Verdict`; one the parser cannot find is an error, not a pass: a scanner that did
not run its check must never look like "not vulnerable".
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .clients import ToolRun, run_tool


@dataclass(frozen=True)
class Verdict:
    scanner: str
    vulnerable: bool
    detail: str


class ReportError(AssertionError):
    pass


def testssl_heartbleed(testssl: str, port: int, workdir: Path) -> tuple[Verdict, ToolRun]:
    report = workdir / f"testssl-{port}.json"
    report.unlink(missing_ok=True)
    run = run_tool(
        [
            testssl,
            "--heartbleed",
            "--jsonfile",
            str(report),
            "--warnings",
            "off",
            "--quiet",
            "--color",
            "0",
            "--connect-timeout",
            "10",
            "--openssl-timeout",
            "10",
            f"127.0.0.1:{port}",
        ],  # fmt: skip
        timeout=50,
        # testssl waits up to 10 s (8 for the heartbeat) for replies that, on loopback, come
        # in milliseconds or never: a probe that is dropped silently would cost the full wait.
        # The leaky-server control shows detection still works with 3 s.
        env={"MAX_WAITSOCK": "3", "HEARTBLEED_MAX_WAITSOCK": "3"},
    )
    return parse_testssl(report, run), run


def parse_testssl(report: Path, run: ToolRun) -> Verdict:
    if not report.exists():
        raise ReportError(f"testssl wrote no JSON report\n{run.explain()}")
    findings = json.loads(report.read_text())
    for f in findings:
        if f.get("id") == "heartbleed":
            severity, finding = f.get("severity", ""), f.get("finding", "")
            if severity == "OK" and finding.startswith("not vulnerable"):
                return Verdict("testssl", False, finding)
            if "VULNERABLE" in finding.upper() and not finding.startswith("not vulnerable"):
                return Verdict("testssl", True, f"{severity}: {finding}")
            raise ReportError(f"testssl heartbleed finding is neither: {f}\n{run.explain()}")
    raise ReportError(f"testssl report has no heartbleed finding: {findings}\n{run.explain()}")


def nmap_heartbleed(nmap: str, port: int, workdir: Path) -> tuple[Verdict, ToolRun]:
    report = workdir / f"nmap-{port}.xml"
    report.unlink(missing_ok=True)
    # "+" runs the script whatever its portrule thinks of an unknown port number, so no
    # slow service detection is needed; vulns.showall makes it say NOT VULNERABLE too.
    run = run_tool(
        [
            nmap,
            "-Pn",
            "-n",
            "-p",
            str(port),
            "--script",
            "+ssl-heartbleed",
            "--script-args",
            "vulns.showall",
            "-oX",
            str(report),
            "127.0.0.1",
        ],  # fmt: skip
        timeout=50,
    )
    return parse_nmap(report, run), run


def parse_nmap(report: Path, run: ToolRun) -> Verdict:
    if not report.exists():
        raise ReportError(f"nmap wrote no XML report\n{run.explain()}")
    root = ET.parse(report).getroot()
    for script in root.iter("script"):
        if script.get("id") != "ssl-heartbleed":
            continue
        states = [e.text or "" for e in script.iter("elem") if e.get("key") == "state"]
        if states == ["NOT VULNERABLE"]:
            return Verdict("nmap", False, "State: NOT VULNERABLE")
        if states and all(s.startswith("VULNERABLE") or s == "LIKELY VULNERABLE" for s in states):
            return Verdict("nmap", True, f"State: {states}")
        raise ReportError(f"nmap ssl-heartbleed states {states}: {script.get('output')}")
    raise ReportError(f"nmap report has no ssl-heartbleed result\n{run.explain()}")


def sslyze_heartbleed(sslyze: str, port: int, workdir: Path) -> tuple[Verdict, ToolRun]:
    report = workdir / f"sslyze-{port}.json"
    report.unlink(missing_ok=True)
    run = run_tool(
        [sslyze, "--heartbleed", f"--json_out={report}", f"127.0.0.1:{port}"], timeout=50
    )
    return parse_sslyze(report, run), run


def parse_sslyze(report: Path, run: ToolRun) -> Verdict:
    if not report.exists():
        raise ReportError(f"sslyze wrote no JSON report\n{run.explain()}")
    data = json.loads(report.read_text())
    results = data.get("server_scan_results") or []
    if len(results) != 1:
        raise ReportError(f"sslyze: expected one server result, got {len(results)}")
    server = results[0]
    if server.get("connectivity_status") != "COMPLETED":
        raise ReportError(
            f"sslyze could not connect: {server.get('connectivity_status')} "
            f"{server.get('connectivity_error_trace')}\n{run.explain()}"
        )
    hb = (server.get("scan_result") or {}).get("heartbleed") or {}
    if hb.get("status") != "COMPLETED":
        raise ReportError(f"sslyze heartbleed scan did not complete: {hb}\n{run.explain()}")
    vulnerable = hb["result"]["is_vulnerable_to_heartbleed"]
    if not isinstance(vulnerable, bool):
        raise ReportError(f"sslyze: is_vulnerable_to_heartbleed is {vulnerable!r}")
    return Verdict("sslyze", vulnerable, f"is_vulnerable_to_heartbleed={vulnerable}")
