# Included by _fragment.pyx (same module, same C helpers): the fragmenter,
# kept in its own file so each concept stays readable.

# -- fragmenter --------------------------------------------------------------

def fragment_frame(payload, *, stream_id, first_sequence, timestamp, flags, max_datagram_size,
                   max_frame_size=DEFAULT_MAX_FRAME_SIZE):
    """Split one frame into datagrams of at most `max_datagram_size` bytes.

    Fragments are sized evenly (they differ by at most one byte), so the last
    one is never a runt. Raises FrameTooLargeError instead of truncating.
    """
    cdef object room, size, count, base, extra, start, end, index, datagrams
    cdef unsigned long long s, t, f
    cdef uint32_t seq
    cdef Py_ssize_t c_count, c_base, c_extra, c_start, c_len, i
    cdef const char* src
    cdef bytes datagram
    cdef unsigned char* o

    room = max_datagram_size - PKT_HEADER_SIZE
    if room < 1:
        raise PacketError(
            f"max_datagram_size {max_datagram_size} leaves no room for payload "
            f"(the header is {PKT_HEADER_SIZE} bytes)"
        )
    size = len(payload)
    if size > max_frame_size:
        raise FrameTooLargeError(f"frame of {size} bytes exceeds max_frame_size {max_frame_size}")
    count = _max(1, -(-size // room))
    if count > _C_MAX_FRAGMENTS:
        raise FrameTooLargeError(
            f"frame of {size} bytes needs {count} fragments at max_datagram_size "
            f"{max_datagram_size}; the limit is {MAX_FRAGMENTS}"
        )
    base, extra = _divmod(size, count)

    if (
        type(payload) is bytes
        and type(count) is int
        and type(base) is int
        and type(extra) is int
        and type(first_sequence) is int
        and bisc_exact_uint(stream_id, 0xFF, &s)
        and bisc_exact_uint(timestamp, 0xFFFFFFFF, &t)
        and bisc_exact_uint(flags, 0xFF, &f)
    ):
        c_count = count
        c_base = base
        c_extra = extra
        seq = <uint32_t>(<unsigned long long>(first_sequence & 0xFFFFFFFF))
        src = PyBytes_AS_STRING(payload)
        datagrams = []
        c_start = 0
        for i in range(c_count):
            c_len = c_base + (1 if i < c_extra else 0)
            datagram = PyBytes_FromStringAndSize(NULL, PKT_HEADER_SIZE + c_len)
            o = <unsigned char*>PyBytes_AS_STRING(datagram)
            write_header(o, <uint8_t>s, <uint8_t>f, <uint32_t>(seq + <uint32_t>i), <uint32_t>t,
                         <uint16_t>i, <uint16_t>c_count)
            memcpy(o + PKT_HEADER_SIZE, src + c_start, <size_t>c_len)
            datagrams.append(datagram)
            c_start += c_len
        return datagrams

    # Anything else: the reference's own loop, errors included.
    datagrams = []
    start = 0
    for index in _range(count):
        end = start + base + (1 if index < extra else 0)
        datagrams.append(
            _encode_packet(
                stream_id,
                (first_sequence + index) & 0xFFFFFFFF,
                timestamp,
                index,
                count,
                flags,
                payload[start:end],
            )
        )
        start = end
    return datagrams
