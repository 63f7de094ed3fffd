"""Session tickets: sealing round-trips, and nothing a peer sends as a ticket raises."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.tls.alerts import TLSError
from outwork.tls.clientauth import ClientAuth, ClientIdentity, trust_binding
from outwork.tls.tickets import (
    MAX_TICKET,
    RotatingTicketKeys,
    SessionState,
    open_ticket,
    seal_ticket,
    session_lifetime_left,
    still_authenticated,
)
from tests.tls.pki import CertAuthority

NOW = 1_800_000_000.0
KEYS = RotatingTicketKeys()

states = st.builds(
    SessionState,
    version=st.sampled_from([0x0303, 0x0304]),
    cipher_suite=st.integers(0, 0xFFFF),
    secret=st.binary(min_size=32, max_size=64),
    issued_at_ms=st.integers(int(NOW * 1000) - 3_600_000, int(NOW * 1000)),
    lifetime_s=st.integers(3600, 7 * 24 * 3600),
    age_add=st.integers(0, 2**32 - 1),
    extended_master_secret=st.booleans(),
    alpn=st.text(alphabet=st.characters(max_codepoint=255), max_size=20),
    server_name=st.from_regex(r"[a-z0-9.-]{0,40}", fullmatch=True),
    client_identity=st.none()
    | st.builds(
        ClientIdentity,
        st.text(max_size=60),
        st.lists(st.text(max_size=30), max_size=4).map(tuple),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        st.integers(0, 2**40),
    ),
    authenticated_at_ms=st.integers(0, 2**63 - 1),
    trust_binding=st.binary(max_size=16),
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_seal_then_open_gives_the_state_back(state: SessionState) -> None:
    assert open_ticket(KEYS, seal_ticket(KEYS, state, NOW), NOW) == state


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_as_a_ticket_are_refused_quietly(data: bytes) -> None:
    assert open_ticket(KEYS, data, NOW) is None


@settings(max_examples=200, deadline=None)
@given(states, st.integers(0, 10_000), st.integers(1, 255))
def test_a_tampered_ticket_is_refused(state: SessionState, position: int, flip: int) -> None:
    ticket = bytearray(seal_ticket(KEYS, state, NOW))
    ticket[position % len(ticket)] ^= flip
    assert open_ticket(KEYS, bytes(ticket), NOW) is None


@given(
    st.text(min_size=1),
    st.lists(st.text(), max_size=5),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**63 - 1),
)
def test_client_identity_round_trips(
    subject: str, sans: list[str], digest: bytes, not_after: int
) -> None:
    # Any character, newlines and NULs included: no field can spill into the next.
    identity = ClientIdentity(subject, tuple(sans), digest.hex(), not_after)
    assert ClientIdentity.decode(identity.encode()) == identity


@given(st.binary(max_size=300))
def test_any_bytes_as_an_identity_decode_or_are_a_decode_error(data: bytes) -> None:
    try:
        identity = ClientIdentity.decode(data)
    except TLSError:
        return
    assert identity.encode() == data


def test_a_newline_in_the_subject_cannot_forge_the_fields_after_it() -> None:
    forger = ClientIdentity("CN=x\n" + "a" * 64 + "\nDNS:admin.example", (), "b" * 64)
    decoded = ClientIdentity.decode(forger.encode())
    assert decoded == forger
    assert decoded.fingerprint_sha256 == "b" * 64 and decoded.sans == ()


def test_ticket_over_the_size_cap_is_refused_even_if_genuine() -> None:
    state = SessionState(0x0304, 0x1301, bytes(32), int(NOW * 1000), 3600, 1, True, "", "x")
    huge = ClientIdentity("CN=" + "x" * MAX_TICKET, (), "00" * 32)
    ticket = seal_ticket(KEYS, dataclasses.replace(state, client_identity=huge), NOW)
    assert len(ticket) > MAX_TICKET
    assert open_ticket(KEYS, ticket, NOW) is None
    assert open_ticket(KEYS, seal_ticket(KEYS, state, NOW), NOW) == state


@given(
    st.integers(0, 2**41),
    st.none() | st.integers(0, 2**34),
    st.integers(1, 7 * 24 * 3600),
    st.floats(0, 2**33, allow_nan=False),
)
def test_a_session_never_outlives_its_authentication_or_its_certificate(
    authenticated_at_ms: int, not_after: int | None, lifetime: int, now: float
) -> None:
    identity = None if not_after is None else ClientIdentity("CN=a", (), "00" * 32, not_after)
    left = session_lifetime_left(authenticated_at_ms, identity, lifetime, now)
    now_ms = int(now * 1000)  # tickets keep time in milliseconds
    assert left <= lifetime
    assert now_ms + left * 1000 <= authenticated_at_ms + lifetime * 1000
    if identity is not None:
        assert now_ms + left * 1000 <= identity.not_after * 1000
    state = SessionState(
        0x0304, 0x1301, bytes(32), 0, lifetime, 0, True, "", "", identity, authenticated_at_ms, b"t"
    )
    assert still_authenticated(state, b"t", lifetime, now) == (
        left > 0 and authenticated_at_ms <= now_ms + 1000
    )
    assert not still_authenticated(state, b"other settings", lifetime, now)


def test_the_trust_binding_follows_the_settings_not_the_objects() -> None:
    a, b = CertAuthority("binding A").cert, CertAuthority("binding B").cert
    binding = trust_binding(ClientAuth.REQUIRED, (a,))
    # Another worker (another tuple, same content) agrees; any change of settings does not.
    assert trust_binding(ClientAuth.REQUIRED, tuple([a])) == binding
    assert trust_binding(ClientAuth.OPTIONAL, (a,)) != binding
    assert trust_binding(ClientAuth.REQUIRED, (b,)) != binding
    assert trust_binding(ClientAuth.REQUIRED, (a, b)) != binding
    assert trust_binding(ClientAuth.NONE, ()) != binding


def test_dropping_keys_made_before_an_incident_refuses_older_tickets() -> None:
    keys = RotatingTicketKeys(period=100)
    state = SessionState(0x0304, 0x1301, bytes(32), int(NOW * 1000), 3600, 1, True, "", "x")
    before = seal_ticket(keys, state, NOW)
    keys.drop_before(NOW + 1, NOW + 2)
    assert open_ticket(keys, before, NOW + 3) is None
    after = seal_ticket(keys, state, NOW + 3)
    assert open_ticket(keys, after, NOW + 4) == state
