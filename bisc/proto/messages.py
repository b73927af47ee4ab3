"""Channel messages: what peers broadcast to each other over gossip.

Every message travels in a signed envelope: the origin's EndpointId, a
per-origin sequence number, a timestamp, the message kind and body, and an
Ed25519 signature over all of it plus the channel's topic id (so a message
cannot be replayed into another channel). Encoding is msgpack with strict,
bounded decoding: a malformed or oversized envelope is a MessageError.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from bisc.errors import BiscError
from bisc.identity import ENDPOINT_ID_SIZE, EndpointId, Identity

ENVELOPE_VERSION = 1
MAX_ENVELOPE = 8 * 1024
MAX_NAME = 64
MAX_CHAT = 4000  # characters
MAX_FILE_NAME = 255
MAX_ADDRS = 16
MAX_CAPABILITIES = 16
CHAT_ID_SIZE = 16
_SIGN_TAG = b"bisc-msg-v1"


class MessageError(BiscError, ValueError):
    """A channel message that is malformed, too large or wrongly signed."""


class Kind(enum.IntEnum):
    PEER_ANNOUNCE = 1
    PEER_LEAVE = 2
    HEARTBEAT = 3
    MEDIA_STATE = 4
    FILE_ANNOUNCE = 5
    TICKET_REFRESH = 6
    CHAT = 7


def _str(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise MessageError(f"{what} must be text of at most {limit} characters")
    return value


def _int(value: Any, what: str, limit: int = 2**64 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise MessageError(f"{what} must be an integer in 0..{limit}")
    return value


def _bytes(value: Any, what: str, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise MessageError(f"{what} must be {size} bytes")
    return value


def _addrs(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list) or len(value) > MAX_ADDRS:
        raise MessageError(f"addrs must be a list of at most {MAX_ADDRS}")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            raise MessageError("an address is [host, port]")
        out.append((_str(item[0], "host", 64), _int(item[1], "port", 0xFFFF)))
    return tuple(out)


@dataclass(frozen=True)
class PeerInfo:
    """Who a peer is and how to reach it: sent in announces and heartbeats."""

    name: str
    capabilities: tuple[str, ...] = ()
    addrs: tuple[tuple[str, int], ...] = ()

    def body(self) -> list[Any]:
        return [self.name, list(self.capabilities), [list(a) for a in self.addrs]]

    @classmethod
    def from_body(cls, body: list[Any]) -> PeerInfo:
        if len(body) != 3:
            raise MessageError("peer info has 3 fields")
        caps = body[1]
        if not isinstance(caps, list) or len(caps) > MAX_CAPABILITIES:
            raise MessageError("capabilities must be a short list")
        return cls(
            _str(body[0], "name", MAX_NAME),
            tuple(_str(c, "capability", 32) for c in caps),
            _addrs(body[2]),
        )


@dataclass(frozen=True)
class PeerAnnounce:
    kind: ClassVar[Kind] = Kind.PEER_ANNOUNCE
    info: PeerInfo

    def body(self) -> list[Any]:
        return self.info.body()

    @classmethod
    def from_body(cls, body: list[Any]) -> PeerAnnounce:
        return cls(PeerInfo.from_body(body))


@dataclass(frozen=True)
class Heartbeat:
    """Periodic liveness; carries the peer info so late joiners learn it."""

    kind: ClassVar[Kind] = Kind.HEARTBEAT
    info: PeerInfo

    def body(self) -> list[Any]:
        return self.info.body()

    @classmethod
    def from_body(cls, body: list[Any]) -> Heartbeat:
        return cls(PeerInfo.from_body(body))


@dataclass(frozen=True)
class PeerLeave:
    kind: ClassVar[Kind] = Kind.PEER_LEAVE

    def body(self) -> list[Any]:
        return []

    @classmethod
    def from_body(cls, body: list[Any]) -> PeerLeave:
        if body:
            raise MessageError("PeerLeave has no fields")
        return cls()


@dataclass(frozen=True)
class MediaState:
    kind: ClassVar[Kind] = Kind.MEDIA_STATE
    audio_muted: bool = False
    video_enabled: bool = False
    screen_sharing: bool = False
    app_audio_sharing: bool = False

    def body(self) -> list[Any]:
        return [self.audio_muted, self.video_enabled, self.screen_sharing, self.app_audio_sharing]

    @classmethod
    def from_body(cls, body: list[Any]) -> MediaState:
        if len(body) != 4 or not all(isinstance(b, bool) for b in body):
            raise MessageError("MediaStateUpdate has 4 booleans")
        return cls(*body)


@dataclass(frozen=True)
class FileAnnounce:
    kind: ClassVar[Kind] = Kind.FILE_ANNOUNCE
    file_hash: bytes
    name: str
    size: int
    chunk_count: int

    def body(self) -> list[Any]:
        return [self.file_hash, self.name, self.size, self.chunk_count]

    @classmethod
    def from_body(cls, body: list[Any]) -> FileAnnounce:
        if len(body) != 4:
            raise MessageError("FileAnnounce has 4 fields")
        return cls(
            _bytes(body[0], "file hash", 32),
            _str(body[1], "file name", MAX_FILE_NAME),
            _int(body[2], "file size"),
            _int(body[3], "chunk count", 2**32 - 1),
        )


@dataclass(frozen=True)
class TicketRefresh:
    kind: ClassVar[Kind] = Kind.TICKET_REFRESH
    ticket: str

    def body(self) -> list[Any]:
        return [self.ticket]

    @classmethod
    def from_body(cls, body: list[Any]) -> TicketRefresh:
        if len(body) != 1:
            raise MessageError("TicketRefresh has 1 field")
        return cls(_str(body[0], "ticket", 4096))


@dataclass(frozen=True)
class Chat:
    kind: ClassVar[Kind] = Kind.CHAT
    text: str
    chat_id: bytes = field(default_factory=lambda: os.urandom(CHAT_ID_SIZE))

    def body(self) -> list[Any]:
        return [self.chat_id, self.text]

    @classmethod
    def from_body(cls, body: list[Any]) -> Chat:
        if len(body) != 2:
            raise MessageError("ChatMessage has 2 fields")
        return cls(_str(body[1], "chat text", MAX_CHAT), _bytes(body[0], "chat id", CHAT_ID_SIZE))


Message = PeerAnnounce | PeerLeave | Heartbeat | MediaState | FileAnnounce | TicketRefresh | Chat

_DECODERS: dict[int, Any] = {
    cls.kind: cls
    for cls in (PeerAnnounce, PeerLeave, Heartbeat, MediaState, FileAnnounce, TicketRefresh, Chat)
}


@dataclass(frozen=True)
class Envelope:
    """A verified message from `origin`."""

    origin: EndpointId
    seq: int
    timestamp_ms: int
    message: Message


def _signed_part(topic_id: bytes, origin: bytes, seq: int, ts: int, kind: int, body: list[Any]) -> bytes:
    return bytes(msgpack.packb([_SIGN_TAG, topic_id, origin, seq, ts, kind, body], use_bin_type=True))


def seal(identity: Identity, topic_id: bytes, seq: int, timestamp_ms: int, message: Message) -> bytes:
    """Sign and encode a message; MessageError if it is too large to send."""
    origin = identity.endpoint_id.key
    body = message.body()
    signature = identity.sign(_signed_part(topic_id, origin, seq, timestamp_ms, message.kind, body))
    data = bytes(
        msgpack.packb(
            [ENVELOPE_VERSION, origin, seq, timestamp_ms, int(message.kind), body, signature],
            use_bin_type=True,
        )
    )
    if len(data) > MAX_ENVELOPE:
        raise MessageError(f"message of {len(data)} bytes exceeds the {MAX_ENVELOPE}-byte limit")
    return data


def open_envelope(topic_id: bytes, data: bytes) -> Envelope:
    """Decode and verify; MessageError for anything malformed or forged."""
    if len(data) > MAX_ENVELOPE:
        raise MessageError(f"message of {len(data)} bytes exceeds the {MAX_ENVELOPE}-byte limit")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_array_len=64,
            max_map_len=0,
            max_str_len=MAX_ENVELOPE,
            max_bin_len=MAX_ENVELOPE,
        )
    except Exception as exc:  # msgpack raises a family of unrelated types
        raise MessageError(f"undecodable message: {type(exc).__name__}") from None
    if not isinstance(raw, list) or len(raw) != 7:
        raise MessageError("an envelope has 7 fields")
    version, origin, seq, ts, kind, body, signature = raw
    if version != ENVELOPE_VERSION:
        raise MessageError(f"unsupported envelope version {version!r}")
    origin = _bytes(origin, "origin", ENDPOINT_ID_SIZE)
    seq = _int(seq, "seq")
    ts = _int(ts, "timestamp")
    signature = _bytes(signature, "signature", 64)
    if not isinstance(body, list):
        raise MessageError("message body must be a list")
    decoder = _DECODERS.get(kind) if isinstance(kind, int) else None
    if decoder is None:
        raise MessageError(f"unknown message kind {kind!r}")
    origin_id = EndpointId(origin)
    if not origin_id.verify(signature, _signed_part(topic_id, origin, seq, ts, kind, body)):
        raise MessageError("bad signature")
    return Envelope(origin_id, seq, ts, decoder.from_body(body))
