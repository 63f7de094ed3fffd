"""TLS alerts and the engine's one exception type, which carries its wire alert."""

from __future__ import annotations

from enum import IntEnum


class AlertLevel(IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(IntEnum):
    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    BAD_CERTIFICATE_STATUS_RESPONSE = 113
    UNKNOWN_PSK_IDENTITY = 115
    CERTIFICATE_REQUIRED = 116
    NO_APPLICATION_PROTOCOL = 120


class TLSError(Exception):
    """A protocol failure. `alert` is what goes on the wire before the connection closes."""

    def __init__(self, alert: AlertDescription, reason: str) -> None:
        super().__init__(f"{alert.name.lower()}: {reason}")
        self.alert = alert
        self.reason = reason


def decode_error(reason: str) -> TLSError:
    return TLSError(AlertDescription.DECODE_ERROR, reason)


def illegal_parameter(reason: str) -> TLSError:
    return TLSError(AlertDescription.ILLEGAL_PARAMETER, reason)


def unexpected_message(reason: str) -> TLSError:
    return TLSError(AlertDescription.UNEXPECTED_MESSAGE, reason)


def handshake_failure(reason: str) -> TLSError:
    return TLSError(AlertDescription.HANDSHAKE_FAILURE, reason)
