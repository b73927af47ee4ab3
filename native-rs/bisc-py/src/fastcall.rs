//! `encode_packet` as a raw `METH_FASTCALL` builtin.
//!
//! The call is so short that pyo3's generic argument extraction and
//! trampoline are a measurable share of it (~7 ns of ~55 ns). This module
//! registers the function directly with CPython's vectorcall protocol: the
//! arguments arrive as a plain array of borrowed pointers. All `unsafe` code
//! of that lives here.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

const NAME: &CStr = c"encode_packet";
// "name(signature)\n--\n\n" gives the builtin a `__text_signature__`.
const DOC: &CStr = c"encode_packet(stream_id, sequence, timestamp, fragment_index, fragment_count, flags, payload, /)
--

Encode one media packet to a datagram (15-byte header + payload).";

/// The `METH_FASTCALL` entry point; CPython calls it with the thread attached.
unsafe extern "C" fn encode_packet_entry(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython only calls builtins from an attached thread.
    let py = unsafe { Python::assume_attached() };
    let outcome = catch_unwind(AssertUnwindSafe(|| -> PyResult<Bound<'_, PyBytes>> {
        if nargs != 7 {
            return Err(PyTypeError::new_err(format!(
                "encode_packet() takes exactly 7 positional arguments ({nargs} given)"
            )));
        }
        // SAFETY: for METH_FASTCALL, `args` points to `nargs` (checked: 7)
        // valid, non-NULL borrowed references that outlive this call.
        let args: [Borrowed<'_, '_, PyAny>; 7] =
            std::array::from_fn(|i| unsafe { Borrowed::from_ptr(py, *args.add(i)) });
        crate::encode_packet(&args)
    }));
    match outcome {
        Ok(Ok(bytes)) => bytes.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in encode_packet".to_owned());
            PanicException::new_err(msg).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Add `encode_packet` (backed by `crate::encode_packet`) to module `m`.
pub(crate) fn add_encode_packet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // CPython keeps a pointer to the method definition for the function's
    // lifetime, so it must never be freed: leak one per module initialisation.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: NAME.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFast: encode_packet_entry,
        },
        ml_flags: ffi::METH_FASTCALL,
        ml_doc: DOC.as_ptr(),
    }));
    let module_name = m.name()?;
    // SAFETY: `def` lives forever; `module_name` is a live str (it becomes
    // `__module__`); the result is a new reference or NULL with an exception.
    let function = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(def, std::ptr::null_mut(), module_name.as_ptr()),
        )?
    };
    m.add("encode_packet", function)
}
