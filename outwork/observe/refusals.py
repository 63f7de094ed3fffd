"""Every reason the gateway refuses a request or a connection: one closed set.

Each member is one label value of `outwork_requests_refused_total{reason=...}`, declared at 0
from the start (as Envoy declares its stats), so that an alert can watch a reason before it ever
happens and a typo cannot invent a new series. `Metrics.refused` is keyed by `Refusal` and mypy
refuses a plain string there. A refusal made from an HTTP status (an `HTTPError` of the request
reader or of the HTTP/2 head checks) goes through `for_status`, which knows every status the
gateway refuses with; the README's table lists every member (a test compares them).
"""

from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    # A request the gateway answered itself, by the status it answered with.
    BAD_REQUEST = "400"
    METHOD_NOT_ALLOWED = "405"  # CONNECT (the gateway is no forward proxy)
    REQUEST_TIMEOUT = "408"
    CONTENT_TOO_LARGE = "413"
    URI_TOO_LONG = "414"
    EXPECTATION_FAILED = "417"
    HEADER_FIELDS_TOO_LARGE = "431"
    NOT_IMPLEMENTED = "501"
    VERSION_NOT_SUPPORTED = "505"
    # A client too slow: a request head or body not received in time, an HTTP/2 connection
    # whose header block, output or idleness passed its deadline.
    TIMEOUT = "timeout"
    # Connection caps (refused at accept) and stalls.
    MAX_CONNECTIONS = "max_connections"
    MAX_CONNECTIONS_PER_IP = "max_connections_per_ip"
    PAUSED_UPSTREAMS_PER_ADDRESS = "paused_upstreams_per_address"
    # HTTP/2.
    H2_PROTOCOL_ERROR = "h2_protocol_error"
    H2_REFUSED_STREAM = "h2_refused_stream"
    H2_STALLED_STREAM = "h2_stalled_stream"
    H2_RAPID_RESET = "h2_rapid_reset"
    H2_CONTINUATION_FLOOD = "h2_continuation_flood"
    H2_SETTINGS_FLOOD = "h2_settings_flood"
    H2_PING_FLOOD = "h2_ping_flood"
    H2_EMPTY_FRAMES_FLOOD = "h2_empty_frames_flood"
    # A route's filter failed (raised, or waited where it may not): 500.
    FILTER_ERROR = "filter_error"
    # Security policy steps (outwork/filters/): each its own reason.
    ACCESS_DENIED = "access_denied"  # access: the client address is not allowed (403)
    UNAUTHENTICATED = "unauthenticated"  # authenticate: no valid credential (401)
    CREDENTIAL_REVOKED = "credential_revoked"  # issued before an incident (401)
    FORBIDDEN = "forbidden"  # authorize: the identity lacks a scope or claim (403)
    RATE_LIMITED = "rate_limited"  # rate_limit: over the rate (429)
    RATE_LIMIT_STORE = "rate_limit_store"  # the limit's store failed, on_store_error: deny (503)
    THREAT_JSON = "threat_json"  # threat_protection: a JSON body past a limit (400/413)
    THREAT_XML = "threat_xml"  # threat_protection: an XML body past a limit or with a DTD
    # threat_protection: a body it cannot inspect (another type with other_types: refuse, or
    # compressed) (415)
    THREAT_MEDIA_TYPE = "threat_media_type"
    CORS_REJECTED = "cors_rejected"  # a CORS preflight from an origin not allowed (403)
    WAF_BLOCKED = "waf_blocked"  # the WAF's anomaly score reached its threshold (403)
    # A response body past a filter's inspection limit, with `on_response_body_limit: reject`,
    # or past what held responses may hold together (502): the upstream's response is dropped,
    # not passed uninspected.
    RESPONSE_TOO_LARGE = "response_too_large"
    BANNED = "banned"  # a banned peer, refused at accept
    # The admin listener.
    ADMIN_EVICTED = "admin_evicted"
    ADMIN_HOST = "admin_host"
    ADMIN_UNAUTHORIZED = "admin_unauthorized"


_BY_STATUS = {int(member.value): member for member in Refusal if member.value.isdigit()}


def for_status(status: int) -> Refusal:
    """The refusal counted for a request answered `status` by the gateway's own checks.
    Raises KeyError for a status the gateway never refuses with (a bug: see the test that
    walks every `HTTPError` the code raises)."""
    return _BY_STATUS[status]


def for_flood(attack: str) -> Refusal:
    """The refusal counted for an HTTP/2 flood (`h2_guard.Flood.attack`)."""
    return Refusal("h2_" + attack)
