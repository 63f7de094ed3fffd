"""The real backend behind the gateway in e2e tests: a small threaded HTTP/1.1 server.

Run as a script: `python backend_server.py BODY`. It binds 127.0.0.1 on a free port, prints
`READY <port>` on stdout, and answers `GET /` with BODY (keep-alive, Content-Length), and
`GET /cell/TAG` too: tests tag requests to find them in the gateway's access log.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    body = sys.argv[1].encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            found = self.path == "/" or self.path.startswith("/cell/")
            payload = body if found else b"not found\n"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
