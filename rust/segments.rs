//! `PartWriter`: one preallocated part file written at offsets by several connections at once,
//! with the GIL released (`pwrite`/`pread`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::ContiguousBytes;
use crate::sync::with_locked;

const CLOSED_MESSAGE: &str = "I/O operation on a closed PartWriter";

/// A part file of a known size, written and read at offsets from any thread.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct PartWriter {
    path: PathBuf,
    size: u64,
    file: Mutex<Option<Arc<File>>>,
}

impl PartWriter {
    fn file(&self, py: Python<'_>) -> PyResult<Arc<File>> {
        with_locked(py, &self.file, |file| file.clone())
            .ok_or_else(|| PyValueError::new_err(CLOSED_MESSAGE))
    }

    fn os_error(&self, err: &io::Error) -> PyErr {
        match err.raw_os_error() {
            Some(errno) => PyOSError::new_err((
                errno,
                err.to_string(),
                self.path.to_string_lossy().into_owned(),
            )),
            None => PyOSError::new_err(format!("{err}: {}", self.path.display())),
        }
    }

    fn check_span(&self, offset: u64, length: u64) -> PyResult<()> {
        if offset.checked_add(length).is_none_or(|end| end > self.size) {
            return Err(PyValueError::new_err(format!(
                "bytes {offset}..{offset}+{length} lie outside the part file's {} bytes",
                self.size
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl PartWriter {
    /// Open `path` for `size` bytes: created (or emptied) and sized, or with `keep` the existing
    /// file, which must already hold exactly `size` bytes (`ValueError` otherwise).
    #[new]
    #[pyo3(signature = (path, size, *, keep = false))]
    fn new(py: Python<'_>, path: PathBuf, size: u64, keep: bool) -> PyResult<Self> {
        let opened = py.detach(|| -> io::Result<Result<File, u64>> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(!keep)
                .truncate(!keep)
                .open(&path)?;
            if keep {
                let held = file.metadata()?.len();
                if held != size {
                    return Ok(Err(held));
                }
            } else {
                file.set_len(size)?;
            }
            Ok(Ok(file))
        });
        let mut writer = Self {
            path,
            size,
            file: Mutex::new(None),
        };
        match opened {
            Err(err) => Err(writer.os_error(&err)),
            Ok(Err(held)) => Err(PyValueError::new_err(format!(
                "cannot continue {}: it holds {held} bytes, not {size}",
                writer.path.display()
            ))),
            Ok(Ok(file)) => {
                writer.file = Mutex::new(Some(Arc::new(file)));
                Ok(writer)
            }
        }
    }

    /// The part file's size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// Write all of `data` at `offset` with the GIL released; return the number of bytes written.
    fn pwrite(&self, py: Python<'_>, data: &Bound<'_, PyAny>, offset: u64) -> PyResult<usize> {
        let file = self.file(py)?;
        let bytes = ContiguousBytes::get(data)?;
        let chunk = bytes.as_bytes();
        self.check_span(offset, chunk.len() as u64)?;
        py.detach(|| file.write_all_at(chunk, offset))
            .map_err(|err| self.os_error(&err))?;
        Ok(chunk.len())
    }

    /// Read `length` bytes at `offset` with the GIL released.
    fn pread<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let file = self.file(py)?;
        self.check_span(offset, length as u64)?;
        let mut buffer = vec![0u8; length];
        py.detach(|| file.read_exact_at(&mut buffer, offset))
            .map_err(|err| self.os_error(&err))?;
        Ok(PyBytes::new(py, &buffer))
    }

    /// Flush the file's data and metadata to the disk.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let file = self.file(py)?;
        py.detach(|| file.sync_all())
            .map_err(|err| self.os_error(&err))
    }

    /// Flush the file's data to the disk (`fdatasync`): what is written survives a crash.
    fn sync_data(&self, py: Python<'_>) -> PyResult<()> {
        let file = self.file(py)?;
        py.detach(|| file.sync_data())
            .map_err(|err| self.os_error(&err))
    }

    /// Close the file (idempotent); writes already made stay on disk.
    fn close(&self, py: Python<'_>) {
        if let Some(file) = with_locked(py, &self.file, Option::take) {
            py.detach(|| drop(file));
        }
    }
}
