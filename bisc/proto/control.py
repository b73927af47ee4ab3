"""Frames on a connection's control stream, and channel admission.

After the transport has authenticated both keys, the dialer asks to join a
channel: JOIN(topic id, proof). The proof is an HMAC keyed by the channel
secret over the connection's binding, so it shows the dialer holds the
secret without revealing it, and cannot be replayed on another connection.
The acceptor answers WELCOME(its own proof, a snapshot of signed member
announcements) or closes the connection with the same reason whether the
topic is unknown or the proof is wrong: a peer without the secret learns
nothing about the channel. Then GOSSIP frames carry the gossip protocol.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import msgpack

from bisc.net.transport import MAX_CONTROL_FRAME
from bisc.proto.messages import MessageError

PROOF_SIZE = 32
INCARNATION_SIZE = 16
MAX_SNAPSHOT = 512
DENIED_REASON = "admission denied"
_PROOF_TAG = b"bisc-admit-v1"


class ControlKind(enum.IntEnum):
    JOIN = 1
    WELCOME = 2
    GOSSIP = 3
    DIRECT = 4  # one sealed envelope for this peer only (a leaving peer's last words)
    MEDIA = 5  # media negotiation and reports (bisc.proto.media_control)


def admission_proof(secret: bytes, binding: bytes, role: str) -> bytes:
    """HMAC(secret, tag | role | binding); role is "dialer" or "acceptor"."""
    return hmac.new(secret, _PROOF_TAG + role.encode() + b"\0" + binding, hashlib.sha256).digest()


def check_proof(secret: bytes, binding: bytes, role: str, proof: bytes) -> bool:
    return hmac.compare_digest(admission_proof(secret, binding, role), proof)


@dataclass(frozen=True)
class Join:
    topic_id: bytes
    proof: bytes
    # Random per node start: tells a restarted peer's new link from a
    # simultaneous second dial by the same running peer.
    incarnation: bytes = bytes(INCARNATION_SIZE)


@dataclass(frozen=True)
class Welcome:
    proof: bytes
    snapshot: tuple[bytes, ...]  # sealed envelopes (announcements of known members)
    incarnation: bytes = bytes(INCARNATION_SIZE)


@dataclass(frozen=True)
class Gossip:
    data: bytes


@dataclass(frozen=True)
class Direct:
    sealed: bytes


@dataclass(frozen=True)
class Media:
    data: bytes  # one bisc.proto.media_control message


ControlFrame = Join | Welcome | Gossip | Direct | Media


def encode_control(frame: ControlFrame) -> bytes:
    fields: list[Any]
    if isinstance(frame, Join):
        fields = [ControlKind.JOIN, frame.topic_id, frame.proof, frame.incarnation]
    elif isinstance(frame, Welcome):
        snapshot: list[bytes] = []
        budget = MAX_CONTROL_FRAME - 256
        for env in frame.snapshot[:MAX_SNAPSHOT]:
            if budget - len(env) - 8 < 0:
                break
            budget -= len(env) + 8
            snapshot.append(env)
        fields = [ControlKind.WELCOME, frame.proof, snapshot, frame.incarnation]
    elif isinstance(frame, Gossip):
        fields = [ControlKind.GOSSIP, frame.data]
    elif isinstance(frame, Media):
        fields = [ControlKind.MEDIA, frame.data]
    else:
        fields = [ControlKind.DIRECT, frame.sealed]
    return bytes(msgpack.packb(fields, use_bin_type=True))


def decode_control(data: bytes) -> ControlFrame:
    """Parse one control frame; MessageError if malformed."""
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            max_array_len=MAX_SNAPSHOT + 3,
            max_map_len=0,
            max_str_len=1024,
            max_bin_len=MAX_CONTROL_FRAME,
        )
    except Exception as exc:  # msgpack raises a family of unrelated types
        raise MessageError(f"undecodable control frame: {type(exc).__name__}") from None
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], int):
        raise MessageError("a control frame is [kind, ...]")
    kind, rest = raw[0], raw[1:]
    if kind == ControlKind.JOIN and len(rest) == 3 and all(isinstance(x, bytes) for x in rest):
        if len(rest[0]) == 32 and len(rest[1]) == PROOF_SIZE and len(rest[2]) == INCARNATION_SIZE:
            return Join(rest[0], rest[1], rest[2])
    elif kind == ControlKind.WELCOME and len(rest) == 3:
        proof, snapshot, incarnation = rest
        if (
            isinstance(proof, bytes)
            and len(proof) == PROOF_SIZE
            and isinstance(snapshot, list)
            and all(isinstance(e, bytes) for e in snapshot)
            and isinstance(incarnation, bytes)
            and len(incarnation) == INCARNATION_SIZE
        ):
            return Welcome(proof, tuple(snapshot), incarnation)
    elif kind == ControlKind.GOSSIP and len(rest) == 1 and isinstance(rest[0], bytes):
        return Gossip(rest[0])
    elif kind == ControlKind.DIRECT and len(rest) == 1 and isinstance(rest[0], bytes):
        return Direct(rest[0])
    elif kind == ControlKind.MEDIA and len(rest) == 1 and isinstance(rest[0], bytes):
        return Media(rest[0])
    raise MessageError(f"malformed control frame of kind {kind}")
