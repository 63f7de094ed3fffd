"""ModSecurity 2.9's verdicts on CRS's regression corpus: the oracle outwork's WAF is held to.

    .venv/bin/python -m tests.waf.modsec_verdicts           # re-record modsecurity-verdicts.json
    .venv/bin/python -m tests.waf.modsec_verdicts --compare # re-record outwork's differences

Debian's Apache with mod_security2 (2.9.7) loads the vendored CRS rule files, in the order
outwork loads them, after the same setup `SecAction` (id 900990) that outwork's engine builds
for the regression run (`ftw.waf`: paranoia level, threshold, CRS's test limits). Each case's
request is sent as its bytes on loopback; ModSecurity's audit log says which rules matched
(its `Message:` lines) and whether it denied. Per case the file records `blocked` (ModSecurity
denied in a request phase, 1 or 2: outwork does not run the response rules), the request rule
ids that matched and logged, the inbound anomaly score (null: phase 2 did not finish), and
Apache's status (a 400 is a request Apache refused before ModSecurity's phase 2).

What the setup adds besides CRS, and why:
- the body processor per Content-Type as outwork picks it (`processor_for`: JSON for
  `application/json` and `+json`, XML for `text/xml`, `application/xml` and `+xml`), in place of
  ModSecurity's recommended rules 200000/200001, so both engines parse the same bodies;
- `SecArgumentsLimit 1000` (outwork's `MAX_BODY_ARGS`), bodies read in full;
- PCRE match limits of 1,000,000 (the recommended 1,000 makes ModSecurity skip a rule whose
  regex backtracks much: outwork runs every regex to its answer);
- Apache as lenient as it goes (`HttpProtocolOptions Unsafe`, encoded slashes kept, large
  header limits), so most odd requests reach ModSecurity rather than Apache's own 400.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from outwork.waf import seclang
from outwork.waf.engine import CRS_RULES, Setup
from tests.waf import ftw

MODULES = Path("/usr/lib/apache2/modules")
UNICODE_MAPPING = Path("/etc/modsecurity/unicode.mapping")
VERDICTS = ftw.DATA / "modsecurity-verdicts.json"
# The audit log's marker rule: it runs at the end of phase 2 when 949110 did not deny, so a
# request without it never reached phase 2 (Apache answered first) or was denied.
PHASE2_MARKER = 999001
_SECTION = re.compile(rb"^--([0-9a-f]+)-([A-Z])--$")
_RULE_ID = re.compile(rb'\[id "(\d+)"\]')
_SCORE = re.compile(rb"Total Score: (\d+)|outwork-oracle score (\d+)")
_DENIED = re.compile(rb"^Message: Access denied with code (\d+) \(phase (\d)\)")
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Verdict:
    blocked: bool  # ModSecurity denied in phase 1 or 2
    ids: tuple[int, ...]  # request rules (< 950000) that matched and logged, sorted
    score: int | None  # tx.blocking_inbound_anomaly_score; None: phase 2 did not finish
    status: int  # Apache's answer (403: ModSecurity denied; 0: no answer)

    def as_json(self) -> dict[str, object]:
        return {"blocked": self.blocked, "ids": list(self.ids), "score": self.score,
                "status": self.status}  # fmt: skip


def processor_rules() -> str:
    """outwork's `processor_for` in SecLang (URLENCODED and MULTIPART are ModSecurity's own)."""
    json_type = r"^\s*(?:application/json|[^;]*\+json)\s*(?:;|$)"
    xml_type = r"^\s*(?:text/xml|application/xml|[^;]*\+xml)\s*(?:;|$)"
    return f"""SecRule REQUEST_HEADERS:Content-Type "@rx {json_type}" \\
    "id:200001,phase:1,pass,nolog,t:none,t:lowercase,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "@rx {xml_type}" \\
    "id:200000,phase:1,pass,nolog,t:none,t:lowercase,ctl:requestBodyProcessor=XML"
"""


def apache_config(root: Path, port: int, setup: Setup, rules: Path = CRS_RULES) -> str:
    includes = []
    for path in seclang.rule_files(rules):
        includes.append(f"Include {path}")
        if path.name.startswith("REQUEST-949"):
            includes.append(f"Include {root}/marker.conf")
    (root / "marker.conf").write_text(
        f'SecAction "id:{PHASE2_MARKER},phase:2,pass,log,t:none,'
        "msg:'outwork-oracle score %{tx.blocking_inbound_anomaly_score}'\"\n"
    )
    (root / "htdocs").mkdir(exist_ok=True)
    return (
        httpd_prelude(root, port)
        + f"""DocumentRoot {root}/htdocs
HttpProtocolOptions Unsafe LenientMethods Allow0.9
AllowEncodedSlashes NoDecode
LimitRequestLine 1048576
LimitRequestFieldSize 1048576
LimitRequestFields 10000
Timeout 10
Header always set X-Unique-Id "%{{UNIQUE_ID}}e"
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 13107200
SecRequestBodyInMemoryLimit 13107200
SecArgumentsLimit 1000
SecPcreMatchLimit 1000000
SecPcreMatchLimitRecursion 1000000
SecTmpDir {root}
SecDataDir {root}
SecUnicodeMapFile {UNICODE_MAPPING} 20127
SecAuditEngine On
SecAuditLogType Serial
SecAuditLogParts AFHZ
SecAuditLog {root}/audit.log
{processor_rules()}
{setup.directive()}
{chr(10).join(includes)}
"""
    )


@dataclass(frozen=True, slots=True)
class Oracle:
    port: int
    audit_log: Path


def httpd_prelude(root: Path, port: int) -> str:
    """What every oracle's httpd.conf starts with: one loopback port, logs under `root`, and the
    modules ModSecurity and the oracles need."""
    return f"""ServerRoot {root}
ServerName oracle.test
Listen {HOST}:{port}
PidFile {root}/httpd.pid
ErrorLog {root}/error.log
LogLevel warn
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule headers_module {MODULES}/mod_headers.so
LoadModule unique_id_module {MODULES}/mod_unique_id.so
LoadModule security2_module {MODULES}/mod_security2.so
"""


@contextmanager
def httpd(root: Path, config: str, port: int, apache: str, tries: int) -> Iterator[None]:
    """Apache in the foreground with `config` (listening on `port`), stopped at the end;
    `tries` x 50 ms to start (CRS's regexes compile at start)."""
    from tests.e2e.servers import port_accepts, stop_process

    (root / "httpd.conf").write_text(config)
    proc = subprocess.Popen(
        [apache, "-f", str(root / "httpd.conf"), "-DFOREGROUND"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stop_process ends Apache's children
    )
    try:
        for _ in range(tries):
            if port_accepts(port) or proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError((root / "error.log").read_text(errors="replace"))
        yield
    finally:
        stop_process(proc)


@contextmanager
def running(root: Path, setup: Setup, apache: str = "/usr/sbin/apache2") -> Iterator[Oracle]:
    """Apache + ModSecurity 2.9 with CRS at `setup`, on a free loopback port."""
    from tests.e2e.servers import free_port

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with httpd(root, apache_config(root, port, setup), port, apache, tries=600):
        yield Oracle(port, root / "audit.log")


def raw_request(case: ftw.Case) -> bytes:
    """The bytes go-ftw sends for a case (encoded the way `ftw.request_of` reads them)."""
    if case.raw is not None:
        return case.raw
    head = [
        case.method.encode("latin-1", "replace") + b" "
        + case.uri.encode("utf-8", "surrogateescape") + b" "
        + case.version.encode("latin-1", "replace")
    ]  # fmt: skip
    head += [k.encode("latin-1", "replace") + b": " + v.encode() for k, v in case.headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + (case.data or b"")


def send(port: int, data: bytes) -> tuple[int, str]:
    """Apache's status and the transaction's unique id (0, "" when it answered nothing)."""
    with socket.create_connection((HOST, port), timeout=30) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)  # no second request: Apache answers, then closes
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    status_line = head[0].split(b" ")
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    unique_id = ""
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-unique-id":
            unique_id = value.strip().decode("latin-1")
    return status, unique_id


@dataclass(frozen=True, slots=True)
class Entry:
    """One transaction of the audit log."""

    ids: tuple[int, ...]
    score: int | None
    denied_phase: int  # 0: not denied


def audit_entries(path: Path) -> dict[str, Entry]:
    """unique id -> what ModSecurity logged of the transaction (a Serial audit log)."""
    entries: dict[str, Entry] = {}
    section = b""
    unique_id = ""
    ids: set[int] = set()
    score: int | None = None
    denied_phase = 0
    for line in path.read_bytes().split(b"\n"):
        marker = _SECTION.match(line)
        if marker:
            section = marker.group(2)
            if section == b"A":
                unique_id, ids, score, denied_phase = "", set(), None, 0
            elif section == b"Z":
                request_ids = tuple(sorted(i for i in ids if i < 950000))
                entries[unique_id] = Entry(request_ids, score, denied_phase)
            continue
        if section == b"A" and line.startswith(b"["):
            unique_id = line.split(b"] ", 1)[1].split(b" ")[0].decode()
        elif section == b"H" and line.startswith(b"Message:"):
            denied = _DENIED.match(line)
            if denied and not denied_phase:
                denied_phase = int(denied.group(2))
            found = _RULE_ID.search(line)
            if found and int(found.group(1)) != PHASE2_MARKER:
                ids.add(int(found.group(1)))
            if found and int(found.group(1)) in (949110, PHASE2_MARKER):
                total = _SCORE.search(line)
                if total:
                    score = int(total.group(1) or total.group(2))
    return entries


def verdicts(oracle: Oracle, cases: Iterable[ftw.Case], workers: int = 4) -> dict[str, Verdict]:
    chosen = list(cases)
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda c: send(oracle.port, raw_request(c)), chosen))
    # An entry is written at the end of its transaction: wait for every one answered.
    wanted = {unique_id for _, unique_id in answers if unique_id}
    for _ in range(100):
        entries = audit_entries(oracle.audit_log)
        if wanted <= entries.keys():
            break
        time.sleep(0.1)
    result: dict[str, Verdict] = {}
    for case, (status, unique_id) in zip(chosen, answers, strict=True):
        entry = entries.get(unique_id, Entry((), None, 0))
        # Only the request phases count: outwork's engine does not run the response rules
        # (a 500 from a body ModSecurity cannot parse scores on CRS's outbound side).
        blocked = entry.denied_phase in (1, 2)
        result[case.id] = Verdict(blocked, entry.ids, entry.score, status)
    return result


def oracle_cases(level: int) -> list[ftw.Case]:
    """The cases ModSecurity is asked about at a level: the request families (a response
    case needs the response CRS's test backend makes, which this Apache does not)."""
    return [c for c in ftw.cases() if ftw.applicable(c, level) and not response_case(c)]


def response_case(case: ftw.Case) -> bool:
    """RESPONSE-95x (REQUEST-999 is a request family)."""
    return "950" <= case.family < "960"


def level_setup(level: int) -> Setup:
    """The setup of the in-process regression run (`ftw.waf`)."""
    return Setup(paranoia_level=level, extra=ftw.TEST_SETUP)


def load() -> dict[str, dict[str, Verdict]]:
    data = json.loads(VERDICTS.read_text(encoding="utf-8"))
    return {
        level: {
            case_id: Verdict(v["blocked"], tuple(v["ids"]), v["score"], v["status"])
            for case_id, v in cases.items()
        }
        for level, cases in data.items()
        if level.startswith("pl")
    }


def outwork_verdict(case: ftw.Case, level: int) -> tuple[bool, tuple[int, ...]]:
    """What outwork's engine decides on a case: blocked, and the request rules that logged."""
    return ftw.outcome(case, level)


# Cases where Apache hands ModSecurity another request than the bytes sent (or answers
# before ModSecurity's phase 2): outwork's engine gets the bytes as written, in process.
SERVER = {
    **ftw.SERVER,
    "920400-1": "its Content-Length (64,200) is larger than the body sent (go-ftw expands a "
    "`repeat` template that the corpus keeps as text): Apache waits for the rest, gets the "
    "end of the stream and answers 400 before ModSecurity's phase 2; in process the engine "
    "gets the declared length and blocks",
}


def difference(case: ftw.Case, level: int, theirs: Verdict) -> str | None:
    """Why outwork and ModSecurity differ on a case (None: they agree on both the verdict
    and the rules that matched)."""
    blocked, ids = outwork_verdict(case, level)
    if blocked == theirs.blocked and ids == theirs.ids:
        return None
    if case.id in SERVER:
        return "server: " + SERVER[case.id]
    return (
        f"engine: outwork {'blocks' if blocked else 'passes'} with {list(ids)}, ModSecurity "
        f"{'blocks' if theirs.blocked else 'passes'} with {list(theirs.ids)}"
    )


def compare() -> None:
    """Record outwork's differences from ModSecurity, and the agreement per family, in
    known-differences.json (next to the differences from CRS's own expectations)."""
    recorded = load()
    known = json.loads(ftw.KNOWN.read_text(encoding="utf-8"))
    agreement: dict[str, dict[str, str]] = {}
    modsec_vs_crs: dict[str, dict[str, str]] = {}
    for level in ftw.LEVELS:
        theirs = recorded[f"pl{level}"]
        found: dict[str, str] = {}
        agree: dict[str, list[int]] = {}
        crs: dict[str, list[int]] = {}
        for case in oracle_cases(level):
            why = difference(case, level, theirs[case.id])
            if why is not None:
                found[case.id] = why
            tally = agree.setdefault(case.family, [0, 0])
            tally[0] += outwork_verdict(case, level)[0] == theirs[case.id].blocked
            tally[1] += 1
            crs_tally = crs.setdefault(case.family, [0, 0])
            crs_tally[0] += theirs[case.id].blocked == case.expect_block
            crs_tally[1] += 1
        known[f"modsecurity_pl{level}"] = dict(sorted(found.items()))
        agreement[f"pl{level}"] = {f: f"{a}/{n}" for f, (a, n) in sorted(agree.items())}
        modsec_vs_crs[f"pl{level}"] = {f: f"{a}/{n}" for f, (a, n) in sorted(crs.items())}
        print(f"PL{level} outwork = ModSecurity:", agreement[f"pl{level}"])
        print(f"PL{level} ModSecurity = CRS:", modsec_vs_crs[f"pl{level}"])
    known["modsecurity_agreement"] = agreement
    known["modsecurity_vs_crs"] = modsec_vs_crs
    ftw.KNOWN.write_text(json.dumps(known, indent=1) + "\n", encoding="utf-8")


def main(workdir: Path) -> None:
    out: dict[str, object] = {
        "engine": "ModSecurity 2.9.7 (Debian libapache2-mod-security2) on Apache 2.4, "
        "regenerated by `python -m tests.waf.modsec_verdicts`",
    }
    for level in ftw.LEVELS:
        cases = oracle_cases(level)
        with running(workdir / f"pl{level}", level_setup(level)) as oracle:
            found = verdicts(oracle, cases)
        out[f"pl{level}"] = {k: found[k].as_json() for k in sorted(found)}
        print(f"PL{level}: {sum(v.blocked for v in found.values())}/{len(found)} blocked")
    lines = ["{"]
    items = list(out.items())
    for n, (key, value) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        if isinstance(value, dict):
            lines.append(f" {json.dumps(key)}: {{")
            rows = list(value.items())
            for m, (case_id, verdict) in enumerate(rows):
                row_comma = "," if m < len(rows) - 1 else ""
                lines.append(f"  {json.dumps(case_id)}: {json.dumps(verdict)}{row_comma}")
            lines.append(f" }}{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    VERDICTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if "--compare" in sys.argv:
        compare()
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/outwork-modsec-verdicts"))
