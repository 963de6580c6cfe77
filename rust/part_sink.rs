//! `PartSink`: one part file written at offsets by any number of threads (`pwrite`, GIL
//! released), hashed and checked in file order on Rust threads from a bounded reorder window.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use sha2::Digest;

use crate::part_order::{run_ordering, Core, REORDER_WINDOW};
use crate::pipeline::{Failure, Outcome, Pipeline};
use crate::py_bridge::{chunk_bytes, failure_error, os_error, stream_check};
use crate::sha::to_hex;
use crate::sync::with_locked;

/// While `write` waits for room in the window, signals (Ctrl-C) are checked this often.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long a write without room waits for a late connection to deliver the bytes the hashing
/// needs next before it leaves its own chunk on disk, to be read back (below the interval above).
const STARVED_GRACE: Duration = Duration::from_millis(50);
const CLOSED_MESSAGE: &str = "I/O operation on a finished or aborted PartSink";

fn closed_error() -> PyErr {
    PyValueError::new_err(CLOSED_MESSAGE)
}

/// Check the resumed intervals against the file's size and `keep`.
fn check_written(written: &[(u64, u64)], size: Option<u64>, keep: bool) -> PyResult<()> {
    if !keep && !written.is_empty() {
        return Err(PyValueError::new_err(
            "written intervals need keep=True (a new file holds nothing yet)",
        ));
    }
    for &(start, end) in written {
        if start > end || size.is_some_and(|size| end > size) {
            return Err(PyValueError::new_err(format!(
                "written interval ({start}, {end}) does not lie in the part file"
            )));
        }
    }
    Ok(())
}

/// Open the part file: created (or emptied) and sized, or kept as it is (`Err(held)` when a
/// kept file does not hold exactly `size` bytes).
fn open_part(path: &Path, size: Option<u64>, keep: bool) -> io::Result<Result<File, u64>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!keep)
        .truncate(!keep)
        .open(path)?;
    match size {
        Some(size) if keep => {
            let held = file.metadata()?.len();
            if held != size {
                return Ok(Err(held));
            }
        }
        Some(size) => file.set_len(size)?,
        None => {}
    }
    Ok(Ok(file))
}

/// A part file written at offsets by any number of threads, hashed and checked in file order.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct PartSink {
    path: PathBuf,
    size: Option<u64>,
    core: Arc<Core>,
    /// `None` once finished or aborted.
    file: Mutex<Option<Arc<File>>>,
    ordering: Mutex<Option<JoinHandle<Outcome>>>,
    blake3: Mutex<Option<String>>,
}

#[pymethods]
impl PartSink {
    #[new]
    #[pyo3(signature = (path, size, *, keep = false, written = Vec::new(), blake3 = false, verifier = None, window = REORDER_WINDOW))]
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        size: Option<u64>,
        keep: bool,
        written: Vec<(u64, u64)>,
        blake3: bool,
        verifier: Option<&Bound<'_, PyAny>>,
        window: usize,
    ) -> PyResult<Self> {
        check_written(&written, size, keep)?;
        let check = verifier.map(stream_check).transpose()?;
        let file = match py.detach(|| open_part(&path, size, keep)) {
            Err(err) => return Err(os_error(py, &err, &path)),
            Ok(Err(held)) => {
                return Err(PyValueError::new_err(format!(
                    "cannot continue {}: it holds {held} bytes, not {}",
                    path.display(),
                    size.unwrap_or_default()
                )))
            }
            Ok(Ok(file)) => Arc::new(file),
        };
        let core = Arc::new(Core::new(&written, window));
        let ordering = Pipeline::start(&core.shared, blake3, check).and_then(|pipeline| {
            let core = Arc::clone(&core);
            let file = Arc::clone(&file);
            thread::Builder::new()
                .name("sink-order".to_owned())
                .spawn(move || run_ordering(&core, &file, pipeline))
        });
        let ordering = ordering.map_err(|err| os_error(py, &err, &path))?;
        Ok(Self {
            path,
            size,
            core,
            file: Mutex::new(Some(file)),
            ordering: Mutex::new(Some(ordering)),
            blake3: Mutex::new(None),
        })
    }

    /// Write all of `data` at `offset` (GIL released) and hand it to the in-order hashing;
    /// return its length. Raises the first failure of an earlier write, hash or check.
    fn write(&self, py: Python<'_>, offset: i64, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let file = self.file(py)?;
        self.raise_failure(py)?;
        let bytes = chunk_bytes(py, data)?;
        let len = bytes.len();
        let Some((offset, end)) = self.span(offset, len) else {
            return Err(PyValueError::new_err(format!(
                "bytes {offset}..{offset}+{len} lie outside the part file's {} bytes",
                self.size.unwrap_or_default()
            )));
        };
        if len == 0 {
            return Ok(0);
        }
        let core = &self.core;
        let mut waiting = py
            .detach(|| -> io::Result<Option<_>> {
                file.write_all_at(&bytes, offset)?;
                Ok(core
                    .place(offset, bytes, SIGNAL_CHECK_INTERVAL, STARVED_GRACE)
                    .err())
            })
            .map_err(|err| self.io_failure(py, err))?;
        while let Some(bytes) = waiting {
            if let Err(interrupted) = py.check_signals() {
                core.record(offset, end);
                return Err(interrupted);
            }
            waiting = py.detach(|| {
                core.place(offset, bytes, SIGNAL_CHECK_INTERVAL, STARVED_GRACE)
                    .err()
            });
        }
        Ok(len)
    }

    /// Bytes hashed in file order so far (the frontier).
    fn hashed(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.core.progress().0)
    }

    /// Bytes that had to be read back from the file (they did not fit the window).
    fn read_back(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.core.progress().1)
    }

    /// Bytes of the resumed `written` intervals read back from the file.
    fn resumed_bytes(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.core.progress().2)
    }

    /// Flush the file's data to the disk (`fdatasync`): what is written survives a crash.
    fn sync_data(&self, py: Python<'_>) -> PyResult<()> {
        let file = self.file(py)?;
        py.detach(|| file.sync_data())
            .map_err(|err| os_error(py, &err, &self.path))
    }

    /// Wait until every byte is hashed and checked, flush (and fsync) and close the file;
    /// return the hex SHA-256. `ValueError` naming the first missing offset if there is a gap.
    #[pyo3(signature = (fsync = true))]
    fn finish(&self, py: Python<'_>, fsync: bool) -> PyResult<String> {
        let Some(ordering) = with_locked(py, &self.ordering, Option::take) else {
            return Err(closed_error());
        };
        self.core.settle(self.size);
        let joined = py.detach(|| ordering.join());
        let file = with_locked(py, &self.file, Option::take);
        let Ok(outcome) = joined else {
            return Err(PyRuntimeError::new_err("sink-order thread panicked"));
        };
        if let Some(failure) = self.core.shared.failure() {
            py.detach(|| drop(outcome));
            return Err(failure_error(py, &failure, &self.path));
        }
        let (Some(file), Some(sha256)) = (file, outcome.sha256) else {
            return Err(PyRuntimeError::new_err(
                "a sink thread ended without its result",
            ));
        };
        if fsync {
            py.detach(|| file.sync_all())
                .map_err(|err| os_error(py, &err, &self.path))?;
        }
        py.detach(|| drop(file));
        let blake3 = outcome
            .blake3
            .map(|hasher| hasher.finalize().to_hex().to_string());
        with_locked(py, &self.blake3, |slot| *slot = blake3);
        Ok(to_hex(&sha256.finalize()))
    }

    /// The hex BLAKE3 of the whole file after `finish`; `None` before, or unless `blake3=True`.
    fn blake3_hexdigest(&self, py: Python<'_>) -> Option<String> {
        with_locked(py, &self.blake3, |slot| slot.clone())
    }

    /// Stop hashing, release the held chunks and close the file; never raises. Bytes already
    /// written stay on disk (the part may be resumed).
    fn abort(&self, py: Python<'_>) {
        py.detach(|| self.core.cancel());
        let ordering = with_locked(py, &self.ordering, Option::take);
        let file = with_locked(py, &self.file, Option::take);
        py.detach(|| {
            if let Some(ordering) = ordering {
                drop(ordering.join());
            }
            drop(file);
        });
    }
}

impl PartSink {
    /// The bytes `offset..end` a write of `len` bytes covers, if they lie in the file.
    fn span(&self, offset: i64, len: usize) -> Option<(u64, u64)> {
        let start = u64::try_from(offset).ok()?;
        let end = start.checked_add(len as u64)?;
        self.size
            .is_none_or(|size| end <= size)
            .then_some((start, end))
    }

    fn file(&self, py: Python<'_>) -> PyResult<Arc<File>> {
        with_locked(py, &self.file, |file| file.clone()).ok_or_else(closed_error)
    }

    fn raise_failure(&self, py: Python<'_>) -> PyResult<()> {
        match self.core.shared.failure() {
            Some(failure) => Err(failure_error(py, &failure, &self.path)),
            None => Ok(()),
        }
    }

    /// Keep a write's I/O error as the sink's failure and return it as the caller's error.
    fn io_failure(&self, py: Python<'_>, err: io::Error) -> PyErr {
        let failure = Failure::Io(Arc::new(err));
        self.core.shared.fail(failure.clone());
        failure_error(py, &failure, &self.path)
    }
}

impl Drop for PartSink {
    fn drop(&mut self) {
        // Dropped unfinished: the ordering thread stops and closes the stages on its own.
        self.core.cancel();
    }
}
