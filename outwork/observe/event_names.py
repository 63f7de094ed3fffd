"""The catalogue of security event names, a leaf module: the config loader checks `ban.weights`
against it, and it must not pull in the event log (and the metrics behind it) to do so."""

from __future__ import annotations

from outwork.observe.refusals import Refusal

# Every event the gateway writes (README, "Security events"): what `ban.weights` may name.
EVENTS = frozenset(
    {
        "tls.heartbleed_probe",
        "tls.handshake_failed",
        "upstream.tls_failed",
        "conn.stalled_upstream",
        "conn.limit_reached",
        "h2.rapid_reset",
        "h2.continuation_flood",
        "h2.settings_flood",
        "h2.ping_flood",
        "h2.empty_frames_flood",
        "h2.protocol_error",
        "h2.stalled_stream",
        "rate_limit.store_error",
        "rate_limit.table_full",
        "waf.blocked",
        "waf.response_blocked",
        "waf.detected",
        "waf.report",
        "ban.added",
        "ban.refused",
        "ban.store_error",
        "admin.host_refused",
        "config.reload_applied",
        "config.reload_refused",
    }
    | {"policy." + refusal.value for refusal in Refusal}
)
