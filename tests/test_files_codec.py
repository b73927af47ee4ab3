"""The transfer wire codec (sans-IO) and the rarest-first chunk picker."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.codec.chunkhash import CHUNK_SIZE
from bisc.files.picker import ChunkPicker
from bisc.proto import transfer as tp

H = bytes(range(32))
ALL = frozenset(tp.MsgType)


def roundtrip(msg: tp.Message) -> tp.Message:
    data = tp.encode(msg)
    kind, length = tp.parse_header(data[: tp.HEADER_SIZE], ALL)
    assert length == len(data) - tp.HEADER_SIZE
    return tp.decode(kind, data[tp.HEADER_SIZE :])


@pytest.mark.parametrize(
    "msg",
    [
        tp.Swarm(),
        tp.Bitfield(H, 11, bytes([0xFF, 0x07])),
        tp.Bitfield(H, 0, b""),
        tp.Have(H, 7),
        tp.HaveAll(H),
        tp.Interested(H),
        tp.DontHave(H),
        tp.HashesRequest(H),
        tp.ChunksRequest(H, (3, 1, 2)),
        tp.HashList(CHUNK_SIZE + 1, H + H),
        tp.HashList(0, b""),
        tp.ChunkData(5, b"x" * 100),
        tp.Missing(9, tp.Code.NOT_AVAILABLE),
        tp.Error(tp.Code.WITHDRAWN, "file changed"),
    ],
)
def test_roundtrip(msg: tp.Message) -> None:
    assert roundtrip(msg) == msg


def test_limits_are_enforced_before_reading_the_payload() -> None:
    with pytest.raises(tp.TransferError, match="unknown message type"):
        tp.parse_header(b"\x99\x00\x00\x00\x01", ALL)
    with pytest.raises(tp.TransferError, match="exceeds its limit"):
        tp.parse_header(tp.header(tp.MsgType.CHUNKS, 2**32 - 1), ALL)
    with pytest.raises(tp.TransferError, match="exceeds its limit"):
        tp.parse_header(tp.header(tp.MsgType.CHUNK, 4 + CHUNK_SIZE + 1), ALL)
    with pytest.raises(tp.TransferError, match="exceeds its limit of 100"):
        tp.parse_header(tp.header(tp.MsgType.HASH_LIST, 200), ALL, limit=100)
    with pytest.raises(tp.TransferError, match="not expected here"):
        tp.parse_header(tp.header(tp.MsgType.CHUNK, 10), tp.STREAM_OPENERS)
    assert tp.MAX_PAYLOAD[tp.MsgType.HASH_LIST] == 8 + 32 * tp.MAX_CHUNKS  # 1 TiB of chunks


@pytest.mark.parametrize(
    ("kind", "payload", "error"),
    [
        (tp.MsgType.CHUNKS, H, "1..16 indices"),
        (tp.MsgType.CHUNKS, H + b"\x00\x00\x00\x01" * 2, "repeats"),
        (tp.MsgType.CHUNKS, H + b"\x00\x00\x01", "1..16 indices"),
        (tp.MsgType.CHUNKS, H + b"\xff\xff\xff\xff", "out of range"),
        (tp.MsgType.BITFIELD, H + b"\x00\x00\x00\x0b" + b"\xff\xff", "past its last chunk"),
        (tp.MsgType.BITFIELD, H + b"\x00\x00\x00\x0b" + b"\xff", "must be 2 bytes"),
        (tp.MsgType.BITFIELD, H + b"\xff\xff\xff\xff", "exceeds"),
        (tp.MsgType.HAVE, H + b"\x00\x00", "is 36 bytes"),
        (tp.MsgType.HASH_LIST, b"\x00" * 7 + b"\x01", "do not match"),
        (tp.MsgType.CHUNK, b"\x00\x00\x00\x01", "at least one byte"),
        (tp.MsgType.SWARM, b"", "version"),
        (tp.MsgType.INTERESTED, H[:31], "is 32 bytes"),
    ],
)
def test_malformed_payloads(kind: tp.MsgType, payload: bytes, error: str) -> None:
    with pytest.raises(tp.TransferError, match=error):
        tp.decode(kind, payload)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(tp.MsgType)), st.binary(max_size=300))
def test_decoding_garbage_only_raises_transfer_error(kind: tp.MsgType, payload: bytes) -> None:
    with contextlib.suppress(tp.TransferError):
        tp.decode(kind, payload)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=5, max_size=5))
def test_parsing_any_header_only_raises_transfer_error(header: bytes) -> None:
    try:
        kind, length = tp.parse_header(header, ALL)
    except tp.TransferError:
        return
    assert length <= tp.MAX_PAYLOAD[kind]


@given(st.integers(0, 200), st.data())
def test_bitfield_mask_roundtrip(count: int, data: st.DataObject) -> None:
    mask = data.draw(st.integers(0, (1 << count) - 1))
    bits = tp.mask_to_bits(mask, count)
    assert len(bits) == tp.bitfield_size(count)
    assert tp.bits_to_mask(bits) == mask
    assert roundtrip(tp.Bitfield(H, count, bits)) == tp.Bitfield(H, count, bits)


# -- picker -----------------------------------------------------------------------
def test_picker_prefers_the_rarest_chunks() -> None:
    picker = ChunkPicker(8, have=0, rng=random.Random(1))
    picker.set_peer("seed", None)
    picker.set_peer("p", 0b0000_0011)  # chunks 0, 1
    picker.set_peer("q", 0b0000_0010)  # chunk 1
    # For the seeder: chunks no partial peer has (2..7) come first.
    assert set(picker.pick("seed", 6)) == {2, 3, 4, 5, 6, 7}
    # For p: chunk 0 (only p has it) before chunk 1 (p and q have it).
    assert picker.pick("p", 1) == [0]
    assert picker.pick("p", 1) == [1]
    assert picker.pick("q", 1) == []  # everything is in flight


def test_picker_tracks_flight_release_and_peers() -> None:
    picker = ChunkPicker(4, have=0b0001, rng=random.Random(2))
    picker.set_peer("a", None)
    got = picker.pick("a", 10)
    assert sorted(got) == [1, 2, 3]
    picker.release(2, "someone else")  # not asked from them: ignored
    assert picker.in_flight("a") == got
    assert sorted(picker.remove_peer("a")) == [1, 2, 3]
    picker.set_peer("b", 0b0100)
    assert picker.pick("b", 10) == [2]
    assert picker.done(2) and not picker.done(2)
    picker.peer_has("b", 3)
    assert picker.pick("b", 10) == [3]
    picker.done(3)
    picker.peer_lacks("b", 1)
    assert picker.pick("b", 10) == [] and not picker.complete
    picker.set_peer("c", None)
    assert picker.pick("c", 10) == [1]
    picker.done(1)
    assert picker.complete
    picker.lose(2)
    assert not picker.complete and picker.pick("c", 5) == [2]


def test_picker_is_deterministic_for_a_seed() -> None:
    def picks(seed: int) -> list[int]:
        picker = ChunkPicker(1000, have=0, rng=random.Random(seed))
        picker.set_peer("a", None)
        return picker.pick("a", 50)

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
    assert len(set(picks(7))) == 50
