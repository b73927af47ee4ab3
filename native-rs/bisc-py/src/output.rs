//! The bytes objects `encode_packet` fills.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A `bytes` object of `len` bytes whose contents the caller must overwrite
/// completely before handing it out (no zero-filling first, unlike
/// `PyBytes::new_with`).
#[inline(always)]
pub(crate) fn new_bytes(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyBytes>> {
    // SAFETY: `PyBytes_FromStringAndSize(NULL, len)` returns a new bytes
    // object with `len` uninitialised data bytes, or NULL with an exception.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t),
        )?
        .cast_into_unchecked::<PyBytes>()
    };
    Ok(obj)
}
