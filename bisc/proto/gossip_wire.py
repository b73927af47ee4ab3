"""Gossip wire messages and their msgpack encoding.

Every frame is one msgpack array whose first element is a small integer type
tag, followed by that message's fields in a fixed order:

    JoinRequest       [0, peer_data]
    ForwardJoin       [1, joiner, joiner_data, ttl]
    NeighborRequest   [2, high_priority, peer_data]
    NeighborReply     [3, accepted, peer_data]
    DisconnectNotice  [4, alive]
    ShuffleRequest    [5, origin, origin_data, ttl, [[peer, data], ...]]
    ShuffleReply      [6, [[peer, data], ...]]
    EagerPush         [7, msg_id, hops, payload]
    IHave             [8, [[msg_id, hops], ...]]
    Graft             [9, [msg_id, ...]]
    Prune             [10]

Decoding is strict: a frame over MAX_FRAME_SIZE, an unknown tag, a wrong
field count, a wrong type (a bool is not an int here), an id of the wrong
length or a list over its limit raises GossipError, and nothing else. The
limits below are protocol constants, not configuration, so two peers with
different settings still agree on what a valid frame is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from bisc.errors import BiscError

PeerId = bytes  # a 32-byte Ed25519 public key in production; any short bytes in the simulator
MessageId = bytes  # first MESSAGE_ID_SIZE bytes of SHA-256(payload)

# Must fit one control frame of the transport (bisc.net.transport.MAX_CONTROL_FRAME).
MAX_FRAME_SIZE = 64 * 1024
MESSAGE_ID_SIZE = 16
MAX_PEER_ID_SIZE = 64
MAX_PEER_DATA_SIZE = 1024  # wire ceiling; GossipConfig.max_peer_data_size is the enforced limit
MAX_SHUFFLE_ENTRIES = 64
MAX_IHAVE_ENTRIES = 1024
MAX_GRAFT_IDS = 1024
MAX_TTL = 255
MAX_HOPS = 0xFFFF
# Bytes an EagerPush adds around its payload: array header, tag, id, hops and the bin header.
EAGER_PUSH_OVERHEAD = 32


class GossipError(BiscError, ValueError):
    """A gossip frame, message or setting that is invalid or over a limit."""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    peer_data: bytes


@dataclass(frozen=True, slots=True)
class ForwardJoin:
    joiner: PeerId
    joiner_data: bytes
    ttl: int


@dataclass(frozen=True, slots=True)
class NeighborRequest:
    high_priority: bool
    peer_data: bytes


@dataclass(frozen=True, slots=True)
class NeighborReply:
    accepted: bool
    peer_data: bytes


@dataclass(frozen=True, slots=True)
class DisconnectNotice:
    alive: bool  # False: the sender is leaving for good; True: keep it as a passive peer


@dataclass(frozen=True, slots=True)
class ShuffleRequest:
    origin: PeerId
    origin_data: bytes
    ttl: int
    entries: tuple[tuple[PeerId, bytes], ...]


@dataclass(frozen=True, slots=True)
class ShuffleReply:
    entries: tuple[tuple[PeerId, bytes], ...]


@dataclass(frozen=True, slots=True)
class EagerPush:
    msg_id: MessageId
    hops: int  # links travelled when it arrives, counting the one it arrives on
    payload: bytes


@dataclass(frozen=True, slots=True)
class IHave:
    entries: tuple[tuple[MessageId, int], ...]  # (msg_id, hops it would arrive with)


@dataclass(frozen=True, slots=True)
class Graft:
    msg_ids: tuple[MessageId, ...]  # may be empty: "push eagerly to me from now on"


@dataclass(frozen=True, slots=True)
class Prune:
    pass


WireMessage = (
    JoinRequest
    | ForwardJoin
    | NeighborRequest
    | NeighborReply
    | DisconnectNotice
    | ShuffleRequest
    | ShuffleReply
    | EagerPush
    | IHave
    | Graft
    | Prune
)

TAG_JOIN, TAG_FORWARD_JOIN, TAG_NEIGHBOR, TAG_NEIGHBOR_REPLY, TAG_DISCONNECT = 0, 1, 2, 3, 4
TAG_SHUFFLE, TAG_SHUFFLE_REPLY, TAG_EAGER_PUSH, TAG_IHAVE, TAG_GRAFT, TAG_PRUNE = 5, 6, 7, 8, 9, 10


def message_id(payload: bytes) -> MessageId:
    """The id of a broadcast payload; a receiver recomputes it, so an id cannot lie about its payload."""
    return hashlib.sha256(payload).digest()[:MESSAGE_ID_SIZE]


# --- encoding ---------------------------------------------------------------------------------------


def encode(message: WireMessage) -> bytes:
    """The frame for `message`; GossipError if a field is invalid or the frame exceeds MAX_FRAME_SIZE."""
    try:
        frame: bytes = msgpack.packb(_to_fields(message), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise GossipError(f"cannot encode {type(message).__name__}: {exc}") from exc
    if len(frame) > MAX_FRAME_SIZE:
        raise GossipError(f"gossip frame of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    # Validating by decoding keeps one definition of "valid" for both directions.
    decode(frame)
    return frame


def _to_fields(message: WireMessage) -> list[Any]:
    match message:
        case JoinRequest(peer_data):
            return [TAG_JOIN, peer_data]
        case ForwardJoin(joiner, joiner_data, ttl):
            return [TAG_FORWARD_JOIN, joiner, joiner_data, ttl]
        case NeighborRequest(high_priority, peer_data):
            return [TAG_NEIGHBOR, high_priority, peer_data]
        case NeighborReply(accepted, peer_data):
            return [TAG_NEIGHBOR_REPLY, accepted, peer_data]
        case DisconnectNotice(alive):
            return [TAG_DISCONNECT, alive]
        case ShuffleRequest(origin, origin_data, ttl, entries):
            return [TAG_SHUFFLE, origin, origin_data, ttl, [list(e) for e in entries]]
        case ShuffleReply(entries):
            return [TAG_SHUFFLE_REPLY, [list(e) for e in entries]]
        case EagerPush(msg_id, hops, payload):
            return [TAG_EAGER_PUSH, msg_id, hops, payload]
        case IHave(entries):
            return [TAG_IHAVE, [list(e) for e in entries]]
        case Graft(msg_ids):
            return [TAG_GRAFT, list(msg_ids)]
        case Prune():
            return [TAG_PRUNE]
    raise GossipError(f"not a gossip message: {type(message).__name__}")


def encode_eager_push(msg_id: MessageId, hops: int, payload: bytes) -> bytes:
    """Fast path for the one message sent to many peers; same bytes as encode(EagerPush(...))."""
    _check_message_id(msg_id)
    _check_int(hops, MAX_HOPS, "hops")
    frame: bytes = msgpack.packb([TAG_EAGER_PUSH, msg_id, hops, payload], use_bin_type=True)
    if len(frame) > MAX_FRAME_SIZE:
        raise GossipError(f"gossip frame of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    return frame


# --- decoding ---------------------------------------------------------------------------------------


def decode(frame: bytes) -> WireMessage:
    """The message in `frame`; GossipError for anything that is not exactly one valid message."""
    if len(frame) > MAX_FRAME_SIZE:
        raise GossipError(f"gossip frame of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    try:
        fields = msgpack.unpackb(
            frame,
            use_list=True,
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_IHAVE_ENTRIES,
            max_map_len=0,
            max_ext_len=0,
        )
    except (msgpack.UnpackException, ValueError) as exc:  # every msgpack decoding error is one of these
        raise GossipError(f"undecodable gossip frame: {exc}") from exc
    if not isinstance(fields, list) or not fields or type(fields[0]) is not int:
        raise GossipError("gossip frame is not a tagged array")
    decoder = _DECODERS.get(fields[0])
    if decoder is None:
        raise GossipError(f"unknown gossip message tag {fields[0]}")
    arity, build = decoder
    if len(fields) != arity:
        raise GossipError(f"gossip message tag {fields[0]} needs {arity} fields, got {len(fields)}")
    return build(fields)


def _check_int(value: object, maximum: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise GossipError(f"{what} must be an int in 0..{maximum}")
    return value


def _check_bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise GossipError(f"{what} must be a bool")
    return value


def _check_bytes(value: object, max_size: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) > max_size:
        raise GossipError(f"{what} must be bytes of at most {max_size}")
    return value


def _check_peer_id(value: object) -> PeerId:
    if type(value) is not bytes or not 1 <= len(value) <= MAX_PEER_ID_SIZE:
        raise GossipError(f"peer id must be 1..{MAX_PEER_ID_SIZE} bytes")
    return value


def _check_message_id(value: object) -> MessageId:
    if type(value) is not bytes or len(value) != MESSAGE_ID_SIZE:
        raise GossipError(f"message id must be {MESSAGE_ID_SIZE} bytes")
    return value


def _check_list(value: object, max_len: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_len:
        raise GossipError(f"{what} must be a list of at most {max_len}")
    return value


def _peer_entries(value: object) -> tuple[tuple[PeerId, bytes], ...]:
    entries = []
    for item in _check_list(value, MAX_SHUFFLE_ENTRIES, "peer entries"):
        pair = _check_list(item, 2, "peer entry")
        if len(pair) != 2:
            raise GossipError("peer entry must be [peer, data]")
        entries.append((_check_peer_id(pair[0]), _check_bytes(pair[1], MAX_PEER_DATA_SIZE, "peer data")))
    return tuple(entries)


def _ihave_entries(value: object) -> tuple[tuple[MessageId, int], ...]:
    entries = []
    for item in _check_list(value, MAX_IHAVE_ENTRIES, "ihave entries"):
        pair = _check_list(item, 2, "ihave entry")
        if len(pair) != 2:
            raise GossipError("ihave entry must be [msg_id, hops]")
        entries.append((_check_message_id(pair[0]), _check_int(pair[1], MAX_HOPS, "hops")))
    return tuple(entries)


def _peer_data(value: object) -> bytes:
    return _check_bytes(value, MAX_PEER_DATA_SIZE, "peer data")


_DECODERS: dict[int, tuple[int, Callable[[list[Any]], WireMessage]]] = {
    TAG_JOIN: (2, lambda f: JoinRequest(_peer_data(f[1]))),
    TAG_FORWARD_JOIN: (
        4,
        lambda f: ForwardJoin(_check_peer_id(f[1]), _peer_data(f[2]), _check_int(f[3], MAX_TTL, "ttl")),
    ),
    TAG_NEIGHBOR: (3, lambda f: NeighborRequest(_check_bool(f[1], "high_priority"), _peer_data(f[2]))),
    TAG_NEIGHBOR_REPLY: (3, lambda f: NeighborReply(_check_bool(f[1], "accepted"), _peer_data(f[2]))),
    TAG_DISCONNECT: (2, lambda f: DisconnectNotice(_check_bool(f[1], "alive"))),
    TAG_SHUFFLE: (
        5,
        lambda f: ShuffleRequest(
            _check_peer_id(f[1]), _peer_data(f[2]), _check_int(f[3], MAX_TTL, "ttl"), _peer_entries(f[4])
        ),
    ),
    TAG_SHUFFLE_REPLY: (2, lambda f: ShuffleReply(_peer_entries(f[1]))),
    TAG_EAGER_PUSH: (
        4,
        lambda f: EagerPush(
            _check_message_id(f[1]),
            _check_int(f[2], MAX_HOPS, "hops"),
            _check_bytes(f[3], MAX_FRAME_SIZE, "payload"),
        ),
    ),
    TAG_IHAVE: (2, lambda f: IHave(_ihave_entries(f[1]))),
    TAG_GRAFT: (
        2,
        lambda f: Graft(tuple(_check_message_id(i) for i in _check_list(f[1], MAX_GRAFT_IDS, "graft ids"))),
    ),
    TAG_PRUNE: (1, lambda f: Prune()),
}
