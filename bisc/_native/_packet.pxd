# cython: language_level=3
"""C-level interface of bisc._native._packet, shared with _fragment.

Header layout (big-endian, 15 bytes), as in bisc.codec.packet:

    version u8 | stream_id u8 | flags u8 | sequence u32 | timestamp u32 |
    fragment_index u16 | fragment_count u16 | payload ...
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef enum:
    PKT_VERSION = 1
    PKT_HEADER_SIZE = 15
    PKT_FLAG_KEYFRAME = 0x01

# parse_header() results; anything but PKT_OK goes to raise_header_error().
cdef enum:
    PKT_OK = 0
    PKT_TRUNCATED = 1
    PKT_BAD_VERSION = 2
    PKT_BAD_FRAGMENT = 3

ctypedef struct PacketHeader:
    uint8_t version
    uint8_t stream_id
    uint8_t flags
    uint32_t sequence
    uint32_t timestamp
    uint16_t fragment_index
    uint16_t fragment_count


cdef class MediaPacket:
    cdef readonly unsigned int stream_id
    cdef readonly uint32_t sequence
    cdef readonly uint32_t timestamp
    cdef readonly unsigned int fragment_index
    cdef readonly unsigned int fragment_count
    cdef readonly unsigned int flags
    cdef readonly bytes payload


cdef inline int parse_header(const unsigned char* b, Py_ssize_t n, PacketHeader* h) noexcept nogil:
    """Fill `h` from the first 15 bytes of `b`; PKT_OK or the reason it is bad."""
    if n < PKT_HEADER_SIZE:
        return PKT_TRUNCATED
    h.version = b[0]
    h.stream_id = b[1]
    h.flags = b[2]
    h.sequence = ((<uint32_t>b[3]) << 24) | ((<uint32_t>b[4]) << 16) | ((<uint32_t>b[5]) << 8) | b[6]
    h.timestamp = ((<uint32_t>b[7]) << 24) | ((<uint32_t>b[8]) << 16) | ((<uint32_t>b[9]) << 8) | b[10]
    h.fragment_index = <uint16_t>(((<unsigned int>b[11]) << 8) | b[12])
    h.fragment_count = <uint16_t>(((<unsigned int>b[13]) << 8) | b[14])
    if h.version != PKT_VERSION:
        return PKT_BAD_VERSION
    if h.fragment_index >= h.fragment_count:
        return PKT_BAD_FRAGMENT
    return PKT_OK


cdef inline void write_header(
    unsigned char* o, uint8_t stream_id, uint8_t flags, uint32_t sequence, uint32_t timestamp,
    uint16_t fragment_index, uint16_t fragment_count,
) noexcept nogil:
    """Write the 15 header bytes (version included) at `o`."""
    o[0] = PKT_VERSION
    o[1] = stream_id
    o[2] = flags
    o[3] = <unsigned char>(sequence >> 24)
    o[4] = <unsigned char>(sequence >> 16)
    o[5] = <unsigned char>(sequence >> 8)
    o[6] = <unsigned char>sequence
    o[7] = <unsigned char>(timestamp >> 24)
    o[8] = <unsigned char>(timestamp >> 16)
    o[9] = <unsigned char>(timestamp >> 8)
    o[10] = <unsigned char>timestamp
    o[11] = <unsigned char>(fragment_index >> 8)
    o[12] = <unsigned char>fragment_index
    o[13] = <unsigned char>(fragment_count >> 8)
    o[14] = <unsigned char>fragment_count


# Raise the PacketError that bisc.codec.packet.decode_packet raises for a
# header that parse_header() rejected with `code` (n: the datagram's length).
cdef int raise_header_error(int code, Py_ssize_t n, const PacketHeader* h) except -1

# decode_packet() for any input: fast for bytes and bytearray, otherwise the
# reference's own steps (len, struct unpack, slice) so errors match exactly.
cdef MediaPacket decode_any(object data)

# encode_packet() for any arguments, with the reference's validation.
cdef object encode_any(object stream_id, object sequence, object timestamp, object fragment_index,
                       object fragment_count, object flags, object payload)
