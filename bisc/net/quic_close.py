"""How a bisc QUIC connection closes: the application error codes it sends in
CONNECTION_CLOSE, the reason phrase cut to MAX_REASON_BYTES, and the words for a
close that the peer or aioquic made (idle timeout, TLS alert, reason, error code).
"""

from __future__ import annotations

from enum import IntEnum

from aioquic.quic import events
from aioquic.quic.packet import QuicErrorCode

MAX_REASON_BYTES = 256


class CloseCode(IntEnum):
    """Application error codes in CONNECTION_CLOSE."""

    NORMAL = 0
    PROTOCOL = 1  # malformed or oversized control data
    AUTHENTICATION = 2
    OVERFLOW = 3  # the application did not keep up with control frames
    INTERNAL = 4


def truncate_reason(reason: str) -> str:
    return reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def is_tls_alert(error_code: int) -> bool:
    return 0x100 <= error_code <= 0x1FF  # CRYPTO_ERROR: 0x100 + the TLS alert (RFC 9001 4.8)


def describe_close(event: events.ConnectionTerminated) -> str:
    if event.error_code == QuicErrorCode.INTERNAL_ERROR and event.reason_phrase == "Idle timeout":
        return "idle timeout"
    if event.frame_type is not None and is_tls_alert(event.error_code):
        return f"TLS handshake failed (alert {event.error_code - 0x100}) {event.reason_phrase}".strip()
    if event.reason_phrase:
        return event.reason_phrase
    if event.error_code == QuicErrorCode.NO_ERROR:
        return "closed by peer"
    return f"closed with error {event.error_code:#x}"
