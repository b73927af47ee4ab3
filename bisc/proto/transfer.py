"""File transfer wire protocol: a sans-IO codec for the file-sharing streams.

Every message is a 5-byte header (type u8, payload length u32, big-endian)
and a fixed-layout binary payload. Each type has a hard payload limit, so a
reader knows after 5 bytes whether to refuse a message, before it reads
(or allocates) anything more.

Streams, each on its own bidirectional QUIC stream, told apart by their
first message:

- swarm link: one per peer and direction, opened by the side that talks on
  it. SWARM(version), then BITFIELD / HAVE / HAVE_ALL / INTERESTED /
  DONT_HAVE for as long as the connection lives. The receiver never answers
  on it; it answers on its own swarm link.
- hash list: HASHES(file_hash) -> HASH_LIST(size, hashes) or ERROR, then
  both sides finish.
- chunks: CHUNKS(file_hash, indices) -> for each index in order,
  CHUNK(index, data) or MISSING(index, code); or one ERROR for the whole
  request. The requester may send further CHUNKS on the same stream at any
  time (pipelining); they are answered in order. It finishes the stream
  when it wants no more.

Bitfields are LSB-first: chunk i is bit (i % 8) of byte i // 8, so
`int.from_bytes(bits, "little")` has bit i set for chunk i. Spare bits in
the last byte must be zero.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from bisc.codec.chunkhash import CHUNK_SIZE, HASH_SIZE, chunk_count
from bisc.errors import BiscError

VERSION = 1
HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size
MAX_FILE_SIZE = 1 << 40  # 1 TiB
MAX_CHUNKS = chunk_count(MAX_FILE_SIZE)
MAX_BITFIELD = (MAX_CHUNKS + 7) // 8
MAX_REQUEST_CHUNKS = 16
MAX_REASON = 200  # bytes of UTF-8 in an ERROR

_U32 = struct.Struct(">I")
_HAVE = struct.Struct(">32sI")
_BITFIELD = struct.Struct(">32sI")
_MISSING = struct.Struct(">IB")
_SIZE = struct.Struct(">Q")


class TransferError(BiscError, ValueError):
    """A transfer message that is malformed, oversized or out of place."""


class MsgType(enum.IntEnum):
    SWARM = 0x01
    BITFIELD = 0x02
    HAVE = 0x03
    HAVE_ALL = 0x04
    INTERESTED = 0x05
    DONT_HAVE = 0x06
    HASHES = 0x10
    CHUNKS = 0x11
    HASH_LIST = 0x20
    CHUNK = 0x21
    MISSING = 0x22
    ERROR = 0x2F


class Code(enum.IntEnum):
    """Why a chunk or a request was refused."""

    UNKNOWN_FILE = 1  # not shared or downloaded here
    NOT_AVAILABLE = 2  # a partial holder lacks this chunk
    WITHDRAWN = 3  # the shared file changed on disk
    BAD_REQUEST = 4
    INTERNAL = 5  # e.g. the file became unreadable


MAX_PAYLOAD: dict[MsgType, int] = {
    MsgType.SWARM: 1,
    MsgType.BITFIELD: _BITFIELD.size + MAX_BITFIELD,
    MsgType.HAVE: _HAVE.size,
    MsgType.HAVE_ALL: HASH_SIZE,
    MsgType.INTERESTED: HASH_SIZE,
    MsgType.DONT_HAVE: HASH_SIZE,
    MsgType.HASHES: HASH_SIZE,
    MsgType.CHUNKS: HASH_SIZE + 4 * MAX_REQUEST_CHUNKS,
    MsgType.HASH_LIST: _SIZE.size + HASH_SIZE * MAX_CHUNKS,
    MsgType.CHUNK: 4 + CHUNK_SIZE,
    MsgType.MISSING: _MISSING.size,
    MsgType.ERROR: 1 + MAX_REASON,
}

# What may appear where; the stream kind is set by the first message.
SWARM_MESSAGES = frozenset(
    {MsgType.BITFIELD, MsgType.HAVE, MsgType.HAVE_ALL, MsgType.INTERESTED, MsgType.DONT_HAVE}
)
STREAM_OPENERS = frozenset({MsgType.SWARM, MsgType.HASHES, MsgType.CHUNKS})
CHUNK_REPLIES = frozenset({MsgType.CHUNK, MsgType.MISSING, MsgType.ERROR})
HASH_REPLIES = frozenset({MsgType.HASH_LIST, MsgType.ERROR})


@dataclass(frozen=True)
class Swarm:
    version: int = VERSION


@dataclass(frozen=True)
class Bitfield:
    file_hash: bytes
    chunk_count: int
    bits: bytes


@dataclass(frozen=True)
class Have:
    file_hash: bytes
    index: int


@dataclass(frozen=True)
class HaveAll:
    file_hash: bytes


@dataclass(frozen=True)
class Interested:
    file_hash: bytes


@dataclass(frozen=True)
class DontHave:
    file_hash: bytes


@dataclass(frozen=True)
class HashesRequest:
    file_hash: bytes


@dataclass(frozen=True)
class ChunksRequest:
    file_hash: bytes
    indices: tuple[int, ...]


@dataclass(frozen=True)
class HashList:
    size: int
    hashes: bytes


@dataclass(frozen=True)
class ChunkData:
    index: int
    data: bytes


@dataclass(frozen=True)
class Missing:
    index: int
    code: int


@dataclass(frozen=True)
class Error:
    code: int
    reason: str


Message = (
    Swarm
    | Bitfield
    | Have
    | HaveAll
    | Interested
    | DontHave
    | HashesRequest
    | ChunksRequest
    | HashList
    | ChunkData
    | Missing
    | Error
)


def bitfield_size(count: int) -> int:
    return (count + 7) // 8


# -- encoding -----------------------------------------------------------------
def header(kind: MsgType, length: int) -> bytes:
    return HEADER.pack(kind, length)


def chunk_header(index: int, length: int) -> bytes:
    """Header and index of a CHUNK; the caller writes the data after it (no copy)."""
    return HEADER.pack(MsgType.CHUNK, 4 + length) + _U32.pack(index)


def _check_hash(file_hash: bytes) -> bytes:
    if len(file_hash) != HASH_SIZE:
        raise TransferError(f"a file hash is {HASH_SIZE} bytes, got {len(file_hash)}")
    return file_hash


def encode(msg: Message) -> bytes:
    """One message with its header."""
    kind: MsgType
    if isinstance(msg, Swarm):
        kind, payload = MsgType.SWARM, bytes([msg.version])
    elif isinstance(msg, Bitfield):
        _check_bitfield(msg.chunk_count, msg.bits)
        kind, payload = (
            MsgType.BITFIELD,
            _BITFIELD.pack(_check_hash(msg.file_hash), msg.chunk_count) + msg.bits,
        )
    elif isinstance(msg, Have):
        kind, payload = MsgType.HAVE, _HAVE.pack(_check_hash(msg.file_hash), msg.index)
    elif isinstance(msg, HaveAll | Interested | DontHave | HashesRequest):
        kind, payload = _SIMPLE[type(msg)], _check_hash(msg.file_hash)
    elif isinstance(msg, ChunksRequest):
        _check_indices(msg.indices)
        kind = MsgType.CHUNKS
        payload = _check_hash(msg.file_hash) + b"".join(_U32.pack(i) for i in msg.indices)
    elif isinstance(msg, HashList):
        _check_hash_list(msg.size, msg.hashes)
        kind, payload = MsgType.HASH_LIST, _SIZE.pack(msg.size) + msg.hashes
    elif isinstance(msg, ChunkData):
        return chunk_header(msg.index, len(msg.data)) + msg.data
    elif isinstance(msg, Missing):
        kind, payload = MsgType.MISSING, _MISSING.pack(msg.index, msg.code)
    else:
        reason = msg.reason.encode()[:MAX_REASON]
        kind, payload = MsgType.ERROR, bytes([msg.code]) + reason
    return HEADER.pack(kind, len(payload)) + payload


_SimpleMessage = HaveAll | Interested | DontHave | HashesRequest
_SIMPLE: dict[type, MsgType] = {
    HaveAll: MsgType.HAVE_ALL,
    Interested: MsgType.INTERESTED,
    DontHave: MsgType.DONT_HAVE,
    HashesRequest: MsgType.HASHES,
}
_SIMPLE_BY_KIND: dict[MsgType, type[_SimpleMessage]] = {v: k for k, v in _SIMPLE.items()}


# -- decoding -----------------------------------------------------------------
def parse_header(data: bytes, allowed: frozenset[MsgType], limit: int | None = None) -> tuple[MsgType, int]:
    """Type and payload length from a 5-byte header.

    Refuses a type not in `allowed` and a length over the type's limit (or
    over `limit`, when the reader knows a tighter bound)."""
    if len(data) != HEADER_SIZE:
        raise TransferError(f"a message header is {HEADER_SIZE} bytes, got {len(data)}")
    raw_kind, length = HEADER.unpack(data)
    try:
        kind = MsgType(raw_kind)
    except ValueError:
        raise TransferError(f"unknown message type {raw_kind:#x}") from None
    if kind not in allowed:
        raise TransferError(f"{kind.name} is not expected here")
    bound = MAX_PAYLOAD[kind] if limit is None else min(limit, MAX_PAYLOAD[kind])
    if length > bound:
        raise TransferError(f"{kind.name} of {length} bytes exceeds its limit of {bound}")
    return kind, length


def decode(kind: MsgType, payload: bytes) -> Message:
    """The message of type `kind` (from parse_header) with this payload."""
    if len(payload) > MAX_PAYLOAD[kind]:
        raise TransferError(f"{kind.name} of {len(payload)} bytes exceeds its limit")
    if kind == MsgType.SWARM:
        if len(payload) != 1:
            raise TransferError("SWARM carries one version byte")
        return Swarm(payload[0])
    if kind == MsgType.BITFIELD:
        if len(payload) < _BITFIELD.size:
            raise TransferError("BITFIELD is too short")
        file_hash, count = _BITFIELD.unpack_from(payload)
        bits = payload[_BITFIELD.size :]
        _check_bitfield(count, bits)
        return Bitfield(file_hash, count, bits)
    if kind == MsgType.HAVE:
        _exact(kind, payload, _HAVE.size)
        file_hash, index = _HAVE.unpack(payload)
        if index >= MAX_CHUNKS:
            raise TransferError(f"chunk index {index} is out of range")
        return Have(file_hash, index)
    if kind in (MsgType.HAVE_ALL, MsgType.INTERESTED, MsgType.DONT_HAVE, MsgType.HASHES):
        _exact(kind, payload, HASH_SIZE)
        return _SIMPLE_BY_KIND[kind](bytes(payload))
    if kind == MsgType.CHUNKS:
        count, rest = divmod(len(payload) - HASH_SIZE, 4)
        if len(payload) < HASH_SIZE + 4 or rest:
            raise TransferError("CHUNKS needs a file hash and 1..16 indices")
        indices = tuple(_U32.unpack_from(payload, HASH_SIZE + 4 * i)[0] for i in range(count))
        _check_indices(indices)
        return ChunksRequest(bytes(payload[:HASH_SIZE]), indices)
    if kind == MsgType.HASH_LIST:
        if len(payload) < _SIZE.size:
            raise TransferError("HASH_LIST is too short")
        (size,) = _SIZE.unpack_from(payload)
        hashes = payload[_SIZE.size :]
        _check_hash_list(size, hashes)
        return HashList(size, hashes)
    if kind == MsgType.CHUNK:
        if len(payload) < 5:
            raise TransferError("CHUNK needs an index and at least one byte")
        return ChunkData(_U32.unpack_from(payload)[0], payload[4:])
    if kind == MsgType.MISSING:
        _exact(kind, payload, _MISSING.size)
        index, code = _MISSING.unpack(payload)
        return Missing(index, code)
    if len(payload) < 1:
        raise TransferError("ERROR needs a code")
    return Error(payload[0], payload[1:].decode(errors="replace"))


def _exact(kind: MsgType, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise TransferError(f"{kind.name} is {size} bytes, got {len(payload)}")


def _check_bitfield(count: int, bits: bytes) -> None:
    if count > MAX_CHUNKS:
        raise TransferError(f"bitfield of {count} chunks exceeds {MAX_CHUNKS}")
    if len(bits) != bitfield_size(count):
        raise TransferError(
            f"bitfield of {count} chunks must be {bitfield_size(count)} bytes, got {len(bits)}"
        )
    if count % 8 and bits[-1] >> (count % 8):
        raise TransferError("bitfield has bits set past its last chunk")


def _check_indices(indices: tuple[int, ...]) -> None:
    if not 1 <= len(indices) <= MAX_REQUEST_CHUNKS:
        raise TransferError(f"CHUNKS asks for 1..{MAX_REQUEST_CHUNKS} chunks, got {len(indices)}")
    if len(set(indices)) != len(indices):
        raise TransferError("CHUNKS repeats an index")
    if max(indices) >= MAX_CHUNKS:
        raise TransferError(f"chunk index {max(indices)} is out of range")


def _check_hash_list(size: int, hashes: bytes) -> None:
    if size > MAX_FILE_SIZE:
        raise TransferError(f"file size {size} exceeds {MAX_FILE_SIZE}")
    if len(hashes) != HASH_SIZE * chunk_count(size):
        raise TransferError(f"{len(hashes)} bytes of hashes do not match a file of {size} bytes")


def bits_to_mask(bits: bytes) -> int:
    """A bitfield as an int whose bit i is chunk i."""
    return int.from_bytes(bits, "little")


def mask_to_bits(mask: int, count: int) -> bytes:
    """The bitfield of `count` chunks whose set chunks are the bits of `mask`."""
    if mask >> count:
        raise TransferError(f"mask has bits set past chunk {count - 1}")
    return mask.to_bytes(bitfield_size(count), "little")
