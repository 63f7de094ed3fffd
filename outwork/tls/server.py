"""Server role of the TLS 1.3 handshake (RFC 8446 2, 4): explicit states, one handler each."""

from __future__ import annotations

import dataclasses
import functools
import hmac
import os
from enum import Enum, auto
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from outwork.native import mypyc_attr
from outwork.tls import events as ev
from outwork.tls.alerts import (
    AlertDescription,
    TLSError,
    handshake_failure,
    illegal_parameter,
    unexpected_message,
)
from outwork.tls.base import TLSConnection
from outwork.tls.certselect import certificate_candidates
from outwork.tls.clientauth import (
    ClientAuth,
    ClientIdentity,
    trust_binding,
    verify_client_chain,
)
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import CertifiedKey, ServerConfig
from outwork.tls.enums import (
    CipherSuite,
    ExtensionType,
    HandshakeType,
    HeartbeatMode,
    NamedGroup,
    ProtocolVersion,
    SignatureScheme,
    is_grease,
)
from outwork.tls.extensions import (
    ClientHelloOffer,
    parse_client_hello_extensions,
    push_alpn,
    push_cookie,
    push_key_share_entry,
)
from outwork.tls.groups import check_share_encoding, server_key_exchange
from outwork.tls.ja4 import ja4
from outwork.tls.keyschedule import SUITES, HmacKey, KeySchedule, SuiteParams, Transcript
from outwork.tls.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Extension,
    NewSessionTicket,
    ServerHello,
    handshake_message,
    pull_certificate,
    pull_certificate_verify,
    pull_client_hello,
    pull_finished,
    push_authorities,
    push_certificate,
    push_certificate_request,
    push_certificate_verify,
    push_encrypted_extensions,
    push_new_session_ticket,
    push_server_hello,
    push_uint16_list,
)
from outwork.tls.server12 import Tls12ServerHandshake
from outwork.tls.signing import (
    TLS13_SCHEMES,
    certificate_verify_content,
    sign_with,
    verify_signature,
)
from outwork.tls.tickets import (
    NONCE_LENGTH,
    SessionState,
    open_ticket,
    session_lifetime_left,
    still_authenticated,
    ticket_for,
)
from outwork.tls.verify import load_chain

PSK_DHE_KE: Final = 1  # psk_key_exchange_modes: PSK with (EC)DHE, the only mode outwork accepts
# Client and server views of a ticket's age may differ this much.
MAX_TICKET_AGE_SKEW_MS: Final = 10_000
TICKET_ENTROPY: Final = 4 + NONCE_LENGTH  # a ticket's age_add, then its sealing nonce
_SUPPORTED_VERSIONS_TLS13: Final = (ProtocolVersion.TLS13).to_bytes(2, "big")


class ServerState(Enum):
    WAIT_CLIENT_HELLO = auto()
    WAIT_SECOND_CLIENT_HELLO = auto()  # after a HelloRetryRequest
    WAIT_CLIENT_CERTIFICATE = auto()  # mTLS: after our CertificateRequest
    WAIT_CLIENT_CERTIFICATE_VERIFY = auto()
    WAIT_FINISHED = auto()
    TLS12 = auto()  # a Tls12ServerHandshake drives the rest
    CONNECTED = auto()


@mypyc_attr(allow_interpreted_subclasses=True)  # tests, the scanner's test servers
class ServerConnection(TLSConnection):
    __slots__ = (
        "_config", "state", "_transcript", "_schedule", "_params", "_first_hello",
        "_retry_group", "_cookie", "_client_hs_secret", "_client_app_secret", "_negotiated",
        "_expected_client_finished",
        "client_hello", "ja4", "_tickets_wanted", "_client_leaf", "client_identity",
        "_authenticated_at_ms",
    )  # fmt: skip

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config.limits, config.heartbeat)
        self._config = config
        self._role = self
        self.state = ServerState.WAIT_CLIENT_HELLO
        self._transcript: Transcript | None = None
        self._schedule: KeySchedule | None = None
        self._params: SuiteParams | None = None
        self._first_hello: ClientHello | None = None
        self._retry_group: NamedGroup | None = None
        self._cookie: bytes | None = None
        self._client_hs_secret = b""
        self._client_app_secret = b""
        # The client Finished's verify_data, when it was already computed for a ticket sent
        # with our flight (the transcript it covers cannot change before it comes).
        self._expected_client_finished = b""
        self._negotiated: ev.HandshakeComplete | None = None
        # The parsed ClientHello, until the handshake completes (then released; `ja4` stays).
        self.client_hello: ClientHello | None = None
        self.ja4: str | None = None  # fingerprint of the first ClientHello, once parsed
        self._tickets_wanted = False
        self._client_leaf: x509.Certificate | None = None
        self.client_identity: ClientIdentity | None = None  # set once a client cert verifies
        self._authenticated_at_ms = 0  # this handshake's, or the resumed session's full one

    def handle(self, msg_type: int, body: bytes, raw: bytes, now: float) -> None:
        state = self.state
        if state is ServerState.WAIT_CLIENT_HELLO or state is ServerState.WAIT_SECOND_CLIENT_HELLO:
            if msg_type != HandshakeType.CLIENT_HELLO:
                raise unexpected_message(f"expected ClientHello, got handshake type {msg_type}")
            self._on_client_hello(body, raw, now)
        elif state is ServerState.WAIT_CLIENT_CERTIFICATE:
            if msg_type != HandshakeType.CERTIFICATE:
                raise unexpected_message(f"expected Certificate, got handshake type {msg_type}")
            self._on_client_certificate(body, raw, now)
        elif state is ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY:
            if msg_type != HandshakeType.CERTIFICATE_VERIFY:
                raise unexpected_message(f"expected CertificateVerify, got {msg_type}")
            self._on_client_certificate_verify(body, raw)
        elif state is ServerState.WAIT_FINISHED:
            if msg_type != HandshakeType.FINISHED:
                raise unexpected_message(f"expected Finished, got handshake type {msg_type}")
            self._on_finished(body, raw, now)
        else:
            raise unexpected_message(f"handshake message {msg_type} in state {state.name}")

    # ----- ClientHello ------------------------------------------------------------------

    def _on_client_hello(self, body: bytes, raw: bytes, now: float) -> None:
        limits = self.limits
        hello = pull_client_hello(Reader(body), limits.max_cipher_suites, limits.max_extensions)
        offer = parse_client_hello_extensions(
            hello.extensions, limits.max_list_entries, limits.max_key_shares
        )
        retry = self.state is ServerState.WAIT_SECOND_CLIENT_HELLO
        if not retry:
            self.client_hello = hello
            self.ja4 = ja4(hello)
        if hello.legacy_version < ProtocolVersion.TLS12:
            # RFC 8446 4.1.2 and D.5: a TLS 1.3 (or 1.2) ClientHello says 0x0303 here; below is
            # an SSL 3.0 / TLS 1.0 / 1.1 client, whatever its extensions claim.
            raise TLSError(AlertDescription.PROTOCOL_VERSION, "legacy_version below TLS 1.2")
        version = self._choose_version(hello, offer)
        if version == ProtocolVersion.TLS12:
            if retry:
                raise illegal_parameter("second ClientHello after a retry asks for TLS 1.2")
            alpn = self._choose_alpn(offer)
            role = Tls12ServerHandshake(self, self._config, hello, offer, raw, alpn, self.ja4, now)
            self.use_tls12(role)
            self.state = ServerState.TLS12
            return
        if hello.legacy_compression_methods != b"\x00":
            raise illegal_parameter("TLS 1.3 requires exactly the null compression method")
        params = self._choose_suite(hello, retry)
        group, client_share = self._choose_group(offer)
        if offer.has_pre_shared_key and not offer.psk_modes:
            # RFC 8446 4.2.9: a PSK offer without psk_key_exchange_modes MUST be refused.
            raise TLSError(AlertDescription.MISSING_EXTENSION, "no psk_key_exchange_modes")
        if retry:
            # The early data of the first hello came before this one; nothing more may.
            self.skip_early_data(False)
            if offer.has_early_data:
                raise illegal_parameter("early_data in the ClientHello after a retry")
        elif offer.has_early_data:
            # 0-RTT is never accepted: EncryptedExtensions omits early_data, so the client
            # knows; its early records fail to decrypt and are skipped (RFC 8446 4.2.10),
            # also when a HelloRetryRequest answers (they then arrive before the new hello).
            self.skip_early_data()

        if retry:
            self._check_second_hello(hello, offer, group)
        elif client_share is None:
            self._send_hello_retry_request(hello, raw, params, group)
            return
        assert client_share is not None

        alpn = self._choose_alpn(offer)
        transcript = self._transcript or Transcript(params.hash_name)
        resumption = self._accept_psk(offer, raw, params, transcript, now)
        extensions: list[Extension] = [
            (ExtensionType.SUPPORTED_VERSIONS, _SUPPORTED_VERSIONS_TLS13),
        ]
        if resumption is None:
            certified_scheme: tuple[CertifiedKey, SignatureScheme] | None = (
                self._choose_certificate(offer)
            )
            psk = None
        else:
            certified_scheme = None
            psk = resumption[1].secret
            extensions.append((ExtensionType.PRE_SHARED_KEY, resumption[0].to_bytes(2, "big")))
        transcript.update(raw)
        server_share, shared_secret = server_key_exchange(group, client_share)
        extensions.append((ExtensionType.KEY_SHARE, push_key_share_entry(group, server_share)))
        # The random of the ServerHello and, when the ticket goes out with our flight, its
        # age_add and sealing nonce: one getrandom call per handshake rather than three.
        entropy = os.urandom(32 + TICKET_ENTROPY)
        server_hello = ServerHello(
            ProtocolVersion.TLS12,
            entropy[:32],
            hello.legacy_session_id,
            params.suite,
            0,
            tuple(extensions),
        )
        self.set_suite(params)
        schedule = KeySchedule(params, psk)
        schedule.set_shared_secret(shared_secret)
        w = Writer()
        push_server_hello(w, server_hello)
        transcript.update(self.send_handshake(HandshakeType.SERVER_HELLO, w.getvalue()))
        if hello.legacy_session_id and not retry:
            self.send_change_cipher_spec()  # middlebox compatibility (RFC 8446 D.4)
        client_hs, server_hs = schedule.handshake_traffic_secrets(transcript.digest())
        # Each handshake traffic secret expands a record key, an IV and a Finished key: one
        # HMAC key setup each, shared.
        server_hs_key = HmacKey(params.hash_name, server_hs)
        client_hs_key = HmacKey(params.hash_name, client_hs)
        self.set_write_secret(server_hs, server_hs_key)

        flight = self._encrypted_extensions(offer, transcript, alpn)
        ask_certificate = certified_scheme is not None and (
            self._config.client_auth is not ClientAuth.NONE
        )
        if ask_certificate:
            flight += self._certificate_request(transcript)
        if certified_scheme is not None:
            # Unpacked, not *-passed: a compiled call with star arguments goes through the
            # generic Python call path.
            certified, scheme = certified_scheme
            flight += self._certificate_flight(transcript, certified, scheme)
        verify_data = schedule.finished_verify_data(server_hs_key, transcript.digest())
        finished = handshake_message(HandshakeType.FINISHED, verify_data)
        transcript.update(finished)
        self.send_handshake_bytes(flight + finished)

        client_app, server_app = schedule.application_traffic_secrets(transcript.digest())
        self.set_write_secret(server_app)
        self.set_read_secret(client_hs, client_hs_key)
        self.allow_change_cipher_spec(True)
        self._transcript = transcript
        self._schedule = schedule
        self._params = params
        self._client_hs_secret = client_hs
        self._client_app_secret = client_app
        self._tickets_wanted = PSK_DHE_KE in offer.psk_modes
        if resumption is not None:
            self.client_identity = resumption[1].client_identity
            self._authenticated_at_ms = resumption[1].authenticated_at_ms
        else:
            self._authenticated_at_ms = int(now * 1000)
        self._negotiated = ev.HandshakeComplete(
            version=ProtocolVersion.TLS13,
            cipher_suite=params.suite,
            group=group,
            alpn_protocol=alpn,
            server_name=offer.server_name,
            ja4=self.ja4,
            resumed=resumption is not None,
        )
        self.state = (
            ServerState.WAIT_CLIENT_CERTIFICATE if ask_certificate else ServerState.WAIT_FINISHED
        )
        if not ask_certificate and self._tickets_wanted and self._config.ticket_keys:
            # RFC 8446 4.6.1: with no client authentication the rest of the transcript is
            # known, so the ticket goes out with our Finished, as OpenSSL does; clients that
            # close right after the handshake still leave with a ticket. It is protected by
            # the application key, so only the peer that finishes the handshake reads it.
            expected = schedule.finished_verify_data(client_hs_key, transcript.digest())
            self._expected_client_finished = expected
            client_finished = handshake_message(HandshakeType.FINISHED, expected)
            self._send_ticket(now, transcript.digest_with(client_finished), entropy[32:])
            self._tickets_wanted = False

    def _accept_psk(
        self,
        offer: ClientHelloOffer,
        raw: bytes,
        params: SuiteParams,
        transcript: Transcript,
        now: float,
    ) -> tuple[int, SessionState] | None:
        """The first offered ticket that is ours, alive, for this suite's hash and server name,
        with a plausible age; its binder must then verify (RFC 8446 4.2.11). None means a full
        handshake. Only psk_dhe_ke is accepted: resumption keeps forward secrecy."""
        psks = offer.pre_shared_key
        keys = self._config.ticket_keys
        if psks is None or keys is None or PSK_DHE_KE not in offer.psk_modes:
            return None
        truncated_hello = raw[: len(raw) - psks.binders_length]
        for index, (identity, obfuscated_age) in enumerate(psks.identities):
            state = open_ticket(keys, identity, now)
            if state is None or state.version != ProtocolVersion.TLS13:
                continue
            ticket_suite = SUITES.get(state.cipher_suite)
            if ticket_suite is None or ticket_suite.hash_name != params.hash_name:
                continue
            if state.server_name != (offer.server_name or ""):
                continue  # a ticket is bound to the name it was issued for
            client_age = (obfuscated_age - state.age_add) % (1 << 32)
            server_age = int(now * 1000) - state.issued_at_ms
            if abs(client_age - server_age) > MAX_TICKET_AGE_SKEW_MS:
                continue
            if self._config.client_auth is ClientAuth.REQUIRED and not state.client_identity:
                continue  # the session proves no client identity; a full handshake will
            binding = trust_binding(self._config.client_auth, self._config.client_ca)
            if not still_authenticated(state, binding, self._config.ticket_lifetime, now):
                continue  # too long since the full handshake, or other trust: prove it again
            schedule = KeySchedule(params, state.secret)
            binder = schedule.finished_verify_data(
                schedule.binder_key(), transcript.digest_with(truncated_hello)
            )
            if not hmac.compare_digest(binder, psks.binders[index]):
                raise TLSError(AlertDescription.DECRYPT_ERROR, "PSK binder does not verify")
            return index, state
        return None

    def _choose_version(self, hello: ClientHello, offer: ClientHelloOffer) -> ProtocolVersion:
        """TLS 1.3 when offered; else TLS 1.2 if the listener allows it (RFC 8446 4.2.1)."""
        if offer.supported_versions:
            versions = {v for v in offer.supported_versions if not is_grease(v)}
        else:
            versions = {ProtocolVersion.TLS12} if hello.legacy_version >= 0x0303 else set()
        if ProtocolVersion.TLS13 in versions:
            return ProtocolVersion.TLS13
        if ProtocolVersion.TLS12 in versions and self._config.min_version <= ProtocolVersion.TLS12:
            if CipherSuite.TLS_FALLBACK_SCSV in hello.cipher_suites:
                # RFC 7507: the client fell back from a version we do support.
                raise TLSError(AlertDescription.INAPPROPRIATE_FALLBACK, "fallback from TLS 1.3")
            if 0 not in hello.legacy_compression_methods:
                # RFC 5246 7.4.1.2: null must be offered; the server then picks it, so a
                # client also offering deflate is served, uncompressed (no CRIME).
                raise illegal_parameter("the null compression method is not offered")
            return ProtocolVersion.TLS12
        raise TLSError(AlertDescription.PROTOCOL_VERSION, "no protocol version in common")

    def complete_tls12(self, event: ev.HandshakeComplete) -> None:
        self._negotiated = event
        self.state = ServerState.CONNECTED
        self.complete(event)

    def _choose_suite(self, hello: ClientHello, retry: bool) -> SuiteParams:
        offered = set(hello.cipher_suites)
        for suite in self._config.cipher_suites:
            if suite in offered:
                params = SUITES[suite]
                if retry and self._params is not None and params is not self._params:
                    raise illegal_parameter("second ClientHello changed the cipher suite")
                return params
        raise handshake_failure("no cipher suite in common")

    def _choose_certificate(self, offer: ClientHelloOffer) -> tuple[CertifiedKey, SignatureScheme]:
        if not offer.signature_algorithms:
            raise TLSError(AlertDescription.MISSING_EXTENSION, "no signature_algorithms")
        offered = set(offer.signature_algorithms)
        for certified in certificate_candidates(self._config, offer):
            for scheme in certified.signer.schemes():
                if scheme in offered and scheme in TLS13_SCHEMES:
                    return certified, scheme
        raise handshake_failure("no certificate the client can verify")

    def _choose_group(self, offer: ClientHelloOffer) -> tuple[NamedGroup, bytes | None]:
        """The most preferred group the client sent a share for; else the most preferred
        mutual group, with no share (a HelloRetryRequest asks for it)."""
        if not offer.supported_groups or not offer.has_key_share:
            # RFC 8446 9.2: each needs the other; an empty key_share is allowed (a retry).
            raise TLSError(AlertDescription.MISSING_EXTENSION, "no supported_groups or key_share")
        supported = set(offer.supported_groups)
        shares = dict(offer.key_shares)
        for shared, share in shares.items():
            if shared not in supported and not is_grease(shared):
                raise illegal_parameter("key_share for a group not in supported_groups")
            check_share_encoding(shared, share)
        for group in self._config.groups:
            if group in shares:
                return group, shares[group]
        for group in self._config.groups:
            if group in supported:
                return group, None
        raise handshake_failure("no key exchange group in common")

    def _choose_alpn(self, offer: ClientHelloOffer) -> str | None:
        if not offer.alpn or not self._config.alpn_protocols:
            return None
        for protocol in self._config.alpn_protocols:
            if protocol in offer.alpn:
                return protocol
        raise TLSError(AlertDescription.NO_APPLICATION_PROTOCOL, "no ALPN protocol in common")

    # ----- HelloRetryRequest ------------------------------------------------------------

    def _send_hello_retry_request(
        self, hello: ClientHello, raw: bytes, params: SuiteParams, group: NamedGroup
    ) -> None:
        transcript = Transcript(params.hash_name)
        transcript.update(raw)
        transcript.restart_for_hello_retry()
        # The cookie binds the retry to this first ClientHello and group; the second
        # ClientHello must echo it (RFC 8446 4.2.2).
        self._cookie = hmac.digest(
            self._config.cookie_key, transcript.digest() + group.to_bytes(2, "big"), "sha256"
        )
        retry = ServerHello(
            ProtocolVersion.TLS12,
            HELLO_RETRY_REQUEST_RANDOM,
            hello.legacy_session_id,
            params.suite,
            0,
            (
                (ExtensionType.SUPPORTED_VERSIONS, _SUPPORTED_VERSIONS_TLS13),
                (ExtensionType.KEY_SHARE, group.to_bytes(2, "big")),
                (ExtensionType.COOKIE, push_cookie(self._cookie)),
            ),
        )
        w = Writer()
        push_server_hello(w, retry)
        transcript.update(self.send_handshake(HandshakeType.SERVER_HELLO, w.getvalue()))
        if hello.legacy_session_id:
            self.send_change_cipher_spec()
        self.allow_change_cipher_spec(True)
        self._transcript = transcript
        self._params = params
        self._first_hello = hello
        self._retry_group = group
        self.state = ServerState.WAIT_SECOND_CLIENT_HELLO

    def _check_second_hello(
        self, hello: ClientHello, offer: ClientHelloOffer, group: NamedGroup
    ) -> None:
        first = self._first_hello
        assert first is not None and self._cookie is not None
        if offer.cookie is None or not hmac.compare_digest(offer.cookie, self._cookie):
            raise illegal_parameter("second ClientHello does not echo the cookie")
        if [g for g, _ in offer.key_shares] != [self._retry_group] or group != self._retry_group:
            raise illegal_parameter("second ClientHello must offer exactly the requested share")
        if (
            hello.random != first.random
            or hello.legacy_session_id != first.legacy_session_id
            or hello.cipher_suites != first.cipher_suites
        ):
            raise illegal_parameter("second ClientHello changed more than RFC 8446 4.1.2 allows")

    # ----- the server's flight ----------------------------------------------------------

    def _encrypted_extensions(
        self, offer: ClientHelloOffer, transcript: Transcript, alpn: str | None
    ) -> bytes:
        heartbeat = offer.heartbeat_mode is not None and self.heartbeat_enabled
        if heartbeat:
            self.heartbeat_negotiated = True
        message = _encrypted_extensions_message(alpn, heartbeat, offer.server_name is not None)
        transcript.update(message)
        return message

    def _certificate_request(self, transcript: Transcript) -> bytes:
        w = Writer()
        push_uint16_list(w, tuple(sorted(TLS13_SCHEMES)))
        extensions: list[Extension] = [(ExtensionType.SIGNATURE_ALGORITHMS, w.getvalue())]
        if self._config.client_ca:
            # Lets a client with several certificates pick the one these CAs issued.
            w = Writer()
            push_authorities(w, tuple(ca.subject.public_bytes() for ca in self._config.client_ca))
            extensions.append((ExtensionType.CERTIFICATE_AUTHORITIES, w.getvalue()))
        w = Writer()
        push_certificate_request(w, CertificateRequest(b"", tuple(extensions)))
        message = handshake_message(HandshakeType.CERTIFICATE_REQUEST, w.getvalue())
        transcript.update(message)
        return message

    def _on_client_certificate(self, body: bytes, raw: bytes, now: float) -> None:
        assert self._transcript is not None
        limits = self.limits
        message = pull_certificate(
            Reader(body), limits.max_certificate_chain, limits.max_chain_length
        )
        if message.request_context:
            raise illegal_parameter("client Certificate with a request context we did not send")
        if any(entry.extensions for entry in message.entries):
            # RFC 8446 4.4.2: they answer extensions of our CertificateRequest, which asks for
            # none that a CertificateEntry may carry.
            raise TLSError(AlertDescription.UNSUPPORTED_EXTENSION, "CertificateEntry extension")
        self._transcript.update(raw)
        if not message.entries:
            if self._config.client_auth is ClientAuth.REQUIRED:
                raise TLSError(AlertDescription.CERTIFICATE_REQUIRED, "no client certificate")
            self.state = ServerState.WAIT_FINISHED
            return
        chain = load_chain([e.cert_data for e in message.entries])
        try:
            self.client_identity = verify_client_chain(chain, self._config.client_ca, now)
        except TLSError:
            if self._config.client_auth is ClientAuth.REQUIRED:
                raise
            self.client_identity = None  # optional: the connection goes on without identity
        self._client_leaf = chain[0]
        self.state = ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY

    def _on_client_certificate_verify(self, body: bytes, raw: bytes) -> None:
        assert self._transcript is not None and self._client_leaf is not None
        message = pull_certificate_verify(Reader(body))
        content = certificate_verify_content(self._transcript.digest(), server=False)
        if not verify_signature(
            self._client_leaf.public_key(), message.algorithm, content, message.signature
        ):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "client CertificateVerify is invalid")
        self._transcript.update(raw)
        self.state = ServerState.WAIT_FINISHED

    def _certificate_flight(
        self, transcript: Transcript, certified: CertifiedKey, scheme: SignatureScheme
    ) -> bytes:
        flight = _certificate_message(certified)
        transcript.update(flight)
        signature = sign_with(
            certified.signer, scheme, certificate_verify_content(transcript.digest(), server=True)
        )
        w = Writer()
        push_certificate_verify(w, CertificateVerify(scheme, signature))
        message = handshake_message(HandshakeType.CERTIFICATE_VERIFY, w.getvalue())
        transcript.update(message)
        return flight + message

    # ----- client Finished ----------------------------------------------------------------

    def _on_finished(self, body: bytes, raw: bytes, now: float) -> None:
        assert self._transcript and self._schedule and self._params and self._negotiated
        finished = pull_finished(Reader(body), self._params.hash_length)
        expected = self._expected_client_finished or self._schedule.finished_verify_data(
            self._client_hs_secret, self._transcript.digest()
        )
        if not hmac.compare_digest(finished.verify_data, expected):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "client Finished does not verify")
        self._transcript.update(raw)
        # Only now, with the client's Finished verified, is its traffic key reachable.
        self.set_read_secret(self._client_app_secret)
        self.state = ServerState.CONNECTED
        self._client_hs_secret = b""
        self._expected_client_finished = b""
        if self.client_identity is not None:
            self._negotiated = dataclasses.replace(
                self._negotiated, client_identity=self.client_identity
            )
        self.complete(self._negotiated)
        if self._config.ticket_keys is not None and self._tickets_wanted:
            self._send_ticket(now, self._transcript.digest())
        self._release_handshake_state()

    def _release_handshake_state(self) -> None:
        """Drop what only the handshake needed. An established connection may stay idle for
        minutes, thousands at a time: the parsed ClientHello (its JA4 is kept in `ja4`), the
        transcript hash and the secrets already turned into record keys are about 40 % of what
        the engine would otherwise hold for each one. Key updates use the record ciphers' own
        secrets; tickets are all sent by now, so the key schedule goes too; `negotiated` and
        `client_identity` stay."""
        self._transcript = None
        # Its handshake and master secrets are turned into record keys and (perhaps) a
        # ticket by now; kept, they would only be more secrets for a memory leak to expose.
        self._schedule = None
        self._first_hello = None
        self._cookie = None
        self._client_app_secret = b""
        self._client_leaf = None
        self.client_hello = None

    def _send_ticket(
        self, now: float, full_transcript_hash: bytes, entropy: bytes | None = None
    ) -> None:
        """One NewSessionTicket; `full_transcript_hash` covers the client's Finished.
        `entropy`: TICKET_ENTROPY fresh random bytes, drawn here when not given."""
        if entropy is None or len(entropy) != TICKET_ENTROPY:
            entropy = os.urandom(TICKET_ENTROPY)
        assert self._schedule and self._params and self._negotiated
        keys = self._config.ticket_keys
        assert keys is not None
        lifetime = session_lifetime_left(
            self._authenticated_at_ms, self.client_identity, self._config.ticket_lifetime, now
        )
        if lifetime <= 0:
            return  # the session may not be resumed any more: no ticket to extend it
        nonce = b"\x00"
        resumption_master = self._schedule.resumption_master_secret(full_transcript_hash)
        age_add = int.from_bytes(entropy[:4], "big")
        state = SessionState(
            version=ProtocolVersion.TLS13,
            cipher_suite=self._params.suite,
            secret=self._schedule.resumption_psk(resumption_master, nonce),
            issued_at_ms=int(now * 1000),
            lifetime_s=lifetime,
            age_add=age_add,
            extended_master_secret=True,
            alpn=self._negotiated.alpn_protocol or "",
            server_name=self._negotiated.server_name or "",
            client_identity=self.client_identity,
            authenticated_at_ms=self._authenticated_at_ms,
            trust_binding=trust_binding(self._config.client_auth, self._config.client_ca),
        )
        sealed = ticket_for(keys, state, now, entropy[4:])
        if sealed is None:
            return  # an identity too large for a ticket: this session is not resumed
        ticket = NewSessionTicket(lifetime, age_add, nonce, sealed, ())
        w = Writer()
        push_new_session_ticket(w, ticket)
        self.send_handshake(HandshakeType.NEW_SESSION_TICKET, w.getvalue())

    @property
    def negotiated(self) -> ev.HandshakeComplete | None:
        return self._negotiated if self.state is ServerState.CONNECTED else None


@functools.lru_cache(maxsize=256)
def _certificate_message(certified: CertifiedKey) -> bytes:
    """The Certificate message for a chain, encoded once per configured certificate."""
    entries = tuple(
        CertificateEntry(cert.public_bytes(Encoding.DER), ()) for cert in certified.chain
    )
    w = Writer()
    push_certificate(w, Certificate(b"", entries))
    return handshake_message(HandshakeType.CERTIFICATE, w.getvalue())


@functools.lru_cache(maxsize=256)
def _encrypted_extensions_message(alpn: str | None, heartbeat: bool, server_name: bool) -> bytes:
    """EncryptedExtensions: the same few bytes for every handshake that negotiates the same
    things, encoded once (the ALPN names come from the listener's own list)."""
    extensions: list[Extension] = []
    if alpn is not None:
        extensions.append((ExtensionType.ALPN, push_alpn((alpn,))))
    if heartbeat:
        extensions.append((ExtensionType.HEARTBEAT, bytes((HeartbeatMode.PEER_ALLOWED_TO_SEND,))))
    if server_name:
        extensions.append((ExtensionType.SERVER_NAME, b""))
    w = Writer()
    push_encrypted_extensions(w, EncryptedExtensions(tuple(extensions)))
    return handshake_message(HandshakeType.ENCRYPTED_EXTENSIONS, w.getvalue())
