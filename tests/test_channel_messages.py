"""Channel messages, control frames, admission proofs and membership: the
sans-IO layer, including forged, replayed and malformed input."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.identity import Identity
from bisc.proto.control import (
    Gossip,
    Join,
    Welcome,
    admission_proof,
    check_proof,
    decode_control,
    encode_control,
)
from bisc.proto.membership import (
    MEMBER_TIMEOUT,
    ChatReceived,
    MediaStateChanged,
    MemberJoined,
    MemberLeft,
    Membership,
)
from bisc.proto.messages import (
    MAX_ENVELOPE,
    Chat,
    FileAnnounce,
    Heartbeat,
    MediaState,
    MessageError,
    PeerAnnounce,
    PeerInfo,
    PeerLeave,
    TicketRefresh,
    open_envelope,
    seal,
)

TOPIC = os.urandom(32)
ALICE = Identity.generate()
BOB = Identity.generate()
INFO = PeerInfo("alice", ("chat",), (("127.0.0.1", 4433),))

ALL_MESSAGES = [
    PeerAnnounce(INFO),
    PeerLeave(),
    Heartbeat(INFO),
    MediaState(audio_muted=True, screen_sharing=True),
    FileAnnounce(os.urandom(32), "movie.mkv", 20 * 2**30, 81920),
    TicketRefresh("bisc1abc"),
    Chat("hello ✓"),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_seal_and_open_every_kind(message) -> None:
    sealed = seal(ALICE, TOPIC, 7, 1234, message)
    env = open_envelope(TOPIC, sealed)
    assert env.origin == ALICE.endpoint_id and env.seq == 7 and env.timestamp_ms == 1234
    assert env.message == message


def test_wrong_topic_or_tampering_is_rejected() -> None:
    sealed = seal(ALICE, TOPIC, 1, 1, Chat("hi"))
    with pytest.raises(MessageError, match="signature"):
        open_envelope(os.urandom(32), sealed)  # replayed into another channel
    raw = msgpack.unpackb(sealed)
    raw[1] = BOB.endpoint_id.key  # claim another origin
    with pytest.raises(MessageError, match="signature"):
        open_envelope(TOPIC, msgpack.packb(raw))
    raw = msgpack.unpackb(sealed)
    raw[5] = [raw[5][0], "changed"]
    with pytest.raises(MessageError, match="signature"):
        open_envelope(TOPIC, msgpack.packb(raw))


def test_oversized_message_is_an_explicit_error() -> None:
    with pytest.raises(MessageError, match="exceeds"):
        seal(ALICE, TOPIC, 1, 1, Chat("€" * 3999))
    with pytest.raises(MessageError):
        open_envelope(TOPIC, b"\x00" * (MAX_ENVELOPE + 1))


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_envelopes_never_crash(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        open_envelope(TOPIC, data)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=70),
            st.text(max_size=10),
            st.none(),
            st.lists(st.integers(0, 2**64 - 1), max_size=3),
        ),
        max_size=8,
    )
)
def test_structured_garbage_never_crashes(fields: list[object]) -> None:
    with contextlib.suppress(MessageError):
        open_envelope(TOPIC, msgpack.packb(fields))
    with contextlib.suppress(MessageError):
        decode_control(msgpack.packb(fields))


def test_control_frames_roundtrip() -> None:
    join = Join(TOPIC, admission_proof(b"s" * 32, b"b" * 32, "dialer"))
    assert decode_control(encode_control(join)) == join
    welcome = Welcome(os.urandom(32), (b"a", b"b"))
    assert decode_control(encode_control(welcome)) == welcome
    assert decode_control(encode_control(Gossip(b"xyz"))) == Gossip(b"xyz")
    big = Welcome(os.urandom(32), tuple(os.urandom(8000) for _ in range(20)))
    decoded = decode_control(encode_control(big))
    assert isinstance(decoded, Welcome) and len(decoded.snapshot) < 20  # trimmed to fit a frame


def test_admission_proof_binds_secret_role_and_connection() -> None:
    secret, binding = os.urandom(32), os.urandom(32)
    proof = admission_proof(secret, binding, "dialer")
    assert check_proof(secret, binding, "dialer", proof)
    assert not check_proof(os.urandom(32), binding, "dialer", proof)  # no secret
    assert not check_proof(secret, os.urandom(32), "dialer", proof)  # replay elsewhere
    assert not check_proof(secret, binding, "acceptor", proof)  # reflected back


def _handle(m: Membership, identity: Identity, seq: int, message: Any, now: float) -> list[Any]:
    sealed = seal(identity, TOPIC, seq, 1000 + seq, message)
    return m.handle(open_envelope(TOPIC, sealed), sealed, now)


def test_membership_join_update_leave() -> None:
    m = Membership(BOB.endpoint_id)
    events = _handle(m, ALICE, 10, PeerAnnounce(INFO), 0.0)
    assert [type(e) for e in events] == [MemberJoined]
    assert m.members[ALICE.endpoint_id].name == "alice"
    assert _handle(m, ALICE, 11, Heartbeat(INFO), 1.0) == []
    assert isinstance(_handle(m, ALICE, 12, MediaState(audio_muted=True), 1.0)[0], MediaStateChanged)
    # An older state message delivered late changes nothing.
    assert _handle(m, ALICE, 9, PeerLeave(), 2.0) == []
    left = _handle(m, ALICE, 13, PeerLeave(), 2.0)
    assert left == [MemberLeft(ALICE.endpoint_id, "alice", "left")]
    # A replayed heartbeat from before the leave does not resurrect her.
    assert _handle(m, ALICE, 11, Heartbeat(INFO), 3.0) == []
    assert ALICE.endpoint_id not in m.members
    # Her own messages are ignored by her own membership.
    assert _handle(Membership(ALICE.endpoint_id), ALICE, 20, PeerAnnounce(INFO), 0.0) == []


def test_membership_timeout_and_chat_dedup() -> None:
    m = Membership(BOB.endpoint_id)
    _handle(m, ALICE, 1, PeerAnnounce(INFO), 0.0)
    chat = Chat("hi")
    first = _handle(m, ALICE, 2, chat, 1.0)
    assert isinstance(first[0], ChatReceived) and first[0].text == "hi" and first[0].name == "alice"
    assert _handle(m, ALICE, 3, chat, 1.0) == []  # same chat id again
    assert m.next_expiry() == pytest.approx(1.0 + MEMBER_TIMEOUT)
    assert m.expire(10.0) == []
    assert m.expire(1.0 + MEMBER_TIMEOUT + 0.1) == [MemberLeft(ALICE.endpoint_id, "alice", "timeout")]


def test_membership_is_bounded() -> None:
    m = Membership(BOB.endpoint_id, max_members=3)
    for _ in range(10):
        _handle(m, Identity.generate(), 1, PeerAnnounce(INFO), 0.0)
    assert len(m.members) == 3 and m.ignored == 7


def test_file_catalog_is_kept_for_new_joiners() -> None:
    m = Membership(BOB.endpoint_id)
    _handle(m, ALICE, 1, PeerAnnounce(INFO), 0.0)
    announce = FileAnnounce(os.urandom(32), "a.bin", 10, 1)
    first = _handle(m, ALICE, 2, announce, 0.1)
    assert [type(e).__name__ for e in first] == ["FileAnnounced"]
    assert _handle(m, ALICE, 3, announce, 0.2) == []  # a repeat is not news
    snapshot = m.snapshot()
    kinds = [type(open_envelope(TOPIC, s).message).__name__ for s in snapshot]
    assert kinds == ["PeerAnnounce", "FileAnnounce"]
    # A joiner replaying the snapshot learns the member and the file.
    joiner = Membership(Identity.generate().endpoint_id)
    events = [e for s in snapshot for e in joiner.handle(open_envelope(TOPIC, s), s, 0.0)]
    assert [type(e).__name__ for e in events] == ["MemberJoined", "FileAnnounced"]
