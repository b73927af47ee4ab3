//! `bisc._bisc_rs`: Python bindings for `bisc-core`.
//!
//! Everything here is a thin wrapper: argument checking, conversion to and
//! from Python objects, and mapping errors onto `bisc.errors`.

use std::os::raw::c_int;
use std::path::PathBuf;

use bisc_core::chunkhash::{self, ChunkHashError, CHUNK_SIZE};
use bisc_core::packet::{self, PacketError, PacketHeader, HEADER_SIZE, VERSION};
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyMemoryView, PyType};
use pyo3::{ffi, intern};

mod fastcall;
mod output;

// ---------------------------------------------------------------------------
// Errors

static PACKET_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CHUNK_HASH_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// An instance of `bisc.errors.<name>` (imported once, then cached).
#[cold]
fn bisc_error(py: Python<'_>, cell: &PyOnceLock<Py<PyType>>, name: &str, msg: String) -> PyErr {
    match cell.import(py, "bisc.errors", name) {
        Ok(cls) => PyErr::from_type(cls.clone(), msg),
        Err(e) => e,
    }
}

#[cold]
fn packet_error(py: Python<'_>, msg: String) -> PyErr {
    bisc_error(py, &PACKET_ERROR, "PacketError", msg)
}

#[cold]
fn chunk_hash_error(py: Python<'_>, msg: String) -> PyErr {
    bisc_error(py, &CHUNK_HASH_ERROR, "ChunkHashError", msg)
}

#[cold]
fn from_packet_error(py: Python<'_>, e: PacketError) -> PyErr {
    packet_error(py, e.to_string())
}

/// An `OSError` carrying errno/strerror/filename, so Python picks the usual
/// subclass (`FileNotFoundError`, `PermissionError`, ...).
#[cold]
fn os_error(e: std::io::Error, path: &Bound<'_, PyAny>) -> PyErr {
    let Some(code) = e.raw_os_error() else {
        return e.into();
    };
    let text = e.to_string();
    let suffix = format!(" (os error {code})");
    let strerror = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    #[cfg(windows)]
    {
        // OSError(errno, strerror, filename, winerror): errno is derived from winerror.
        PyOSError::new_err((0, strerror, path.clone().unbind(), code))
    }
    #[cfg(not(windows))]
    {
        PyOSError::new_err((code, strerror, path.clone().unbind()))
    }
}

#[cold]
fn from_chunk_error(e: ChunkHashError, path: &Bound<'_, PyAny>) -> PyErr {
    let py = path.py();
    match e {
        ChunkHashError::Io(io) => os_error(io, path),
        short @ ChunkHashError::ShortFile { .. } => chunk_hash_error(py, short.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Argument parsing

/// Why an integer argument was rejected (the message is built by the caller,
/// off the hot path).
enum BadInt {
    NotInt,
    OutOfRange,
}

/// A Python `int` (not `bool`) in `0..=max`.
#[inline(always)]
fn uint_arg(obj: &Bound<'_, PyAny>, max: u64) -> Result<u64, BadInt> {
    // Exact ints are the hot path; int subclasses other than bool are accepted
    // too, like the pure-Python reference does.
    if !obj.is_exact_instance_of::<PyInt>()
        && (!obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>())
    {
        return Err(BadInt::NotInt);
    }
    let mut overflow: c_int = 0;
    // SAFETY: `obj` is a live `int` (checked above) and the GIL is held.
    // For an int this cannot fail; it reports values beyond i64 in `overflow`.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow != 0 || v < 0 || v as u64 > max {
        if v == -1 {
            // Defensive: clear an error, should the C API ever set one.
            drop(PyErr::take(obj.py()));
        }
        return Err(BadInt::OutOfRange);
    }
    Ok(v as u64)
}

#[cold]
fn bad_int_message(obj: &Bound<'_, PyAny>, field: &str, why: BadInt) -> String {
    match why {
        BadInt::NotInt => format!("{field} must be an int"),
        BadInt::OutOfRange => match obj.repr() {
            Ok(r) => format!("{field} out of range: {r}"),
            Err(_) => format!("{field} out of range"),
        },
    }
}

/// A packet header field: a Python int in `0..=max`, else `PacketError`.
#[inline(always)]
fn packet_field(obj: &Bound<'_, PyAny>, field: &str, max: u64) -> PyResult<u64> {
    uint_arg(obj, max).map_err(|why| packet_error(obj.py(), bad_int_message(obj, field, why)))
}

/// A chunk-hashing integer argument, classified.
enum ChunkInt {
    Negative,
    Value(u64),
    /// Larger than `u64::MAX`.
    Huge,
}

/// Classify a chunk-hashing argument; `TypeError` if it is not an int.
fn chunk_int(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<ChunkInt> {
    let Ok(int) = obj.cast::<PyInt>() else {
        return Err(PyTypeError::new_err(format!("{field} must be an int")));
    };
    if let Ok(v) = int.extract::<u64>() {
        return Ok(ChunkInt::Value(v));
    }
    Ok(if int.lt(0)? {
        ChunkInt::Negative
    } else {
        ChunkInt::Huge
    })
}

/// Build and validate a header from the Python arguments.
#[inline(always)]
fn header_from_args(
    stream_id: &Bound<'_, PyAny>,
    sequence: &Bound<'_, PyAny>,
    timestamp: &Bound<'_, PyAny>,
    fragment_index: &Bound<'_, PyAny>,
    fragment_count: &Bound<'_, PyAny>,
    flags: &Bound<'_, PyAny>,
) -> PyResult<PacketHeader> {
    let header = PacketHeader {
        stream_id: packet_field(stream_id, "stream_id", u8::MAX.into())? as u8,
        sequence: packet_field(sequence, "sequence", u32::MAX.into())? as u32,
        timestamp: packet_field(timestamp, "timestamp", u32::MAX.into())? as u32,
        fragment_index: packet_field(fragment_index, "fragment_index", u16::MAX.into())? as u16,
        fragment_count: packet_field(fragment_count, "fragment_count", u16::MAX.into())? as u16,
        flags: packet_field(flags, "flags", u8::MAX.into())? as u8,
    };
    header
        .validate()
        .map_err(|e| from_packet_error(stream_id.py(), e))?;
    Ok(header)
}

/// `header + payload` as a new `bytes`, written in place: no zero-fill, no
/// intermediate buffer, and usually no allocation (see [`output`]).
#[inline(always)]
fn encode_to_bytes<'py>(
    py: Python<'py>,
    header: &PacketHeader,
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let head = header.to_bytes();
    let obj = output::new_bytes(py, HEADER_SIZE + payload.len())?;
    // SAFETY: `new_bytes` returns a bytes object of exactly
    // `HEADER_SIZE + payload.len()` bytes that no one else can see yet, for
    // us to fill; both copies stay inside it.
    unsafe {
        let buf = ffi::PyBytes_AS_STRING(obj.as_ptr()) as *mut u8;
        std::ptr::copy_nonoverlapping(head.as_ptr(), buf, HEADER_SIZE);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), buf.add(HEADER_SIZE), payload.len());
    }
    Ok(obj)
}

/// The contents of a `bytes` object (inlined `PyBytes_AS_STRING`/`Py_SIZE`).
#[inline(always)]
fn bytes_of<'a>(bytes: &'a Bound<'_, PyBytes>) -> &'a [u8] {
    // SAFETY: `bytes` is a live bytes object; its data is immutable and lives
    // as long as the borrowed reference.
    unsafe {
        let ptr = bytes.as_ptr();
        std::slice::from_raw_parts(
            ffi::PyBytes_AS_STRING(ptr) as *const u8,
            ffi::Py_SIZE(ptr) as usize,
        )
    }
}

/// `header + payload` for a payload that is not exactly `bytes`: whatever
/// `bytes.__add__` accepts (bytearray, memoryview, ...), like the reference.
#[cold]
fn encode_any<'py>(
    header: &PacketHeader,
    payload: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let head = PyBytes::new(payload.py(), &header.to_bytes());
    Ok(head.add(payload)?.cast_into::<PyBytes>()?)
}

/// The raw bytes of any buffer-protocol object (`memoryview(obj).tobytes()`).
#[cold]
fn buffer_to_bytes<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyMemoryView::from(obj)?
        .call_method0(intern!(obj.py(), "tobytes"))?
        .cast_into::<PyBytes>()?)
}

/// `bytes(obj)`, without a copy when `obj` is exactly `bytes`.
fn to_bytes<'py>(obj: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    if obj.is_exact_instance_of::<PyBytes>() {
        return Ok(obj.cast_into::<PyBytes>()?);
    }
    Ok(obj
        .py()
        .get_type::<PyBytes>()
        .call1((obj,))?
        .cast_into::<PyBytes>()?)
}

// ---------------------------------------------------------------------------
// MediaPacket

/// One media datagram: a header and its payload.
#[pyclass(frozen, module = "bisc._bisc_rs", name = "MediaPacket")]
pub struct MediaPacket {
    header: PacketHeader,
    payload: Py<PyBytes>,
}

#[pymethods]
impl MediaPacket {
    #[new]
    #[pyo3(signature = (stream_id, sequence, timestamp, fragment_index, fragment_count, flags, payload))]
    fn new(
        stream_id: &Bound<'_, PyAny>,
        sequence: &Bound<'_, PyAny>,
        timestamp: &Bound<'_, PyAny>,
        fragment_index: &Bound<'_, PyAny>,
        fragment_count: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyAny>,
        payload: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let header = header_from_args(
            stream_id,
            sequence,
            timestamp,
            fragment_index,
            fragment_count,
            flags,
        )?;
        Ok(MediaPacket {
            header,
            payload: to_bytes(payload)?.unbind(),
        })
    }

    #[getter]
    fn stream_id(&self) -> u8 {
        self.header.stream_id
    }

    #[getter]
    fn sequence(&self) -> u32 {
        self.header.sequence
    }

    #[getter]
    fn timestamp(&self) -> u32 {
        self.header.timestamp
    }

    #[getter]
    fn fragment_index(&self) -> u16 {
        self.header.fragment_index
    }

    #[getter]
    fn fragment_count(&self) -> u16 {
        self.header.fragment_count
    }

    #[getter]
    fn flags(&self) -> u8 {
        self.header.flags
    }

    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        self.payload.clone_ref(py)
    }

    /// Whether the keyframe flag (bit 0 of ``flags``) is set.
    #[getter]
    fn is_keyframe(&self) -> bool {
        self.header.is_keyframe()
    }

    /// The packet as one datagram (header then payload).
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        encode_to_bytes(py, &self.header, bytes_of(self.payload.bind(py)))
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> Py<PyAny> {
        let py = other.py();
        let Ok(other) = other.cast::<MediaPacket>() else {
            return py.NotImplemented();
        };
        let other = other.get();
        let equal = || {
            self.header == other.header
                && (self.payload.is(&other.payload)
                    || self.payload.as_bytes(py) == other.payload.as_bytes(py))
        };
        match op {
            CompareOp::Eq => PyBool::new(py, equal()).to_owned().into_any().unbind(),
            CompareOp::Ne => PyBool::new(py, !equal()).to_owned().into_any().unbind(),
            _ => py.NotImplemented(),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let h = &self.header;
        format!(
            "MediaPacket(stream_id={}, sequence={}, timestamp={}, fragment_index={}, \
             fragment_count={}, flags={}, payload=<{} bytes>)",
            h.stream_id,
            h.sequence,
            h.timestamp,
            h.fragment_index,
            h.fragment_count,
            h.flags,
            self.payload.as_bytes(py).len()
        )
    }
}

// ---------------------------------------------------------------------------
// Functions

/// `encode_packet(stream_id, sequence, timestamp, fragment_index,
/// fragment_count, flags, payload, /)`: registered by hand in `fastcall` (the
/// pyo3 argument machinery costs ~15% of this very short call).
fn encode_packet<'py>(args: &[Borrowed<'_, 'py, PyAny>; 7]) -> PyResult<Bound<'py, PyBytes>> {
    let [stream_id, sequence, timestamp, fragment_index, fragment_count, flags, payload] = args;
    let header = header_from_args(
        stream_id,
        sequence,
        timestamp,
        fragment_index,
        fragment_count,
        flags,
    )?;
    match payload.cast_exact::<PyBytes>() {
        Ok(bytes) => encode_to_bytes(payload.py(), &header, bytes_of(&bytes)),
        Err(_) => encode_any(&header, payload),
    }
}

/// Decode one datagram into a MediaPacket.
#[pyfunction]
fn decode_packet(data: &Bound<'_, PyAny>) -> PyResult<MediaPacket> {
    match data.cast_exact::<PyBytes>() {
        Ok(bytes) => decode_slice(data.py(), bytes_of(bytes)),
        Err(_) => decode_slice(data.py(), buffer_to_bytes(data)?.as_bytes()),
    }
}

#[inline(always)]
fn decode_slice(py: Python<'_>, data: &[u8]) -> PyResult<MediaPacket> {
    let (header, payload) = packet::decode(data).map_err(|e| from_packet_error(py, e))?;
    Ok(MediaPacket {
        header,
        payload: PyBytes::new(py, payload).unbind(),
    })
}

/// SHA-256 of each CHUNK_SIZE chunk of ``data`` (the GIL is released).
#[pyfunction]
fn hash_chunks<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    let py = data.py();
    // Only an immutable `bytes` may be read without the GIL; copy anything
    // else (bytearray, memoryview, ...) first.
    let owned;
    let bytes = match data.cast_exact::<PyBytes>() {
        Ok(b) => b,
        Err(_) => {
            owned = buffer_to_bytes(data)?;
            &owned
        }
    };
    let slice = bytes.as_bytes();
    let hashes = py.detach(|| chunkhash::hash_chunks_parallel(slice, 0));
    PyList::new(py, hashes.iter().map(|h| PyBytes::new(py, h)))
}

/// Concatenated SHA-256 hashes of chunks ``first_chunk .. first_chunk + count``
/// of the file at ``path`` (the GIL is released).
#[pyfunction]
fn hash_file_chunks<'py>(
    path: &Bound<'py, PyAny>,
    first_chunk: &Bound<'py, PyAny>,
    count: &Bound<'py, PyAny>,
    threads: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let py = path.py();
    let first = chunk_int(first_chunk, "first_chunk")?;
    let n = chunk_int(count, "count")?;
    // Like the reference: threads <= 0 means all cores.
    let threads = match chunk_int(threads, "threads")? {
        ChunkInt::Negative => 0,
        ChunkInt::Value(v) => usize::try_from(v).unwrap_or(usize::MAX),
        ChunkInt::Huge => usize::MAX,
    };
    let (first, n) = match (first, n) {
        (ChunkInt::Negative, _) | (_, ChunkInt::Negative) => {
            return Err(chunk_hash_error(
                py,
                "chunk range must not be negative".to_owned(),
            ))
        }
        (_, ChunkInt::Value(0)) => return Ok(PyBytes::new(py, b"")),
        (ChunkInt::Value(f), ChunkInt::Value(n)) => (f, n),
        _ => return Err(huge_range(path, first_chunk, count)),
    };
    let fs_path: PathBuf = path.extract()?;
    let result = py.detach(|| chunkhash::hash_file_chunks(&fs_path, first, n, threads));
    match result {
        Ok(hashes) => Ok(PyBytes::new(py, hashes.as_flattened())),
        Err(e) => Err(from_chunk_error(e, path)),
    }
}

/// The error for a chunk range beyond `u64` (no file is that long), with the
/// reference's message, computed with Python ints.
#[cold]
fn huge_range(
    path: &Bound<'_, PyAny>,
    first_chunk: &Bound<'_, PyAny>,
    count: &Bound<'_, PyAny>,
) -> PyErr {
    let py = path.py();
    let size = match path
        .extract::<PathBuf>()
        .and_then(|p| std::fs::metadata(&p).map_err(|e| os_error(e, path)))
    {
        Ok(meta) => meta.len(),
        Err(e) => return e,
    };
    let message = || -> PyResult<String> {
        let last = first_chunk.add(count)?.sub(1)?;
        let needed = last.mul(CHUNK_SIZE)?.add(1)?;
        Ok(format!(
            "file is shorter than expected: chunk {last} needs bytes up to {needed}, file has {size}"
        ))
    };
    match message() {
        Ok(msg) => chunk_hash_error(py, msg),
        Err(e) => e,
    }
}

/// Rust implementations of bisc's hot paths: the media packet codec and the
/// file chunk hasher (see native-rs/ and bisc/_bisc_rs.pyi).
#[pymodule]
fn _bisc_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VERSION", VERSION)?;
    m.add("HEADER_SIZE", HEADER_SIZE)?;
    m.add("CHUNK_SIZE", CHUNK_SIZE)?;
    m.add_class::<MediaPacket>()?;
    fastcall::add_encode_packet(m)?;
    m.add_function(wrap_pyfunction!(decode_packet, m)?)?;
    m.add_function(wrap_pyfunction!(hash_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file_chunks, m)?)?;
    Ok(())
}
