# cython: language_level=3, autotestdict=False, embedsignature=False
"""Fragmenter and reassembler, compiled: same behaviour as bisc.codec.fragment.

Datagrams are parsed and built with _packet's C-level header routines. The
reassembler keeps each partial frame in a C record: the fragments it holds
(for `bytes` datagrams, the datagram itself, so nothing is copied until the
frame is joined with one allocation), its fields and its size. Partial frames
are also kept in a linked list in first-arrival order (the reference's dict order),
so the oldest is found in O(1) for expiry and eviction. Limits and times that
are exact ints or floats are compared in C; anything else is compared with
Python's operators, exactly as the reference does.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.limits cimport LLONG_MAX, LLONG_MIN
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from bisc._native._packet cimport (
    PKT_HEADER_SIZE,
    PKT_OK,
    MediaPacket,
    PacketHeader,
    bisc_exact_uint,
    parse_header,
    write_header,
)

import builtins as _builtins

# Only for inputs off the fast paths (and to raise the errors of bad ones).
from bisc._native._packet import decode_packet as _decode_packet
from bisc._native._packet import encode_packet as _encode_packet
from bisc.errors import FrameTooLargeError, PacketError

cdef extern from "Python.h":
    # Cannot fail for an exact int, which is all it is given here.
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) noexcept
    # Borrowed-pointer forms, for the fragment table.
    char* _bytes_data "PyBytes_AS_STRING" (PyObject* o) noexcept
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE" (PyObject* o) noexcept

MAX_FRAGMENTS = 0xFFFF
DEFAULT_MAX_FRAME_SIZE = 2 * 1024 * 1024
DEFAULT_MAX_FRAMES_IN_FLIGHT = 16
DEFAULT_TIMEOUT = 1.0
DEFAULT_HISTORY = 256
# Bounds the per-fragment bookkeeping of one frame (see bisc.codec.fragment).
DEFAULT_MAX_FRAGMENTS = 4096

STAT_NAMES = ("completed", "duplicates", "late", "inconsistent", "oversize", "evicted", "expired")

# The builtins themselves, so the slow paths behave as the reference's do
# (Cython would otherwise inline its own versions of these calls).
cdef object _max = _builtins.max
cdef object _min = _builtins.min
cdef object _divmod = _builtins.divmod
cdef object _range = _builtins.range

cdef enum:
    _C_MAX_FRAGMENTS = 0xFFFF

cdef enum Reason:
    R_OVERSIZE
    R_EVICTED
    R_EXPIRED


include "_fragmenter.pxi"


# -- frames ------------------------------------------------------------------

@cython.freelist(8)
@cython.auto_pickle(False)
cdef class Frame:
    """Frame(stream_id, sequence, timestamp, flags, fragment_count, payload)
--

A reassembled frame."""

    cdef public object stream_id
    cdef public object sequence  # sequence number of fragment 0
    cdef public object timestamp
    cdef public object flags
    cdef public object fragment_count
    cdef public object payload

    def __init__(self, stream_id, sequence, timestamp, flags, fragment_count, payload):
        self.stream_id = stream_id
        self.sequence = sequence
        self.timestamp = timestamp
        self.flags = flags
        self.fragment_count = fragment_count
        self.payload = payload

    @property
    def is_keyframe(self):
        return bool(self.flags & 0x01)

    def __reduce__(self):
        return (Frame, (self.stream_id, self.sequence, self.timestamp, self.flags,
                        self.fragment_count, self.payload))

    def __repr__(self):
        return (
            f"Frame(stream_id={self.stream_id}, sequence={self.sequence}, "
            f"timestamp={self.timestamp}, flags={self.flags}, "
            f"fragment_count={self.fragment_count}, payload=<{len(self.payload)} bytes>)"
        )


# -- reassembler -------------------------------------------------------------

ctypedef struct _Slot:
    PyObject* obj  # owned; NULL until the fragment arrives
    Py_ssize_t off  # where its payload starts in obj


cdef inline bint _int_limit(object value, long long* out) noexcept:
    """An exact int limit as a C value (clamped: compared only with sizes)."""
    cdef int overflow = 0
    cdef long long v
    if type(value) is not int:
        return False
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow > 0:
        v = LLONG_MAX
    elif overflow < 0:
        v = LLONG_MIN
    out[0] = v
    return True


cdef inline bint _time_value(object value, double* out) noexcept:
    """An exact float, or an exact int small enough that float arithmetic on
    it is exact, as a C double."""
    cdef int overflow = 0
    cdef long long v
    if type(value) is float:
        out[0] = PyFloat_AS_DOUBLE(value)
        return True
    if type(value) is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and -4503599627370496 <= v <= 4503599627370496:  # 2**52
            out[0] = <double>v
            return True
    return False


cdef inline int _gt(long long a, object limit, long long c_limit, bint exact) except -1:
    # a > limit, as Python would compare them.
    if exact:
        return a > c_limit
    return bool(a > limit)


cdef inline int _ge(long long a, object limit, long long c_limit, bint exact) except -1:
    if exact:
        return a >= c_limit
    return bool(a >= limit)


@cython.final
@cython.no_gc
@cython.freelist(16)
@cython.auto_pickle(False)
cdef class _Partial:
    cdef object key  # Python int: stream_id << 32 | first sequence
    cdef unsigned long long key_c
    cdef object arrival
    cdef double arrival_c
    cdef bint arrival_exact  # arrival_c is arrival
    cdef uint32_t timestamp
    cdef unsigned int flags
    cdef Py_ssize_t count
    cdef Py_ssize_t received
    cdef Py_ssize_t size
    cdef _Slot* slots
    # Neighbours in first-arrival order; borrowed (the dict owns partials).
    cdef PyObject* older
    cdef PyObject* newer

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.slots != NULL:
            for i in range(self.count):
                Py_XDECREF(self.slots[i].obj)
            free(self.slots)
            self.slots = NULL


@cython.auto_pickle(False)
cdef class Reassembler:
    """Reassembler(*, max_frame_size=2097152, max_frames_in_flight=16, timeout=1.0, max_fragments=4096, history=256)
--

Turns fragment datagrams back into frames, with bounded memory.

    Malformed datagrams raise PacketError; well-formed but unusable ones
    (duplicates, fragments of a frame already finished or dropped, fields
    that contradict earlier fragments of the same frame) only bump counters.
    """

    # The limits as given, and as C values when they are exact ints/floats.
    cdef object _max_frame_size, _max_fragments, _max_frames_in_flight, _timeout, _history
    cdef long long _c_max_frame_size, _c_max_fragments, _c_max_frames_in_flight, _c_history
    cdef bint _x_max_frame_size, _x_max_fragments, _x_max_frames_in_flight, _x_history
    cdef double _c_timeout
    cdef bint _x_timeout

    cdef dict _partial  # key -> _Partial
    cdef dict _finished  # recently finished frame keys, oldest first
    cdef PyObject* _oldest  # borrowed ends of the first-arrival list
    cdef PyObject* _newest
    cdef _Partial _last  # the partial frame the previous fragment went to
    cdef Py_ssize_t _buffered

    cdef unsigned long long _completed, _duplicates, _late, _inconsistent
    cdef unsigned long long _oversize, _evicted, _expired

    def __cinit__(self):
        self._partial = {}
        self._finished = {}
        self._oldest = NULL
        self._newest = NULL

    def __init__(
        self,
        *,
        max_frame_size=DEFAULT_MAX_FRAME_SIZE,
        max_frames_in_flight=DEFAULT_MAX_FRAMES_IN_FLIGHT,
        timeout=DEFAULT_TIMEOUT,
        max_fragments=DEFAULT_MAX_FRAGMENTS,
        history=DEFAULT_HISTORY,
    ):
        if _min(max_frame_size, max_frames_in_flight, max_fragments, history) < 1 or timeout <= 0:
            raise ValueError("reassembler limits must be positive")
        self.max_frame_size = max_frame_size
        self.max_fragments = max_fragments
        self.max_frames_in_flight = max_frames_in_flight
        self.timeout = timeout
        self.history = history

    # -- limits (plain attributes in the reference) --------------------------

    @property
    def max_frame_size(self):
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value):
        self._x_max_frame_size = _int_limit(value, &self._c_max_frame_size)
        self._max_frame_size = value

    @property
    def max_fragments(self):
        return self._max_fragments

    @max_fragments.setter
    def max_fragments(self, value):
        self._x_max_fragments = _int_limit(value, &self._c_max_fragments)
        self._max_fragments = value

    @property
    def max_frames_in_flight(self):
        return self._max_frames_in_flight

    @max_frames_in_flight.setter
    def max_frames_in_flight(self, value):
        self._x_max_frames_in_flight = _int_limit(value, &self._c_max_frames_in_flight)
        self._max_frames_in_flight = value

    @property
    def timeout(self):
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        self._x_timeout = _time_value(value, &self._c_timeout)
        self._timeout = value

    @property
    def history(self):
        return self._history

    @history.setter
    def history(self, value):
        self._x_history = _int_limit(value, &self._c_history)
        self._history = value

    # -- state ---------------------------------------------------------------

    @property
    def in_flight(self):
        return len(self._partial)

    @property
    def buffered_bytes(self):
        return self._buffered

    def stats(self):
        return {
            "completed": self._completed,
            "duplicates": self._duplicates,
            "late": self._late,
            "inconsistent": self._inconsistent,
            "oversize": self._oversize,
            "evicted": self._evicted,
            "expired": self._expired,
        }

    # -- bookkeeping ---------------------------------------------------------

    cdef int _finish(self, object key) except -1:
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        cdef object oldest
        self._finished[key] = None
        if _gt(len(self._finished), self._history, self._c_history, self._x_history):
            PyDict_Next(self._finished, &pos, &k, &v)
            oldest = <object>k
            del self._finished[oldest]
        return 0

    cdef int _remove(self, _Partial part) except -1:
        # Take `part` out of the dict and the first-arrival list.
        cdef _Partial keep = part  # the dict's reference goes away below
        del self._partial[keep.key]
        if keep.older != NULL:
            (<_Partial>keep.older).newer = keep.newer
        else:
            self._oldest = keep.newer
        if keep.newer != NULL:
            (<_Partial>keep.newer).older = keep.older
        else:
            self._newest = keep.older
        keep.older = NULL
        keep.newer = NULL
        self._buffered -= keep.size
        if self._last is keep:
            self._last = None
        return 0

    cdef int _drop(self, _Partial part, Reason reason) except -1:
        cdef _Partial keep = part
        self._remove(keep)
        self._finish(keep.key)
        if reason == R_OVERSIZE:
            self._oversize += 1
        elif reason == R_EVICTED:
            self._evicted += 1
        else:
            self._expired += 1
        return 0

    cdef Py_ssize_t _expire(self, object now) except -1:
        cdef double now_c = 0.0, deadline_c = 0.0
        cdef bint fast = self._x_timeout and _time_value(now, &now_c)
        cdef bint have_deadline = False
        cdef object deadline = None
        cdef Py_ssize_t dropped = 0
        cdef _Partial part
        if fast:
            deadline_c = now_c - self._c_timeout
        else:
            deadline = now - self._timeout
            have_deadline = True
        while self._oldest != NULL:
            part = <_Partial>self._oldest
            if fast and part.arrival_exact:
                if part.arrival_c > deadline_c:
                    break
            else:
                if not have_deadline:
                    deadline = now - self._timeout
                    have_deadline = True
                if part.arrival > deadline:
                    break
            self._drop(part, R_EXPIRED)
            dropped += 1
        return dropped

    def expire(self, now):
        """Drop frames whose first fragment arrived `timeout` or more ago."""
        return self._expire(now)

    cdef object _complete(self, object key, unsigned int stream_id, uint32_t sequence,
                          uint32_t timestamp, unsigned int flags, Py_ssize_t count,
                          bytes payload):
        cdef Frame frame
        self._finish(key)
        if _gt(PyBytes_GET_SIZE(payload), self._max_frame_size, self._c_max_frame_size,
               self._x_max_frame_size):
            self._oversize += 1
            return None
        self._completed += 1
        frame = Frame.__new__(Frame)
        frame.stream_id = stream_id
        frame.sequence = sequence
        frame.timestamp = timestamp
        frame.flags = flags
        frame.fragment_count = count
        frame.payload = payload
        return frame

    cdef _Partial _open(self, object key, unsigned long long key_c, object now,
                        const PacketHeader* h):
        cdef _Partial part = _Partial.__new__(_Partial)
        part.slots = <_Slot*>calloc(h.fragment_count, sizeof(_Slot))
        if part.slots == NULL:
            raise MemoryError()
        part.count = h.fragment_count
        part.key = key
        part.key_c = key_c
        part.arrival = now
        part.arrival_exact = _time_value(now, &part.arrival_c)
        part.timestamp = h.timestamp
        part.flags = h.flags
        self._partial[key] = part
        part.older = self._newest
        part.newer = NULL
        if self._newest != NULL:
            (<_Partial>self._newest).newer = <PyObject*>part
        else:
            self._oldest = <PyObject*>part
        self._newest = <PyObject*>part
        return part

    cdef object _add(self, const PacketHeader* h, object store, Py_ssize_t off,
                     Py_ssize_t length, object now):
        # The reference's push() after decoding. `store` holds the payload
        # at `off` (the datagram itself, or a copy of its payload).
        cdef unsigned int index = h.fragment_index
        cdef unsigned int count = h.fragment_count
        cdef uint32_t first = h.sequence - index
        cdef unsigned long long key_c = ((<unsigned long long>h.stream_id) << 32) | first
        cdef _Partial part
        cdef object key
        cdef bytes joined
        cdef char* out
        cdef Py_ssize_t i, n
        cdef PyObject* obj

        if self._oldest != NULL:
            self._expire(now)
        part = self._last
        if part is None or part.key_c != key_c:
            # A partial frame is never also finished, so looking it up first
            # gives the reference's answers.
            key = PyLong_FromUnsignedLongLong(key_c)
            part = self._partial.get(key)
            if part is None:
                if key in self._finished:
                    self._late += 1
                    return None
                if count == 1:
                    if off != 0:
                        store = PyBytes_FromStringAndSize(PyBytes_AS_STRING(store) + off, length)
                    return self._complete(key, h.stream_id, first, h.timestamp, h.flags, 1,
                                          <bytes>store)
                if _gt(count, self._max_fragments, self._c_max_fragments,
                       self._x_max_fragments):
                    self._finish(key)
                    self._oversize += 1
                    return None
                if _ge(len(self._partial), self._max_frames_in_flight,
                       self._c_max_frames_in_flight, self._x_max_frames_in_flight):
                    if self._oldest == NULL:
                        raise StopIteration  # next(iter({})), as in the reference
                    self._drop(<_Partial>self._oldest, R_EVICTED)
                part = self._open(key, key_c, now, h)
                self._last = part
                index = h.fragment_index  # (new frame: no checks to make)
            else:
                self._last = part
                if (count != part.count or h.timestamp != part.timestamp
                        or h.flags != part.flags):
                    self._inconsistent += 1
                    return None
                if part.slots[index].obj != NULL:
                    self._duplicates += 1
                    return None
        else:
            if count != part.count or h.timestamp != part.timestamp or h.flags != part.flags:
                self._inconsistent += 1
                return None
            if part.slots[index].obj != NULL:
                self._duplicates += 1
                return None

        part.size += length
        self._buffered += length
        if _gt(part.size, self._max_frame_size, self._c_max_frame_size, self._x_max_frame_size):
            self._drop(part, R_OVERSIZE)
            return None
        Py_INCREF(store)
        part.slots[index].obj = <PyObject*>store
        part.slots[index].off = off
        part.received += 1
        if part.received < part.count:
            return None

        self._remove(part)
        joined = PyBytes_FromStringAndSize(NULL, part.size)
        out = PyBytes_AS_STRING(joined)
        for i in range(part.count):
            obj = part.slots[i].obj
            n = _bytes_size(obj) - part.slots[i].off
            memcpy(out, _bytes_data(obj) + part.slots[i].off, <size_t>n)
            out += n
        return self._complete(part.key, h.stream_id, first, part.timestamp, part.flags,
                              part.count, joined)

    def push(self, datagram, now):
        """Add one datagram; return the frame it completes, if any."""
        cdef PacketHeader h
        cdef const unsigned char* buf
        cdef Py_ssize_t n
        cdef int rc
        cdef MediaPacket packet
        if type(datagram) is bytes:
            buf = <const unsigned char*>PyBytes_AS_STRING(datagram)
            n = PyBytes_GET_SIZE(datagram)
            rc = parse_header(buf, n, &h)
            if rc == PKT_OK:
                return self._add(&h, datagram, PKT_HEADER_SIZE, n - PKT_HEADER_SIZE, now)
        # Not bytes, or malformed (decode_packet raises the reference's error).
        packet = _decode_packet(datagram)
        h.stream_id = <uint8_t>packet.stream_id
        h.flags = <uint8_t>packet.flags
        h.sequence = packet.sequence
        h.timestamp = packet.timestamp
        h.fragment_index = <uint16_t>packet.fragment_index
        h.fragment_count = <uint16_t>packet.fragment_count
        return self._add(&h, packet.payload, 0, PyBytes_GET_SIZE(packet.payload), now)
