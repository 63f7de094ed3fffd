"""The HTTP desync corpus (aws/http-desync-guardian, copied into tests/data/http-desync/ with its
licence) replayed through a real `outwork serve` over a raw socket, one test per case.

Verdict by tier (issue 4): Severe: 400 and the connection closed, nothing reaches the backend.
Compliant/Acceptable: forwarded. Ambiguous: refused (4xx/5xx, closed, nothing forwarded) or
forwarded with one unambiguous framing, checked on the bytes the backend received.

Where RFC 9112 or issue 4's explicit list of refusals is stricter than a Compliant/Acceptable
tier (whitespace before the colon, control characters in a field name or value, an invalid
request-line, a version that is not HTTP/1.x), the stricter rule wins: `strict_rule` names the
rule (and why the case cannot be forwarded safely) and the case must then be refused with 400
(505 for the version). Run this file with `-s` to see the verdict table.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Gateway, gateway_config

CORPUS = Path(__file__).resolve().parents[1] / "data" / "http-desync"
TIMEOUT = 3.0

_TCHAR = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")
_CODINGS = {b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"}


def _load() -> list[Any]:
    cases: list[Any] = []
    if not CORPUS.is_dir():
        return cases
    for path in sorted(CORPUS.glob("*.yaml")):
        for index, case in enumerate(yaml.safe_load(path.read_text()) or []):
            cases.append(pytest.param(case, id=f"{path.stem}[{index}]"))
    return cases


CASES = _load()


def _b(text: Any) -> bytes:
    text = str(text)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def _headers(case: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    headers = [(_b(h["name"]), _b(h["value"])) for h in case.get("headers") or []]
    if not any(name.lower() == b"host" for name, _ in headers):
        headers.insert(0, (b"Host", b"127.0.0.1"))  # issue 4: a request without Host is a 400
    return headers


def _codings(value: bytes) -> list[bytes]:
    return [c.split(b";")[0].strip(b" \t").lower() for c in value.split(b",")]


def request_bytes(case: dict[str, Any]) -> tuple[bytes, bytes]:
    """The raw request and the body the client means (decoded), with a body that matches the
    framing the exactly named framing headers declare (none if they declare nothing usable)."""
    headers = _headers(case)
    version = _b(case.get("version") or "")
    line = _b(case["method"]) + b" " + _b(case["uri"]) + (b" " + version if version else b"")
    head = line + b"\r\n" + b"".join(n + b":" + v + b"\r\n" for n, v in headers) + b"\r\n"
    te = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    cl = [v.strip(b" \t") for n, v in headers if n.lower() == b"content-length"]
    if te and _codings(b",".join(te))[-1] == b"chunked":
        return head + b"5\r\nhello\r\n0\r\n\r\n", b"hello"
    if cl and cl[0].isdigit() and len(cl[0]) < 9:
        body = b"x" * int(cl[0])
        return head + body, body
    return head, b""


def strict_rule(case: dict[str, Any]) -> str | None:
    """The RFC 9112 / issue 4 rule that refuses this request, where it is stricter than the
    corpus' Compliant/Acceptable tier (then the case must be refused, not forwarded).

    Each was weighed against "can it be forwarded with one unambiguous framing?":
    - HTTP/1.2 (any HTTP/1.x, x > 1): yes. RFC 9110 2.5 asks a recipient to process it as the
      highest 1.x it implements; it is read as HTTP/1.1 and sent on as HTTP/1.1: forwarded.
    - `HTTP/0.9` with header fields, and no version at all (an HTTP/0.9 simple request, followed
      by lines that HTTP/0.9 does not have): no. HTTP/0.9 has neither headers nor a status line,
      so a server that believes the version reads the header lines as the next request, one that
      does not reads them as headers: 505 / 400.
    - `HTTP/1.1 ` (trailing space), a target with spaces, raw UTF-8 or nothing at all: no. These
      are invalid request-lines; whitespace in the line decides where the target and the
      version end (one parser sees version `escaped`, another a 0.9 request), and RFC 9112 3
      says a recipient SHOULD NOT autocorrect one "since the invalid request-line might be
      deliberately crafted to bypass security filters along the request chain": 400.
    - `chunked;param` without `=`: no. RFC 9112 7 defines no parameters for chunked and a
      transfer-parameter needs `=`; whether such a coding is still `chunked` is exactly what
      TE.TE desyncs play on (a peer that says no reads the chunked body as the next request).
      llhttp refuses it, and accepting it would need its lenient_transfer_encoding mode, which
      drops the final-chunked check for every request: 400.
    - whitespace before the colon, control characters in names or values: issue 4 lists them.
    """
    version = str(case.get("version") or "")
    uri = _b(case["uri"])
    if version != version.strip(" \t") or not uri.startswith(b"/") or _BAD_TARGET.search(uri):
        return "RFC 9112 3: an invalid request-line is refused, never autocorrected"
    if not re.fullmatch(r"HTTP/1\.[0-9]", version):
        return "RFC 9112 2.3 / 9110 2.5: only HTTP/1.x is read (HTTP/0.9 has no headers) (400/505)"
    for name, value in _headers(case):
        if name.lower() == b"transfer-encoding" and re.search(rb"chunked[ \t]*;", value.lower()):
            return "RFC 9112 7: chunked takes no parameters; `;x` without `=` is not one (400)"
        if not _TCHAR.match(name):
            return "RFC 9112 5.1 / issue 4: field name not a token (whitespace before colon, CTL)"
        if _BAD_VALUE.search(value):
            return "issue 4: control character in a field value"
    return None


class Recorder(socketserver.ThreadingTCPServer):
    """A backend that records the raw head and the body it reads (strictly: one framing
    header or none) and answers 200 with `x-recorded: 1`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordHandler)
        self.received: list[tuple[bytes, bytes | None]] = []
        self.lock = threading.Lock()


class _RecordHandler(socketserver.StreamRequestHandler):
    server: Recorder

    def handle(self) -> None:
        while True:
            lines = []
            while True:
                line = self.rfile.readline(65536)
                if not line:
                    return
                lines.append(line)
                if line == b"\r\n":
                    break
            head = b"".join(lines)
            try:
                body = read_body(head, self.rfile)
            except ConnectionAbortedError:
                return  # the gateway cut the request mid-body: a backend drops it unseen
            with self.server.lock:
                self.server.received.append((head, body))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nx-recorded: 1\r\ncontent-length: 2\r\n\r\nok")
            if body is None:
                return


def framing_problems(head: bytes) -> list[str]:
    """What makes the head the backend received ambiguous (empty: one clear framing)."""
    problems = []
    lines = head.split(b"\r\n")[1:]
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for line in lines:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TCHAR.match(name):
            problems.append(f"bad field line {line!r}")
            continue
        if b"\r" in value or b"\n" in value or _BAD_VALUE.search(value):
            problems.append(f"control character in {line!r}")
        folded = re.sub(rb"[^a-z]", b"", name.lower())
        lname = name.lower()
        if lname == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif lname == b"transfer-encoding":
            codings.append(value.strip(b" \t"))
        elif folded in (b"contentlength", b"transferencoding"):
            problems.append(f"look-alike framing header {name!r}")
    if lengths and codings:
        problems.append("both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        problems.append(f"Content-Length {lengths!r}")
    if codings:
        listed = [c.strip(b" \t").lower() for c in codings[0].split(b",")]
        if len(codings) > 1 or listed[-1] != b"chunked" or not _CODINGS.issuperset(listed[:-1]):
            problems.append(f"Transfer-Encoding {codings!r}")
    return problems


def read_body(head: bytes, rfile: Any) -> bytes | None:
    """The body as the backend reads it; None if its framing is not clear."""
    if framing_problems(head):
        return None
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        body = b""
        while True:
            line = rfile.readline()
            if not line:
                raise ConnectionAbortedError("cut in the middle of a chunked body")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b""):
                    pass
                return body
            body += rfile.read(size)
            rfile.readline()
    match = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", lower)
    return rfile.read(int(match.group(1))) if match else b""


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gateway(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = recorder.server_address[1]
    config = gateway_config(f"http://127.0.0.1:{port}")
    path = tmp_path_factory.mktemp("desync") / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    gw = Gateway(path)
    yield gw
    gw.stop()


def exchange(url: str, data: bytes) -> tuple[int | None, bytes, bool]:
    """Send one request; returns (status or None, the response head, the connection closed
    by the gateway after the first response)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        received = b""
        closed = False
        try:
            while b"\r\n\r\n" not in received:
                piece = sock.recv(65536)
                if not piece:
                    closed = True
                    break
                received += piece
            head, _, rest = received.partition(b"\r\n\r\n")
            match = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
            length = int(match.group(1)) if match else 0
            while not closed and len(rest) < length:
                piece = sock.recv(65536)
                if not piece:
                    closed = True
                rest += piece
            # After a refusal the gateway must close; after a 200 it keeps the connection.
            while not closed and not received.startswith(b"HTTP/1.1 200 "):
                piece = sock.recv(65536)
                if not piece:
                    closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", received)
    return (int(match.group(1)) if match else None), received.partition(b"\r\n\r\n")[0], closed


TIERS = ("Compliant", "Acceptable", "Ambiguous", "Severe")
# Each case's verdict, by test id: (tier, name, expected outcome, ok, what happened).
RESULTS: dict[str, tuple[str, str, str, bool, str]] = {}


def test_corpus_is_there() -> None:
    # The corpus is part of the repository; without it every case below would silently not run.
    assert CASES, f"no desync corpus at {CORPUS}"


@pytest.mark.parametrize("case", CASES)
def test_desync_case(
    case: dict[str, Any], gateway: Gateway, recorder: Recorder, request: pytest.FixtureRequest
) -> None:
    tier = case["expected"]["tier"]
    data, body = request_bytes(case)
    with recorder.lock:
        recorder.received.clear()
    status, head, closed = exchange(gateway.url, data)
    with recorder.lock:
        received = list(recorder.received)
    forwarded = status == 200 and b"x-recorded: 1" in head.lower()
    rule = strict_rule(case) if tier in ("Compliant", "Acceptable") else None
    what = f"status {status}, closed={closed}, backend got {len(received)} request(s)"
    if forwarded:
        problems = [p for h, _ in received for p in framing_problems(h)]
        what += f", framing problems {problems}" if problems else ""
    if tier == "Severe" or rule is not None:
        allowed = (400, 505) if rule and "2.3" in rule else (400,)
        ok = status in allowed and closed and not received
        expect = f"refused ({rule})" if rule else "400 and close"
    elif tier in ("Compliant", "Acceptable"):
        ok = forwarded and len(received) == 1 and received[0][1] == body
        ok = ok and not framing_problems(received[0][0])
        expect = "forwarded"
    else:
        refused = status is not None and status >= 400 and closed and not received
        clean = forwarded and len(received) == 1 and received[0][1] is not None
        clean = clean and not framing_problems(received[0][0])
        ok = refused or clean
        expect = "refused, or forwarded with one framing"
        what += " (refused)" if refused else " (forwarded, normalised)" if clean else ""
    RESULTS[request.node.callspec.id] = (tier, case["name"], expect, ok, what)
    assert ok, f"{case['name']!r}: expected {expect}; got {what}"


def verdict_table(rows: list[tuple[str, str, bool]]) -> dict[str, tuple[int, int, int]]:
    """(tier, expected outcome, ok) rows -> per tier: (cases, passed, refused by a stricter
    rule than the tier's)."""
    table = {}
    for tier in TIERS:
        mine = [(expect, ok) for t, expect, ok in rows if t == tier]
        passed = sum(ok for _, ok in mine)
        stricter = sum(expect.startswith("refused (") for expect, _ in mine)
        table[tier] = (len(mine), passed, stricter)
    return table


def format_table(table: dict[str, tuple[int, int, int]]) -> str:
    lines = ["HTTP desync corpus: verdicts by tier"]
    lines.append(f"{'tier':<12}{'cases':>7}{'pass':>6}{'fail':>6}  refused by a stricter rule")
    for tier, (cases, passed, stricter) in table.items():
        lines.append(f"{tier:<12}{cases:>7}{passed:>6}{cases - passed:>6}  {stricter}")
    return "\n".join(lines)


def test_verdict_table(request: pytest.FixtureRequest) -> None:
    """Runs after the cases (same module, declared later; `-s` prints it): the table for the
    report. It must cover every case this session selected, and read: every case of every tier
    passed, and the Compliant/Acceptable cases refused are exactly those `strict_rule` names."""
    selected: dict[str, Any] = {
        item.callspec.id: item.callspec.params["case"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.function is test_desync_case
    }
    assert set(RESULTS) == set(selected), f"cases without a verdict: {set(selected) - set(RESULTS)}"
    got = verdict_table([(tier, expect, ok) for tier, _, expect, ok, _ in RESULTS.values()])
    expected = {tier: (0, 0, 0) for tier in TIERS}
    for case in selected.values():
        tier = case["expected"]["tier"]
        cases, _, stricter = expected[tier]
        refused = tier in ("Compliant", "Acceptable") and strict_rule(case) is not None
        expected[tier] = (cases + 1, cases + 1, stricter + refused)
    print("\n" + format_table(got))
    normalised = sum("(forwarded, normalised)" in what for *_, what in RESULTS.values())
    print(f"Ambiguous: {normalised} forwarded with one framing, the others refused")
    for tier, name, expect, ok, what in RESULTS.values():
        if not ok:
            print(f"FAIL {tier}: {name!r}: expected {expect}; got {what}")
        elif "(forwarded, normalised)" in what:
            print(f"normalised {tier}: {name!r}: {what}")
        elif expect.startswith("refused ("):
            print(f"stricter {tier}: {name!r}: {expect}")
    assert got == expected, f"\n{format_table(got)}\nexpected:\n{format_table(expected)}"
