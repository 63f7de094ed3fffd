"""CORS as a browser enforces it: headless Chromium loads a page from an allowed origin and one
from another origin (two real HTTP servers on loopback), and each page calls the gateway with a
JSON POST (preflighted) and a plain GET. The allowed page reads both answers; the other page's
preflight is refused at the gateway, and its plain GET, though the backend answers it, is kept
from the page by the browser, for want of Access-Control-Allow-Origin."""

from __future__ import annotations

import html
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway, gateway_config
from tests.proxy.test_request_filters import events, refused, requests_seen
from tests.tls.test_chromium import CHROMIUM_FLAGS, chromium

# The page calls the gateway with synchronous XMLHttpRequests, so their results are in the DOM
# when the page has loaded (what `--dump-dom` prints), with no timing to guess.
PAGE = """<!doctype html><html><body><script>
function call(method, path, body) {
  var x = new XMLHttpRequest();
  try {
    x.open(method, "GATEWAY" + path, false);
    if (body) x.setRequestHeader("Content-Type", "application/json");
    x.send(body);
    return "status " + x.status + ": " + x.responseText;
  } catch (e) {
    return "blocked";
  }
}
document.write("<p id=post>" + call("POST", "/echo", '{"hello":"cors"}') + "</p>");
document.write("<p id=get>" + call("GET", "/items", null) + "</p>");
</script></body></html>
"""


class PageServer:
    """A page origin: a real HTTP server on loopback that serves PAGE for every path."""

    def __init__(self) -> None:
        self.page = b""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(owner.page)))
                self.end_headers()
                self.wfile.write(owner.page)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pages() -> Iterator[tuple[PageServer, PageServer]]:
    allowed, other = PageServer(), PageServer()
    yield allowed, other
    allowed.close()
    other.close()


def visit(page: PageServer, gw: Gateway, profile: Path) -> dict[str, str]:
    """The page's results as Chromium leaves them in its DOM: {"post": ..., "get": ...}."""
    page.page = PAGE.replace("GATEWAY", gw.url).encode()
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.origin + "/",
        ],
        capture_output=True,
        timeout=90,
    )
    dom = result.stdout.decode()
    found = dict(re.findall(r'<p id="(\w+)">(.*?)</p>', dom, re.DOTALL))
    assert set(found) == {"post", "get"}, result.stderr.decode()[-2000:]
    return {key: html.unescape(value) for key, value in found.items()}


def test_a_page_from_an_allowed_origin_reads_answers_and_another_is_blocked(
    make_backend: Any, make_gateway: Any, pages: tuple[PageServer, PageServer], tmp_path: Path
) -> None:
    allowed, other = pages
    backend = make_backend()
    cors = {"origins": [allowed.origin], "methods": ["GET", "POST"], "headers": ["Content-Type"]}
    config = gateway_config(
        backend.url,
        routes=[{"name": "guarded", "match": {"path_prefix": "/"}, "upstream": "backend"}],
        logging={"security_events": "events.jsonl"},
        policies={"web": {"headers": {"cors": cors}}},
        default_policies=["web"],
    )
    gw = make_gateway(config)
    gw.backend = backend  # type: ignore[attr-defined]

    assert visit(allowed, gw, tmp_path / "profile-allowed") == {
        "post": 'status 200: {"hello":"cors"}',
        "get": "status 200: GET /items\n",
    }
    seen = requests_seen(gw)
    assert visit(other, gw, tmp_path / "profile-other") == {"post": "blocked", "get": "blocked"}
    # The preflight never reached the backend (nor its POST); the plain GET did, and the
    # browser kept its answer from the page.
    assert requests_seen(gw) == seen + 1
    assert refused(gw, "cors_rejected") == (1.0, 1.0)
    (event,) = events(gw)
    assert (event["detail"]["reason"], event["detail"]["origin"]) == ("origin", other.origin)
