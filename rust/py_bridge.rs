//! What `PartSink` takes from Python and gives back: a chunk's bytes, a content check written in
//! Python, and the pipeline's failures raised as Python exceptions.

use std::io;
use std::path::Path;
use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::buffer::{ContiguousBytes, DETACH_MIN_LEN};
use crate::gzip::GzipVerifier;
use crate::pipeline::{ChunkBytes, Failure, StreamCheck};
use crate::zstd::ZstdVerifier;

/// The `OSError` subclass Python itself raises for `err` (`OSError(errno, strerror, filename)`
/// picks it: `ENOSPC` -> `OSError`, `EACCES` -> `PermissionError`, `EISDIR` -> `IsADirectoryError`).
pub(crate) fn os_error(py: Python<'_>, err: &io::Error, path: &Path) -> PyErr {
    let Some(errno) = err.raw_os_error() else {
        return PyOSError::new_err(format!("{err}: {}", path.display()));
    };
    let strerror = match py
        .import("os")
        .and_then(|os| os.call_method1("strerror", (errno,)))
    {
        Ok(strerror) => strerror,
        Err(lookup_failed) => return lookup_failed,
    };
    match py
        .get_type::<PyOSError>()
        .call1((errno, strerror, path.as_os_str()))
    {
        Ok(exception) => PyErr::from_value(exception),
        Err(construction_failed) => construction_failed,
    }
}

/// The Python exception for `failure`: an `OSError` naming `path`, a `ValueError`, or what a
/// Python check raised.
pub(crate) fn failure_error(py: Python<'_>, failure: &Failure, path: &Path) -> PyErr {
    match failure {
        Failure::Io(err) => os_error(py, err, path),
        Failure::Check(message) => PyValueError::new_err(message.clone()),
        Failure::Panicked(stage) => PyRuntimeError::new_err(format!("{stage} thread panicked")),
        Failure::Gap(offset) => PyValueError::new_err(format!(
            "{} is incomplete: no bytes written at offset {offset}",
            path.display()
        )),
        Failure::Raised(exception) => PyErr::from_value(exception.bind(py).clone().into_any()),
    }
}

/// The bytes of `data` for the pipeline: a `bytes` object is held as it is (immutable, so no
/// copy); any other contiguous buffer is copied, since its owner may change it after `write`.
pub(crate) fn chunk_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<ChunkBytes> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(ChunkBytes::Shared(PyBackedBytes::from(bytes.clone())));
    }
    let buffer = ContiguousBytes::get(data)?;
    let view = buffer.as_bytes();
    let copy: Box<[u8]> = if view.len() >= DETACH_MIN_LEN {
        py.detach(|| Box::from(view))
    } else {
        Box::from(view)
    };
    Ok(ChunkBytes::Owned(copy))
}

/// A content check written in Python (an object with `feed(bytes)`: the JSON check, S3's
/// checksums), fed on the pipeline's check thread with the GIL taken for each chunk.
struct PythonCheck(Py<PyAny>);

impl StreamCheck for PythonCheck {
    fn feed_bytes(&self, chunk: &[u8]) -> Result<(), Failure> {
        Python::attach(|py| {
            self.0
                .bind(py)
                .call_method1("feed", (PyBytes::new(py, chunk),))
                .map(drop)
                .map_err(|err| Failure::Raised(Arc::new(err.into_value(py))))
        })
    }
}

/// What the pipeline feeds in file order: a native verifier (without the GIL), else any object
/// with a `feed` method (with the GIL).
pub(crate) fn stream_check(verifier: &Bound<'_, PyAny>) -> PyResult<Box<dyn StreamCheck>> {
    if let Ok(gzip) = verifier.cast::<GzipVerifier>() {
        return Ok(Box::new(gzip.clone().unbind()));
    }
    if let Ok(zstd) = verifier.cast::<ZstdVerifier>() {
        return Ok(Box::new(zstd.clone().unbind()));
    }
    if verifier.hasattr("feed")? {
        return Ok(Box::new(PythonCheck(verifier.clone().unbind())));
    }
    Err(PyTypeError::new_err(
        "verifier must be a GzipVerifier, a ZstdVerifier or an object with a feed method",
    ))
}
