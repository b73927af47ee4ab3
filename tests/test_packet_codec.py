"""MediaPacket codec: every implementation against the construct spec, the
shared hex vectors and the pure-Python reference."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.codec import packet_spec
from bisc.errors import BiscError, PacketError

pytestmark = pytest.mark.equivalence

VECTORS = json.loads((Path(__file__).parent / "vectors" / "media_packet.json").read_text())
FIELDS = ("stream_id", "sequence", "timestamp", "fragment_index", "fragment_count", "flags")


def _fields(packet: Any) -> tuple[Any, ...]:
    return (*(getattr(packet, f) for f in FIELDS), bytes(packet.payload))


@st.composite
def packet_fields(draw: st.DrawFn) -> tuple[int, int, int, int, int, int, bytes]:
    count = draw(st.integers(1, 0xFFFF))
    return (
        draw(st.integers(0, 0xFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.integers(0, count - 1)),
        count,
        draw(st.integers(0, 0xFF)),
        draw(st.binary(max_size=1500)),
    )


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["hex"][:16])
def test_vectors_encode_and_decode(packet_impl: ModuleType, vector: dict[str, Any]) -> None:
    values = [vector[f] for f in FIELDS]
    payload = bytes.fromhex(vector["payload"])
    data = bytes.fromhex(vector["hex"])
    assert packet_impl.encode_packet(*values, payload) == data
    packet = packet_impl.decode_packet(data)
    assert _fields(packet) == (*values, payload)
    assert packet.is_keyframe == bool(vector["flags"] & 1)
    assert packet.encode() == data
    assert packet_impl.MediaPacket(*values, payload) == packet


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["error"])
def test_vectors_rejected(packet_impl: ModuleType, vector: dict[str, str]) -> None:
    with pytest.raises(PacketError, match=vector["error"]):
        packet_impl.decode_packet(bytes.fromhex(vector["hex"]))


def test_vectors_agree_with_construct_spec() -> None:
    for vector in VECTORS["valid"]:
        fields = {f: vector[f] for f in FIELDS}
        built = packet_spec.spec_encode({**fields, "version": 1, "payload": bytes.fromhex(vector["payload"])})
        assert built.hex() == vector["hex"]


@settings(max_examples=300, deadline=None)
@given(values=packet_fields())
def test_encode_matches_construct_byte_for_byte(packet_impl: ModuleType, values: tuple[Any, ...]) -> None:
    data = packet_impl.encode_packet(*values)
    spec = dict(zip(FIELDS, values[:6], strict=False), version=1, payload=values[6])
    assert data == packet_spec.spec_encode(spec)
    parsed = packet_spec.spec_decode(data)
    assert (*tuple(parsed[f] for f in FIELDS), parsed["payload"]) == values
    assert _fields(packet_impl.decode_packet(data)) == values


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64))
def test_random_bytes_agree_with_reference(
    packet_impl: ModuleType, packet_ref: ModuleType, data: bytes
) -> None:
    try:
        expected = _fields(packet_ref.decode_packet(data))
    except PacketError as exc:
        with pytest.raises(PacketError) as info:
            packet_impl.decode_packet(data)
        assert str(info.value) == str(exc)
    else:
        assert _fields(packet_impl.decode_packet(data)) == expected


@settings(max_examples=200, deadline=None)
@given(values=packet_fields(), cut=st.integers(0, 14))
def test_truncated_header_is_rejected(packet_impl: ModuleType, values: tuple[Any, ...], cut: int) -> None:
    data = packet_impl.encode_packet(*values)
    with pytest.raises(PacketError, match="truncated"):
        packet_impl.decode_packet(data[:cut])


@pytest.mark.parametrize(
    ("index", "value"),
    [(0, 256), (0, -1), (1, 1 << 32), (2, -5), (3, 1 << 16), (4, 1 << 16), (5, 300), (1, 1 << 80)],
)
def test_encode_rejects_out_of_range_fields(packet_impl: ModuleType, index: int, value: int) -> None:
    values: list[Any] = [1, 2, 3, 0, 1, 0, b"x"]
    values[index] = value
    with pytest.raises(PacketError, match=f"{FIELDS[index]} out of range"):
        packet_impl.encode_packet(*values)
    with pytest.raises(PacketError):
        packet_impl.MediaPacket(*values)


def test_encode_rejects_bad_fragment_numbers(packet_impl: ModuleType) -> None:
    with pytest.raises(PacketError, match="fragment_count is 0"):
        packet_impl.encode_packet(1, 2, 3, 0, 0, 0, b"")
    with pytest.raises(PacketError, match="fragment_index 5 out of range"):
        packet_impl.encode_packet(1, 2, 3, 5, 5, 0, b"")


def test_encode_rejects_non_int(packet_impl: ModuleType) -> None:
    with pytest.raises(PacketError, match="stream_id must be an int"):
        packet_impl.encode_packet("1", 2, 3, 0, 1, 0, b"")


def test_errors_are_one_project_type(packet_impl: ModuleType) -> None:
    with pytest.raises(BiscError):
        packet_impl.decode_packet(b"\x07" * 20)
    assert issubclass(PacketError, ValueError)


def test_big_payload_roundtrip(packet_impl: ModuleType) -> None:
    payload = bytes(range(256)) * 4096
    data = packet_impl.encode_packet(9, 1, 2, 0, 1, 1, payload)
    assert len(data) == 15 + len(payload)
    assert packet_impl.decode_packet(data).payload == payload


def test_repr_names_fields(packet_impl: ModuleType) -> None:
    packet = packet_impl.MediaPacket(1, 2, 3, 0, 1, 1, b"abc")
    assert "stream_id=1" in repr(packet)
    assert "3 bytes" in repr(packet)
