# cython: language_level=3
"""C-level interface of bisc._native._packet, shared with _fragment.

Header layout (big-endian, 15 bytes), as in bisc.codec.packet:

    version u8 | stream_id u8 | flags u8 | sequence u32 | timestamp u32 |
    fragment_index u16 | fragment_count u16 | payload ...
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from *:
    """
    /* 1 (and the value in *out) if `o` is an exact int in 0..limit, else 0.
       Never raises. Reads the digits directly on CPython 3.11. */
    static CYTHON_INLINE int bisc_exact_uint(PyObject *o, unsigned long long limit,
                                             unsigned long long *out) {
        if (!PyLong_CheckExact(o)) return 0;
    #if PY_VERSION_HEX < 0x030C0000 && !defined(PYPY_VERSION) && !defined(Py_LIMITED_API) \
        && PyLong_SHIFT == 30
        {
            Py_ssize_t size = Py_SIZE(o);
            const digit *d = ((PyLongObject *)o)->ob_digit;
            unsigned long long v;
            if (size == 0) v = 0;
            else if (size == 1) v = d[0];
            else if (size == 2) v = (unsigned long long)d[0] | ((unsigned long long)d[1] << 30);
            else return 0;  /* negative, or at least 2**60 */
            if (v > limit) return 0;
            *out = v;
            return 1;
        }
    #else
        {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
            if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
            if (overflow != 0 || v < 0 || (unsigned long long)v > limit) return 0;
            *out = (unsigned long long)v;
            return 1;
        }
    #endif
    }
    """
    bint bisc_exact_uint(object o, unsigned long long limit, unsigned long long* out) noexcept

cdef enum:
    PKT_VERSION = 1
    PKT_HEADER_SIZE = 15
    PKT_FLAG_KEYFRAME = 0x01

# parse_header() results. For anything but PKT_OK, decode_packet() raises the
# reference's PacketError.
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
