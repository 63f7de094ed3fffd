"""The asyncio side of the scanner: one target at a time, one short connection per question.

Every connection has a timeout, every loop a named cap; the number of connections a target
costs is bounded (versions, suite and group enumeration, four single probes).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding

from outwork.scan import wire
from outwork.scan.result import TargetResult, certificate_info
from outwork.tls import events as ev
from outwork.tls.client import ClientConnection
from outwork.tls.config import ClientConfig
from outwork.tls.enums import ContentType, HandshakeType, ProtocolVersion

# What a lying heartbeat claims, and the payload it really carries. 4 KiB proves a leak
# without asking a vulnerable server for a record larger than TLS allows.
HEARTBLEED_CLAIM = 4096
HEARTBLEED_PAYLOAD = 16
# How long to wait for an answer that a sound server never sends (heartbeat, CCS probe).
ANSWER_WAIT = 2.0
# Suite enumeration stops after this many rounds per version (each round is a connection).
MAX_SUITE_ROUNDS = 48
READ_CHUNK = 65536


class Refused(Exception):
    """The server ended the exchange: an alert, a close, a timeout or bytes that are not TLS."""


@dataclass
class HelloResult:
    hello: wire.ServerHelloInfo | None = None
    alert: int | None = None
    certificates: list[bytes] = field(default_factory=list)
    ske_group: int | None = None
    error: str | None = None  # why there is no ServerHello (None: there is one)
    not_tls: bool = False


class Probe:
    """One TCP connection speaking crafted plaintext TLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.records = wire.RecordReader()
        self.record_version = wire.TLS10
        self.eof = False

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> Probe:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=READ_CHUNK), timeout
        )
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        except (OSError, TimeoutError):
            pass

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float) -> list[wire.Record]:
        """The records that arrive within `timeout` (at least one, unless it ends);
        [] on timeout or end of stream (then `eof` is set)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                data = await asyncio.wait_for(self.reader.read(READ_CHUNK), remaining)
            except TimeoutError:
                return []
            except OSError:
                data = b""
            if not data:
                self.eof = True
                return []
            got = self.records.feed(data)
            if got:
                return got
        return []

    async def hello(self, spec: wire.HelloSpec, timeout: float) -> HelloResult:
        """Send a ClientHello; read up to ServerHelloDone (TLS 1.0-1.2) or the ServerHello
        (TLS 1.3, a HelloRetryRequest)."""
        await self.send(wire.record(ContentType.HANDSHAKE, wire.client_hello(spec)))
        result = HelloResult()
        handshake = wire.HandshakeReader()
        deadline = time.monotonic() + timeout
        try:
            while True:
                records = await self.read(deadline - time.monotonic())
                if not records:
                    result.error = "connection closed" if self.eof else "timed out"
                    if result.hello is not None:
                        result.error = None  # a hello without ServerHelloDone still counts
                    return result
                for rec in records:
                    if rec.content_type == ContentType.ALERT:
                        result.alert = wire.parse_alert(rec.fragment)
                        result.error = f"alert {result.alert}"
                        return result
                    if rec.content_type != ContentType.HANDSHAKE:
                        if result.hello is not None:
                            return result  # TLS 1.3 CCS or protected records: far enough
                        raise wire.ScanProtocolError(f"record type {rec.content_type} first")
                    for msg_type, body in handshake.feed(rec.fragment):
                        if self._on_message(result, msg_type, body):
                            return result
        except wire.ScanProtocolError as exc:
            result.hello = None
            result.error = str(exc)
            result.not_tls = True
            return result

    def _on_message(self, result: HelloResult, msg_type: int, body: bytes) -> bool:
        """Record one handshake message; True when the hello exchange is complete."""
        if msg_type == HandshakeType.SERVER_HELLO:
            result.hello = wire.parse_server_hello(body)
            self.record_version = min(result.hello.version, wire.TLS12)
            return result.hello.version == wire.TLS13 or result.hello.retry_request
        if msg_type == HandshakeType.CERTIFICATE:
            result.certificates = wire.parse_certificate12(body)
        elif msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
            result.ske_group = wire.parse_ske_group(body)
        elif msg_type == HandshakeType.SERVER_HELLO_DONE:
            return True
        return False


class Scanner:
    """Scans one target: fills a `TargetResult`."""

    def __init__(self, result: TargetResult, timeout: float) -> None:
        self.r = result
        self.host = result.host
        self.port = result.port
        self.timeout = timeout
        self.sni = result.server_name or (None if _is_ip(result.host) else result.host)

    async def _hello(self, spec: wire.HelloSpec) -> HelloResult:
        probe = await Probe.open(self.host, self.port, self.timeout)
        try:
            return await probe.hello(spec, self.timeout)
        finally:
            await probe.close()

    def _spec(
        self,
        version: int,
        suites: tuple[int, ...],
        groups: tuple[int, ...] = tuple(wire.GROUPS),
        share_group: int | None = wire.X25519,
        compression: tuple[int, ...] = (wire.COMPRESSION_NULL,),
    ) -> wire.HelloSpec:
        return wire.HelloSpec(
            version,
            suites,
            groups,
            server_name=self.sni,
            share_group=share_group,
            compression=compression,
        )

    async def run(self) -> None:
        r = self.r
        try:
            probe = await Probe.open(self.host, self.port, self.timeout)
            await probe.close()
        except (OSError, TimeoutError) as exc:
            r.reachable = False
            r.error = _describe(exc, self.timeout)
            return
        r.reachable = True
        if r.scheme == "http":
            r.tls = False
            return
        await self._versions()
        if not r.tls:
            return
        for version in list(r.tls_versions):
            r.cipher_suites[version] = await self._suites(wire_version(version))
        r.groups = await self._groups()
        await self._heartbleed_plaintext()
        await self._session()
        await self._ccs_injection()
        await self._compression()

    async def _versions(self) -> None:
        r = self.r
        why: list[str] = []  # each refused hello's reason, for a target with no TLS
        for version in (wire.TLS10, wire.TLS11, wire.TLS12, wire.TLS13):
            suites = tuple(wire.SUITES_TLS13 if version == wire.TLS13 else wire.SUITES_TLS12)
            try:
                got = await self._hello(self._spec(version, suites))
            except (OSError, TimeoutError) as exc:
                why.append(_describe(exc, self.timeout))
                continue
            hello = got.hello
            if hello is None:
                why.append(
                    f"the server does not speak TLS ({got.error})"
                    if got.not_tls
                    else f"no ServerHello within {self.timeout:g} s"
                    if got.error == "timed out"
                    else f"ClientHello refused ({got.error})"
                )
                continue
            if version == wire.TLS13 and (hello.version == wire.TLS13 or hello.retry_request):
                r.add_version(wire.TLS13)
            elif version != wire.TLS13 and hello.version <= version:
                r.add_version(hello.version)
                if hello.version == version:
                    self._from_hello12(got)
        r.tls = bool(r.tls_versions)
        if not r.tls:
            # The most telling reason: not TLS at all, else silence, else the last refusal.
            for mark in ("does not speak", "within"):
                if any(mark in w for w in why):
                    r.error = "no TLS: " + next(w for w in why if mark in w)
                    break
            else:
                r.error = "no TLS: " + (why[-1] if why else "no answer")

    def _from_hello12(self, got: HelloResult) -> None:
        """What a TLS 1.0-1.2 ServerHello flight tells (the highest version's wins)."""
        assert got.hello is not None
        r = self.r
        exts = got.hello.extensions
        r.heartbeat_advertised = r.heartbeat_advertised or 15 in exts
        r.secure_renegotiation = 0xFF01 in exts
        if got.certificates:
            r.certificate = certificate_info(got.certificates)

    async def _suites(self, version: int) -> list[str]:
        names = wire.SUITES_TLS13 if version == wire.TLS13 else wire.SUITES_TLS12
        offered = list(names)
        accepted: list[str] = []
        for _ in range(MAX_SUITE_ROUNDS):
            if not offered:
                break
            try:
                got = await self._hello(self._spec(version, tuple(offered)))
            except (OSError, TimeoutError):
                break
            hello = got.hello
            if hello is None or hello.suite not in offered:
                break
            if (version == wire.TLS13) != (hello.version == wire.TLS13):
                break
            accepted.append(names[hello.suite])
            offered.remove(hello.suite)
        return accepted

    async def _groups(self) -> list[str]:
        if "1.3" in self.r.tls_versions:
            return await self._groups13()
        return await self._groups12()

    async def _groups13(self) -> list[str]:
        """One hello per group, offering only it (with a share when the engine can make
        one, else an empty list that asks for a HelloRetryRequest)."""
        found = []
        for group, name in wire.GROUPS.items():
            share = group if group in wire.SHAREABLE_GROUPS else None
            spec = self._spec(
                wire.TLS13, tuple(wire.SUITES_TLS13), groups=(group,), share_group=share
            )
            try:
                got = await self._hello(spec)
            except (OSError, TimeoutError):
                continue
            if got.hello is not None and got.hello.selected_group == group:
                found.append(name)
        return found

    async def _groups12(self) -> list[str]:
        """TLS 1.2 by elimination, as the suites: the ServerKeyExchange names the group. An
        ECDSA certificate's curve must stay offered (RFC 8422 5.1: it also limits the
        certificate), so it is kept at the end of every offer."""
        cert_curve = wire.CURVE_GROUPS.get(str((self.r.certificate or {}).get("key", "")))
        remaining = list(wire.GROUPS)
        found: list[int] = []
        for _ in range(len(wire.GROUPS)):
            offer = list(remaining)
            if cert_curve is not None and cert_curve not in offer:
                offer.append(cert_curve)
            spec = self._spec(self._highest12(), wire.ECDHE_SUITES, groups=tuple(offer))
            try:
                got = await self._hello(spec)
            except (OSError, TimeoutError):
                break
            chosen = got.ske_group
            if chosen is None or chosen in found or chosen not in wire.GROUPS:
                break
            found.append(chosen)
            remaining.remove(chosen)
        return [wire.GROUPS[g] for g in found]

    def _highest12(self) -> int:
        below13 = [wire_version(v) for v in self.r.tls_versions if v != "1.3"]
        return max(below13) if below13 else wire.TLS13

    async def _heartbleed_plaintext(self) -> None:
        """A lying heartbeat after the ServerHello, before the handshake completes."""
        version = self._highest12()
        suites = tuple(wire.SUITES_TLS13 if version == wire.TLS13 else wire.SUITES_TLS12)
        result = self.r.heartbleed_before
        try:
            probe = await Probe.open(self.host, self.port, self.timeout)
        except (OSError, TimeoutError) as exc:
            result.note = _describe(exc, self.timeout)
            return
        try:
            got = await probe.hello(self._spec(version, suites), self.timeout)
            if got.hello is None:
                result.note = f"no handshake to probe: {got.error}"
                return
            message = wire.heartbeat_request(HEARTBLEED_CLAIM, os.urandom(HEARTBLEED_PAYLOAD))
            await probe.send(wire.record(ContentType.HEARTBEAT, message, probe.record_version))
            result.tested = True
            deadline = time.monotonic() + min(ANSWER_WAIT, self.timeout)
            while time.monotonic() < deadline:
                records = await probe.read(deadline - time.monotonic())
                if not records:
                    break
                for rec in records:
                    if rec.content_type == ContentType.HEARTBEAT:
                        result.responses += 1
                        result.leaked_bytes += wire.leaked_in_response(
                            rec.fragment, HEARTBLEED_PAYLOAD, rec.length
                        )
        except wire.ScanProtocolError as exc:
            result.note = f"answer is not TLS: {exc}"
        except OSError:
            pass  # a reset after the probe is a refusal
        finally:
            await probe.close()

    async def _session(self) -> None:
        """A real handshake with outwork's client engine, then a lying heartbeat inside the
        session: TLS 1.2 when offered (the Heartbleed era's protocol), else or if the engine
        cannot agree on a 1.2 suite (it has AEAD ECDHE only), TLS 1.3."""
        result = self.r.heartbleed_in_session
        versions = [
            v
            for name, v in (("1.2", ProtocolVersion.TLS12), ("1.3", ProtocolVersion.TLS13))
            if name in self.r.tls_versions
        ]
        if not versions:
            result.note = "needs TLS 1.2 or 1.3"
        for version in versions:
            if await self._session_once(version):
                return

    async def _session_once(self, version: ProtocolVersion) -> bool:
        """One session at `version` at most; False when no handshake completed."""
        r = self.r
        result = r.heartbleed_in_session
        config = ClientConfig(verify=False, heartbeat=True, require_ems=False, max_version=version)
        conn = _CountingClient(config, server_name=self.sni)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=READ_CHUNK), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            result.note = _describe(exc, self.timeout)
            return False
        try:
            conn.start_handshake(time.time())
            done = await _pump(
                conn, reader, writer, self.timeout, lambda e: isinstance(e, ev.HandshakeComplete)
            )
            if not done or not conn.is_established:
                failed = [e for e in conn.events if isinstance(e, ev.ConnectionFailed)]
                why = failed[0].reason if failed else "no handshake within the timeout"
                result.note = f"no session with outwork's client (AEAD, ECDHE only): {why}"
                return False
            result.note = ""
            if conn.peer_certificates and r.certificate is None:
                r.certificate = certificate_info(
                    [c.public_bytes(Encoding.DER) for c in conn.peer_certificates]
                )
            r.heartbeat_advertised = r.heartbeat_advertised or conn.heartbeat_negotiated
            conn.carried = HEARTBLEED_PAYLOAD
            message = wire.heartbeat_request(HEARTBLEED_CLAIM, os.urandom(HEARTBLEED_PAYLOAD))
            conn.send_raw_record(ContentType.HEARTBEAT, message)
            result.tested = True
            await _pump(conn, reader, writer, min(ANSWER_WAIT, self.timeout), lambda e: False)
        except OSError:
            pass  # a reset after the probe is a refusal
        finally:
            result.responses = conn.responses
            result.leaked_bytes = conn.leaked
            writer.close()
        return True

    async def _ccs_injection(self) -> None:
        """CVE-2014-0224: a ChangeCipherSpec right after ServerHelloDone, before any key
        exchange. A sound server refuses it (unexpected_message, or it closes); a vulnerable
        one takes it, then fails to decrypt the next record with keys made of nothing."""
        result = self.r.ccs_injection
        version = self._highest12()
        if version == wire.TLS13:
            result.note = "not applicable (TLS 1.3 only)"
            return
        try:
            probe = await Probe.open(self.host, self.port, self.timeout)
        except (OSError, TimeoutError) as exc:
            result.note = _describe(exc, self.timeout)
            return
        try:
            got = await probe.hello(self._spec(version, tuple(wire.SUITES_TLS12)), self.timeout)
            if got.hello is None:
                result.note = f"no handshake to probe: {got.error}"
                return
            await probe.send(wire.record(ContentType.CHANGE_CIPHER_SPEC, b"\x01", version))
            # A Finished-sized record "protected" with the keys the early CCS would set.
            await probe.send(wire.record(ContentType.HANDSHAKE, os.urandom(40), version))
            result.tested = True
            deadline = time.monotonic() + min(ANSWER_WAIT, self.timeout)
            while time.monotonic() < deadline:
                records = await probe.read(deadline - time.monotonic())
                if not records:
                    result.note = "closed" if probe.eof else "no answer"
                    return
                for rec in records:
                    if rec.content_type != ContentType.ALERT:
                        continue
                    alert = wire.parse_alert(rec.fragment)
                    if alert in (wire.ALERT_BAD_RECORD_MAC, wire.ALERT_DECRYPTION_FAILED) or (
                        alert is None
                    ):
                        result.vulnerable = True
                        result.note = "the early ChangeCipherSpec was accepted"
                    else:
                        result.note = f"refused (alert {alert})"
                    return
        except wire.ScanProtocolError as exc:
            result.note = f"answer is not TLS: {exc}"
        except OSError:
            result.note = "connection reset"
        finally:
            await probe.close()

    async def _compression(self) -> None:
        """CRIME: does the server pick DEFLATE when a client offers it?"""
        version = self._highest12()
        if version == wire.TLS13:
            self.r.compression = False  # TLS 1.3 has no compression
            return
        spec = self._spec(
            version,
            tuple(wire.SUITES_TLS12),
            compression=(wire.COMPRESSION_DEFLATE, wire.COMPRESSION_NULL),
        )
        try:
            got = await self._hello(spec)
        except (OSError, TimeoutError):
            return
        if got.hello is not None:
            self.r.compression = got.hello.compression != wire.COMPRESSION_NULL
        else:
            self.r.compression = False  # refused the offer: no compression either


class _CountingClient(ClientConnection):
    """outwork's client engine that counts heartbeat responses instead of reading them.

    A response's bytes beyond what the request carried are someone else's memory: counted
    here, never stored, never logged."""

    def __init__(self, config: ClientConfig, server_name: str | None) -> None:
        super().__init__(config, server_name=server_name)
        self.carried = 0  # payload bytes our lying request really carried
        self.responses = 0
        self.leaked = 0
        self.events: list[ev.Event] = []

    def _on_heartbeat(self, content: bytes, encrypted: bool) -> None:
        if content[:1] == bytes((wire.HEARTBEAT_RESPONSE,)):
            self.responses += 1
            self.leaked += wire.leaked_in_response(content[:3], self.carried, len(content))
            return
        super()._on_heartbeat(content, encrypted)


async def _pump(
    conn: _CountingClient,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: float,
    until: Callable[[ev.Event], bool],
) -> bool:
    """Drive the engine for up to `timeout`; True once an event matches `until`."""
    deadline = time.monotonic() + timeout
    while True:
        out = conn.data_to_send()
        if out:
            writer.write(out)
            await writer.drain()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or conn.is_closed or conn.peer_closed:
            return False
        try:
            data = await asyncio.wait_for(reader.read(READ_CHUNK), remaining)
        except TimeoutError:
            return False
        if not data:
            return False
        new = conn.receive_data(data, now=time.time())
        conn.events.extend(new)
        if any(until(e) for e in new):
            out = conn.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
            return True


def wire_version(name: str) -> int:
    return {v: k for k, v in wire.VERSION_NAMES.items()}[name]


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
