//! `FileSink`: a download's chunks are queued to Rust threads that write, hash (SHA-256, and
//! BLAKE3 if asked) and check them without the GIL; `write` returns as soon as a chunk is queued.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use sha2::Digest;

use crate::buffer::{ContiguousBytes, DETACH_MIN_LEN};
use crate::gzip::GzipVerifier;
use crate::pipeline::{
    stage_gone, Batch, Budget, ChunkBytes, Failure, Pipeline, Shared, StreamCheck, BATCH_BYTES,
};
use crate::sha::to_hex;
use crate::sync::with_locked;
use crate::zstd::ZstdVerifier;

/// Read size while feeding the prefix of a resumed file through the pipeline.
const RESUME_READ_CHUNK: usize = 1 << 20;
/// While `write` waits for room in the pipeline, signals (Ctrl-C) are checked this often.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const CLOSED_MESSAGE: &str = "I/O operation on a finished or aborted FileSink";

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

fn closed_error() -> PyErr {
    PyValueError::new_err(CLOSED_MESSAGE)
}

/// Open `path` for a sink, positioned where writing continues: created or truncated, or, to
/// resume, cut to its first `resume_from` bytes (`ValueError` if it holds fewer).
fn open_file(py: Python<'_>, path: &Path, resume_from: u64) -> PyResult<File> {
    let opened = py.detach(|| -> io::Result<Result<File, u64>> {
        if resume_from == 0 {
            return File::create(path).map(Ok);
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let held = file.metadata()?.len();
        if held < resume_from {
            return Ok(Err(held));
        }
        file.set_len(resume_from)?;
        file.seek(SeekFrom::Start(resume_from))?;
        Ok(Ok(file))
    });
    match opened {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(held)) => Err(PyValueError::new_err(format!(
            "cannot resume from byte {resume_from}: {} holds only {held} bytes",
            path.display()
        ))),
        Err(err) => Err(os_error(py, &err, path)),
    }
}

/// Read up to `want` bytes (fewer only at end of file).
fn read_block(file: &mut File, want: usize) -> io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(want);
    file.take(want as u64).read_to_end(&mut block)?;
    Ok(block)
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

struct SinkState {
    /// `None` once finished or aborted.
    pipeline: Option<Pipeline>,
    /// Chunks gathered until they make a batch (their budget already acquired).
    pending: Option<Batch>,
    /// Bytes accepted so far, including a resumed prefix.
    position: u64,
    /// The BLAKE3 of the whole file, once finished with `blake3=True`.
    blake3: Option<String>,
}

/// Queues chunks to Rust threads that write them to a file, hash and check them; `finish`
/// returns the SHA-256 of the whole file.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct FileSink {
    path: PathBuf,
    budget: Arc<Budget>,
    shared: Arc<Shared>,
    state: Mutex<SinkState>,
}

#[pymethods]
impl FileSink {
    #[new]
    #[pyo3(signature = (path, *, resume_from = 0, blake3 = false, verifier = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        resume_from: i64,
        blake3: bool,
        verifier: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let Ok(resume_from) = u64::try_from(resume_from) else {
            return Err(PyValueError::new_err("resume_from must be >= 0"));
        };
        let check = verifier.map(stream_check).transpose()?;
        let file = open_file(py, &path, resume_from)?;
        let shared = Arc::new(Shared::default());
        let pipeline = Pipeline::start(Some(file), &shared, blake3, check)
            .map_err(|err| os_error(py, &err, &path))?;
        let sink = Self {
            path,
            budget: Arc::new(Budget::default()),
            shared,
            state: Mutex::new(SinkState {
                pipeline: Some(pipeline),
                pending: None,
                position: resume_from,
                blake3: None,
            }),
        };
        if resume_from > 0 {
            if let Err(err) = sink.feed_prefix(py, resume_from) {
                sink.abort(py);
                return Err(err);
            }
        }
        Ok(sink)
    }

    /// Queue one chunk for writing, hashing and checking; return its length. A failure of
    /// earlier chunks is raised here (or by `finish`).
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if with_locked(py, &self.state, |state| state.pipeline.is_none()) {
            return Err(closed_error());
        }
        self.raise_failure(py)?;
        let bytes = chunk_bytes(py, data)?;
        let len = bytes.len();
        if len > 0 {
            self.queue(py, bytes, false)?;
        }
        Ok(len)
    }

    /// Return the number of bytes in the file so far (including a resumed prefix), counting
    /// those still queued.
    fn tell(&self, py: Python<'_>) -> u64 {
        with_locked(py, &self.state, |state| state.position)
    }

    /// Wait for the queued chunks, flush (and fsync) the file, close it and return the hex
    /// SHA-256 of its whole content; raise the pipeline's failure if there was one.
    #[pyo3(signature = (fsync = true))]
    fn finish(&self, py: Python<'_>, fsync: bool) -> PyResult<String> {
        let Some(pipeline) = with_locked(py, &self.state, SinkState::close) else {
            return Err(closed_error());
        };
        let outcome = py.detach(|| pipeline.close(&self.shared));
        if let Some(failure) = self.shared.failure() {
            py.detach(|| drop(outcome));
            return Err(failure_error(py, &failure, &self.path));
        }
        let (Some(writer), Some(sha256)) = (outcome.writer, outcome.sha256) else {
            return Err(PyRuntimeError::new_err(
                "a sink thread ended without its result",
            ));
        };
        py.detach(|| -> io::Result<()> {
            let file = writer
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?;
            if fsync {
                file.sync_all()?;
            }
            Ok(())
        })
        .map_err(|err| os_error(py, &err, &self.path))?;
        let blake3 = outcome
            .blake3
            .map(|hasher| hasher.finalize().to_hex().to_string());
        with_locked(py, &self.state, |state| state.blake3 = blake3);
        Ok(to_hex(&sha256.finalize()))
    }

    /// The hex BLAKE3 of the whole file after `finish`; `None` before, or unless `blake3=True`.
    fn blake3_hexdigest(&self, py: Python<'_>) -> Option<String> {
        with_locked(py, &self.state, |state| state.blake3.clone())
    }

    /// Stop hashing, write what is queued and close the file without finishing; the bytes
    /// accepted so far stay on disk.
    ///
    /// Idempotent, and never raises: it is meant for cleanup paths. A failure to write the last
    /// bytes is ignored (the file is then shorter than `tell()`).
    fn abort(&self, py: Python<'_>) {
        if let Some(pipeline) = with_locked(py, &self.state, SinkState::close) {
            py.detach(|| drop(pipeline.cancel(&self.shared)));
        }
    }
}

impl FileSink {
    fn raise_failure(&self, py: Python<'_>) -> PyResult<()> {
        match self.shared.failure() {
            Some(failure) => Err(failure_error(py, &failure, &self.path)),
            None => Ok(()),
        }
    }

    /// Hand `bytes` to the pipeline once the budget has room for them, waiting without the GIL.
    /// Written chunks are gathered into batches; a prefix block (`on_disk`) goes alone.
    fn queue(&self, py: Python<'_>, bytes: ChunkBytes, on_disk: bool) -> PyResult<()> {
        let len = bytes.len();
        if !self.budget.try_acquire(len) {
            // What is gathered must move on before room can come.
            let flushed = with_locked(py, &self.state, SinkState::flush);
            self.sent(py, Some(flushed))?;
            while !py.detach(|| self.budget.acquire_within(len, SIGNAL_CHECK_INTERVAL)) {
                py.check_signals()?;
            }
        }
        let budget = &self.budget;
        let sent = with_locked(py, &self.state, |state| {
            let SinkState {
                pipeline,
                pending,
                position,
                ..
            } = state;
            let Some(pipeline) = pipeline.as_ref() else {
                budget.release(len);
                return None;
            };
            if on_disk {
                let mut block = Batch::new(true, Arc::clone(budget));
                block.push(bytes);
                return Some(pipeline.send(block));
            }
            let mut batch = pending
                .take()
                .unwrap_or_else(|| Batch::new(false, Arc::clone(budget)));
            batch.push(bytes);
            *position += len as u64;
            if batch.len() >= BATCH_BYTES {
                return Some(pipeline.send(batch));
            }
            *pending = Some(batch);
            Some(true)
        });
        self.sent(py, sent)
    }

    /// Turn the outcome of a hand-off into the caller's error: `None` the sink is closed,
    /// `false` a stage is gone.
    fn sent(&self, py: Python<'_>, sent: Option<bool>) -> PyResult<()> {
        match sent {
            None => Err(closed_error()),
            Some(true) => Ok(()),
            Some(false) => {
                stage_gone(&self.shared);
                self.raise_failure(py)
            }
        }
    }

    /// Send the first `length` bytes of the file through the hashing and checking stages.
    fn feed_prefix(&self, py: Python<'_>, length: u64) -> PyResult<()> {
        let mut file = py
            .detach(|| File::open(&self.path))
            .map_err(|err| os_error(py, &err, &self.path))?;
        let mut done = 0u64;
        while done < length {
            let want = usize::try_from(length - done)
                .map_or(RESUME_READ_CHUNK, |n| n.min(RESUME_READ_CHUNK));
            let block = py
                .detach(|| read_block(&mut file, want))
                .map_err(|err| os_error(py, &err, &self.path))?;
            if block.len() < want {
                return Err(PyValueError::new_err(format!(
                    "cannot resume from byte {length}: {} holds only {} bytes",
                    self.path.display(),
                    done + block.len() as u64
                )));
            }
            done += want as u64;
            self.queue(py, ChunkBytes::Owned(block.into_boxed_slice()), true)?;
            py.check_signals()?;
        }
        Ok(())
    }
}

impl SinkState {
    /// Send the gathered chunks on; false if a stage is gone. A closed sink has none.
    fn flush(&mut self) -> bool {
        match (self.pipeline.as_ref(), self.pending.take()) {
            (Some(pipeline), Some(batch)) => pipeline.send(batch),
            _ => true,
        }
    }

    /// Send the gathered chunks on and take the pipeline, to close it.
    fn close(&mut self) -> Option<Pipeline> {
        self.flush();
        self.pipeline.take()
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // Dropped unfinished: the stages stop hashing, the writer writes what was accepted and
        // closes the file on its own thread.
        self.shared.cancel();
        self.state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush();
    }
}
