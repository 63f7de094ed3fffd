"""Servers the scanner is pointed at, each a thread on loopback.

- `LeakyServer`: a real TLS 1.2/1.3 server (outwork's engine) whose heartbeat handling is
  replaced by OpenSSL 1.0.1f's: it answers a heartbeat with payload_length bytes, whatever the
  request carried, padded out with fake "memory". It leaks in plaintext before the handshake,
  inside the session, or both: the scanner's positive control for each of its two probes.
- `PythonTLSServer`: Python's `ssl` (OpenSSL 3), versions chosen by the test.
- `OldServer`: a raw fake of a 2013 server: it offers TLS 1.0, picks DEFLATE when offered,
  has no secure renegotiation, and takes an early ChangeCipherSpec (CVE-2014-0224), answering
  the next record with bad_record_mac.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from outwork.keys.file_signer import FileSigner
from outwork.tls.config import CertifiedKey, ServerConfig
from outwork.tls.connection import ServerConnection
from outwork.tls.records import frame_plaintext

FAKE_MEMORY = b"-----BEGIN PRIVATE KEY----- not really, but a scanner cannot tell. "
HEARTBEAT = 24


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class _ThreadedServer:
    def __init__(self) -> None:
        self._sock = _listener()
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._guarded, args=(client,), daemon=True).start()

    def _guarded(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            try:
                self.serve(client)
            except (OSError, ValueError):
                pass  # scanners hang up abruptly

    def serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._sock.close()


class _LeakyConnection(ServerConnection):
    leak_plaintext = True
    leak_in_session = True
    leaked_answers = 0

    def _on_heartbeat(self, content: bytes, encrypted: bool) -> None:
        if len(content) < 3 or content[0] != 1:
            return
        if not (self.leak_in_session if encrypted else self.leak_plaintext):
            super()._on_heartbeat(content, encrypted)
            return
        claimed = int.from_bytes(content[1:3], "big")
        leak = (content[3:] + FAKE_MEMORY * (claimed // len(FAKE_MEMORY) + 1))[:claimed]
        response = b"\x02" + content[1:3] + leak + os.urandom(16)
        type(self).leaked_answers += 1
        if encrypted and self._write is not None:
            self._out.append(self._write.seal(HEARTBEAT, response))
        else:
            self._out.append(frame_plaintext(HEARTBEAT, response))


def certified_key(cert: Path, key: Path) -> CertifiedKey:
    chain = (x509.load_pem_x509_certificate(cert.read_bytes()),)
    private = load_pem_private_key(key.read_bytes(), None)
    return CertifiedKey(chain, FileSigner(private))  # type: ignore[arg-type]


class LeakyServer(_ThreadedServer):
    def __init__(self, cert: Path, key: Path, plaintext: bool, in_session: bool) -> None:
        self.config = ServerConfig(certificates=(certified_key(cert, key),), heartbeat=True)
        self.connection = type(
            "Leaky",
            (_LeakyConnection,),
            {"leak_plaintext": plaintext, "leak_in_session": in_session},
        )
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        conn = self.connection(self.config)
        while not conn.peer_closed and not conn.is_closed:
            data = client.recv(65536)
            if not data:
                break
            conn.receive_data(data, time.time())
            client.sendall(conn.data_to_send())
        client.sendall(conn.data_to_send())


class PythonTLSServer(_ThreadedServer):
    def __init__(
        self,
        cert: Path,
        key: Path,
        minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    ) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.minimum_version = minimum
        self.context.maximum_version = maximum
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        try:
            with self.context.wrap_socket(client, server_side=True) as tls:
                tls.recv(1024)
        except ssl.SSLError:
            pass


def _record(ctype: int, version: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", ctype, version, len(payload)) + payload


def _read_record(sock: socket.socket) -> tuple[int, bytes] | None:
    data = b""
    while len(data) < 5:
        chunk = sock.recv(5 - len(data))
        if not chunk:
            return None
        data += chunk
    ctype, _, length = struct.unpack("!BHH", data)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return ctype, body


class OldServer(_ThreadedServer):
    """Answers TLS 1.0 only (no extensions at all), with RC4-SHA or AES128-SHA."""

    def __init__(self, cert: Path) -> None:
        self.cert_der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        first = _read_record(client)
        if first is None or first[0] != 22:
            return
        hello = first[1]
        version = int.from_bytes(hello[4:6], "big")
        pos = 4 + 2 + 32
        pos += 1 + hello[pos]
        n = int.from_bytes(hello[pos : pos + 2], "big")
        suites = {int.from_bytes(hello[pos + 2 + i : pos + 4 + i], "big") for i in range(0, n, 2)}
        pos += 2 + n
        methods = hello[pos + 1 : pos + 1 + hello[pos]]
        if version != 0x0301 or not suites & {0x0005, 0x002F}:
            client.sendall(_record(21, 0x0301, b"\x02\x46"))  # protocol_version
            return
        suite = 0x0005 if 0x0005 in suites else 0x002F  # RC4-SHA first, as in 2013
        compression = 1 if 1 in methods else 0
        server_hello = (
            b"\x03\x01" + os.urandom(32) + b"\x00" + suite.to_bytes(2, "big") + bytes([compression])
        )
        entry = len(self.cert_der).to_bytes(3, "big") + self.cert_der
        certificate = len(entry).to_bytes(3, "big") + entry

        def hs(t: int, body: bytes) -> bytes:
            return bytes([t]) + len(body).to_bytes(3, "big") + body

        flight = hs(2, server_hello) + hs(11, certificate) + hs(14, b"")
        client.sendall(_record(22, 0x0301, flight))
        ccs_seen = False
        while True:
            rec = _read_record(client)
            if rec is None:
                return
            if rec[0] == 20:
                ccs_seen = True  # the bug: a CCS before any key exchange is taken
            elif ccs_seen:
                client.sendall(_record(21, 0x0301, b"\x02\x14"))  # bad_record_mac
                return


class FloodServer(_ThreadedServer):
    """Answers a ClientHello with handshake records that never end: a message header that
    claims 0x0b0b0b bytes, then more of the same, until the scanner hangs up."""

    def serve(self, client: socket.socket) -> None:
        if _read_record(client) is None:
            return
        chunk = _record(22, 0x0303, b"\x0b" * 16384)
        for _ in range(10_000):  # 160 MB at most, if nobody hangs up
            client.sendall(chunk)


class SilentServers:
    """`count` ports that accept and never answer, counting the scanner's connections open
    at once across all of them. "Open" is the kernel's word (TCP_INFO state ESTABLISHED, not
    yet CLOSE_WAIT): a thread noticing a close later would count it too long."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._live: list[socket.socket] = []
        self.most_open = 0
        self.servers = [_Silent(self) for _ in range(count)]
        self.addresses = [s.address for s in self.servers]

    @staticmethod
    def _established(sock: socket.socket) -> bool:
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED
        except OSError:
            return False  # closed here already

    def enter(self, sock: socket.socket) -> None:
        with self._lock:
            # The new one too: a connection already closed when its thread got here (the
            # scanner's reachability check connects and hangs up at once) was never open
            # next to the later ones.
            self._live = [s for s in [*self._live, sock] if self._established(s)]
            self.most_open = max(self.most_open, len(self._live))

    def close(self) -> None:
        for s in self.servers:
            s.close()


TCP_ESTABLISHED = 1  # linux/tcp_states.h


class _Silent(_ThreadedServer):
    def __init__(self, group: SilentServers) -> None:
        self.group = group
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        self.group.enter(client)
        while client.recv(65536):
            pass  # read the hello, say nothing, until the scanner hangs up
