# cython: language_level=3, autotestdict=False, embedsignature=False
"""MediaPacket codec, compiled: same behaviour as bisc.codec.packet.

Layout (big-endian, 15-byte header, then the payload):

    version u8 | stream_id u8 | flags u8 | sequence u32 | timestamp u32 |
    fragment_index u16 | fragment_count u16 | payload ...

The fast paths take exact `int` fields in range and `bytes` payloads/data;
anything else goes through the reference's own steps (struct, slicing,
concatenation), so results and errors are the same for every input.
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

import struct as _struct

from bisc.errors import PacketError

cdef extern from "Python.h":
    # Cannot fail for an exact int, which is all it is given here.
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) noexcept

cdef inline bytes bisc_new_output(Py_ssize_t size):
    """A new bytes object of `size` bytes for the caller to fill completely."""
    return PyBytes_FromStringAndSize(NULL, size)

VERSION = 1
HEADER_SIZE = 15
FLAG_KEYFRAME = 0x01

cdef object _HEADER = _struct.Struct(">BBBIIHH")
cdef object _struct_error = _struct.error


# -- validation (messages as in bisc.codec.packet) ---------------------------

cdef int _check_field(str name, object value, long long limit) except -1:
    cdef int overflow = 0
    cdef long long v
    if type(value) is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and 0 <= v <= limit:
            return 0
        raise PacketError(f"{name} out of range: {value!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise PacketError(f"{name} must be an int")
    if not 0 <= value <= limit:
        raise PacketError(f"{name} out of range: {value!r}")
    return 0


cdef int _check_fields(object stream_id, object sequence, object timestamp,
                       object fragment_index, object fragment_count, object flags) except -1:
    """Raise PacketError for the first field that does not fit its width."""
    _check_field("stream_id", stream_id, 0xFF)
    _check_field("sequence", sequence, 0xFFFFFFFF)
    _check_field("timestamp", timestamp, 0xFFFFFFFF)
    _check_field("fragment_index", fragment_index, 0xFFFF)
    _check_field("fragment_count", fragment_count, 0xFFFF)
    _check_field("flags", flags, 0xFF)
    return 0


cdef int _check_fragment(long long index, long long count) except -1:
    if count == 0:
        raise PacketError("media packet fragment_count is 0")
    if index >= count:
        raise PacketError(
            f"media packet fragment_index {index} out of range for fragment_count {count}"
        )
    return 0


cdef int _check_fragment_obj(object index, object count) except -1:
    # The reference's _check_fragment on arbitrary objects (ints, int
    # subclasses, bools), for the slow paths.
    if count == 0:
        raise PacketError("media packet fragment_count is 0")
    if index >= count:
        raise PacketError(
            f"media packet fragment_index {index} out of range for fragment_count {count}"
        )
    return 0


cdef int _raise_header_error(int code, Py_ssize_t n, const PacketHeader* h) except -1:
    if code == PKT_TRUNCATED:
        raise PacketError(f"media packet truncated: {n} bytes, header needs {HEADER_SIZE}")
    if code == PKT_BAD_VERSION:
        raise PacketError(
            f"unsupported media packet version {<int>h.version} (expected {VERSION})"
        )
    _check_fragment(h.fragment_index, h.fragment_count)
    return 0


# -- the packet --------------------------------------------------------------

@cython.freelist(16)
@cython.no_gc
@cython.auto_pickle(False)
cdef class MediaPacket:
    """MediaPacket(stream_id, sequence, timestamp, fragment_index, fragment_count, flags, payload)
--

One datagram of a media stream: header fields and payload."""

    def __init__(self, stream_id, sequence, timestamp, fragment_index, fragment_count, flags,
                 payload):
        _check_fields(stream_id, sequence, timestamp, fragment_index, fragment_count, flags)
        _check_fragment_obj(fragment_index, fragment_count)
        self.stream_id = stream_id
        self.sequence = sequence
        self.timestamp = timestamp
        self.fragment_index = fragment_index
        self.fragment_count = fragment_count
        self.flags = flags
        self.payload = payload if type(payload) is bytes else bytes(payload)

    @property
    def is_keyframe(self):
        return (self.flags & PKT_FLAG_KEYFRAME) != 0

    def encode(self):
        return _encode_any(self.stream_id, self.sequence, self.timestamp, self.fragment_index,
                           self.fragment_count, self.flags, self.payload)

    def __eq__(self, other):
        if not isinstance(other, MediaPacket):
            return NotImplemented
        cdef MediaPacket o = <MediaPacket>other
        return (
            self.stream_id == o.stream_id
            and self.sequence == o.sequence
            and self.timestamp == o.timestamp
            and self.fragment_index == o.fragment_index
            and self.fragment_count == o.fragment_count
            and self.flags == o.flags
            and self.payload == o.payload
        )

    __hash__ = None

    def __reduce__(self):
        return (MediaPacket, (self.stream_id, self.sequence, self.timestamp, self.fragment_index,
                              self.fragment_count, self.flags, self.payload))

    def __repr__(self):
        return (
            f"MediaPacket(stream_id={self.stream_id}, sequence={self.sequence}, "
            f"timestamp={self.timestamp}, fragment_index={self.fragment_index}, "
            f"fragment_count={self.fragment_count}, flags={self.flags}, "
            f"payload=<{len(self.payload)} bytes>)"
        )


cdef inline MediaPacket _new_packet(const PacketHeader* h, bytes payload):
    cdef MediaPacket p = MediaPacket.__new__(MediaPacket)
    p.stream_id = h.stream_id
    p.sequence = h.sequence
    p.timestamp = h.timestamp
    p.fragment_index = h.fragment_index
    p.fragment_count = h.fragment_count
    p.flags = h.flags
    p.payload = payload
    return p


# -- encode ------------------------------------------------------------------

cdef object _encode_any(object stream_id, object sequence, object timestamp,
                        object fragment_index, object fragment_count, object flags,
                        object payload):
    cdef unsigned long long s, q, t, i, c, f
    cdef Py_ssize_t n
    cdef bytes out
    cdef unsigned char* o
    if (
        bisc_exact_uint(stream_id, 0xFF, &s)
        and bisc_exact_uint(sequence, 0xFFFFFFFF, &q)
        and bisc_exact_uint(timestamp, 0xFFFFFFFF, &t)
        and bisc_exact_uint(fragment_index, 0xFFFF, &i)
        and bisc_exact_uint(fragment_count, 0xFFFF, &c)
        and bisc_exact_uint(flags, 0xFF, &f)
    ):
        if i >= c:
            _check_fragment(<long long>i, <long long>c)
        if type(payload) is bytes:
            n = PyBytes_GET_SIZE(payload)
            out = bisc_new_output(PKT_HEADER_SIZE + n)
            o = <unsigned char*>PyBytes_AS_STRING(out)
            write_header(o, <uint8_t>s, <uint8_t>f, <uint32_t>q, <uint32_t>t,
                         <uint16_t>i, <uint16_t>c)
            memcpy(o + PKT_HEADER_SIZE, PyBytes_AS_STRING(payload), <size_t>n)
            return out
        out = PyBytes_FromStringAndSize(NULL, PKT_HEADER_SIZE)
        write_header(<unsigned char*>PyBytes_AS_STRING(out), <uint8_t>s, <uint8_t>f,
                     <uint32_t>q, <uint32_t>t, <uint16_t>i, <uint16_t>c)
        return out + payload
    # Anything else: exactly the reference's steps (struct accepts bools and
    # __index__ objects; the field checks only name the offending field).
    try:
        header = _HEADER.pack(1, stream_id, flags, sequence, timestamp, fragment_index,
                              fragment_count)
    except _struct_error:
        _check_fields(stream_id, sequence, timestamp, fragment_index, fragment_count, flags)
        raise
    if fragment_index >= fragment_count:
        _check_fragment_obj(fragment_index, fragment_count)
    return header + payload


def encode_packet(stream_id, sequence, timestamp, fragment_index, fragment_count, flags, payload):
    """Serialize one media datagram."""
    return _encode_any(stream_id, sequence, timestamp, fragment_index, fragment_count, flags,
                       payload)


# -- decode ------------------------------------------------------------------

cdef MediaPacket _decode_generic(object data):
    # The reference's steps, for inputs other than bytes and bytearray.
    if len(data) < PKT_HEADER_SIZE:
        raise PacketError(f"media packet truncated: {len(data)} bytes, header needs {HEADER_SIZE}")
    version, stream_id, flags, sequence, timestamp, index, count = _HEADER.unpack_from(data)
    if version != PKT_VERSION:
        raise PacketError(f"unsupported media packet version {version} (expected {VERSION})")
    if index >= count:
        _check_fragment_obj(index, count)
    cdef MediaPacket p = MediaPacket.__new__(MediaPacket)
    p.stream_id = stream_id
    p.sequence = sequence
    p.timestamp = timestamp
    p.fragment_index = index
    p.fragment_count = count
    p.flags = flags
    p.payload = bytes(data[PKT_HEADER_SIZE:])
    return p


cdef MediaPacket _decode_any(object data):
    cdef const unsigned char* buf
    cdef Py_ssize_t n
    cdef PacketHeader h
    cdef int rc
    if type(data) is bytes:
        buf = <const unsigned char*>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
    elif type(data) is bytearray:
        buf = <const unsigned char*>PyByteArray_AS_STRING(data)
        n = PyByteArray_GET_SIZE(data)
    else:
        return _decode_generic(data)
    rc = parse_header(buf, n, &h)
    if rc != PKT_OK:
        _raise_header_error(rc, n, &h)
    return _new_packet(
        &h, PyBytes_FromStringAndSize(<char*>buf + PKT_HEADER_SIZE, n - PKT_HEADER_SIZE)
    )


def decode_packet(data):
    """Parse one media datagram; PacketError if it is malformed."""
    return _decode_any(data)
