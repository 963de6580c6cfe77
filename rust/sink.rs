//! `FileSink`: write a download's chunks to a file while hashing them, with the GIL released.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use sha2::Digest;

use crate::buffer::ContiguousBytes;
use crate::sha::to_hex;
use crate::sync::{lock, with_locked};

/// Writes shorter than this are gathered before they reach the kernel; longer ones go straight
/// through (`BufWriter` bypasses its buffer for them), so typical 64-128 KiB chunks are not copied.
const WRITE_BUFFER: usize = 64 * 1024;
/// Read size while hashing the prefix of a resumed file.
const RESUME_READ_CHUNK: usize = 1 << 20;
/// Bytes of a resumed prefix hashed per GIL release; signals (Ctrl-C) are checked in between.
const RESUME_SEGMENT: u64 = 64 << 20;
const CLOSED_MESSAGE: &str = "I/O operation on a finished or aborted FileSink";

/// Why an operation on the file failed, before it is turned into a Python exception.
enum SinkError {
    Io(io::Error),
    /// The file to resume holds fewer bytes than `resume_from`.
    TooShort {
        wanted: u64,
        held: u64,
    },
    Closed,
    /// A Python exception (a signal handler's, e.g. `KeyboardInterrupt`) to pass through.
    Python(PyErr),
}

impl From<io::Error> for SinkError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

impl SinkError {
    fn into_pyerr(self, py: Python<'_>, path: &Path) -> PyErr {
        match self {
            Self::Io(err) => os_error(py, &err, path),
            Self::TooShort { wanted, held } => PyValueError::new_err(format!(
                "cannot resume from byte {wanted}: {} holds only {held} bytes",
                path.display()
            )),
            Self::Closed => PyValueError::new_err(CLOSED_MESSAGE),
            Self::Python(err) => err,
        }
    }
}

/// The `OSError` subclass Python itself raises for `err` (`OSError(errno, strerror, filename)`
/// picks it: `ENOSPC` -> `OSError`, `EACCES` -> `PermissionError`, `EISDIR` -> `IsADirectoryError`).
fn os_error(py: Python<'_>, err: &io::Error, path: &Path) -> PyErr {
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

/// The open file and the hash of everything in it so far.
struct OpenFile {
    writer: BufWriter<File>,
    hasher: sha2::Sha256,
}

struct SinkState {
    /// `None` once finished or aborted.
    open: Option<OpenFile>,
    /// Bytes in the file so far, including a resumed prefix.
    position: u64,
}

/// Hash up to `length` bytes of `file` from its current offset into `hasher`; return how many
/// there were (fewer than `length` only at end of file).
fn hash_from(file: &mut File, hasher: &mut sha2::Sha256, length: u64) -> io::Result<u64> {
    let mut buffer = vec![0u8; RESUME_READ_CHUNK];
    let mut done = 0u64;
    while done < length {
        let want = usize::try_from(length - done).map_or(buffer.len(), |n| n.min(buffer.len()));
        match file.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(read) => {
                hasher.update(&buffer[..read]);
                done += read as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(done)
}

/// Open `path` for a sink: create/truncate it, or hash its first `resume_from` bytes, drop the rest
/// and position the file after them.
fn open_file(py: Python<'_>, path: &Path, resume_from: u64) -> Result<OpenFile, SinkError> {
    let mut hasher = sha2::Sha256::new();
    let file = if resume_from == 0 {
        py.detach(|| File::create(path))?
    } else {
        let mut file = py.detach(|| OpenOptions::new().read(true).write(true).open(path))?;
        let mut prefix_read = 0u64;
        while prefix_read < resume_from {
            let segment = RESUME_SEGMENT.min(resume_from - prefix_read);
            let read = py.detach(|| hash_from(&mut file, &mut hasher, segment))?;
            prefix_read += read;
            if read < segment {
                return Err(SinkError::TooShort {
                    wanted: resume_from,
                    held: prefix_read,
                });
            }
            py.check_signals().map_err(SinkError::Python)?;
        }
        py.detach(|| -> io::Result<()> {
            file.set_len(resume_from)?;
            file.seek(SeekFrom::Start(resume_from))?;
            Ok(())
        })?;
        file
    };
    Ok(OpenFile {
        writer: BufWriter::with_capacity(WRITE_BUFFER, file),
        hasher,
    })
}

/// Writes chunks to a file while hashing them; `finish` returns the SHA-256 of the whole file.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct FileSink {
    path: PathBuf,
    state: Mutex<SinkState>,
}

#[pymethods]
impl FileSink {
    #[new]
    #[pyo3(signature = (path, *, resume_from = 0))]
    fn new(py: Python<'_>, path: PathBuf, resume_from: i64) -> PyResult<Self> {
        let Ok(resume_from) = u64::try_from(resume_from) else {
            return Err(PyValueError::new_err("resume_from must be >= 0"));
        };
        let open = open_file(py, &path, resume_from).map_err(|err| err.into_pyerr(py, &path))?;
        Ok(Self {
            path,
            state: Mutex::new(SinkState {
                open: Some(open),
                position: resume_from,
            }),
        })
    }

    /// Hash and write one chunk; return the number of bytes written.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if with_locked(py, &self.state, |state| state.open.is_none()) {
            return Err(PyValueError::new_err(CLOSED_MESSAGE));
        }
        let bytes = ContiguousBytes::get(data)?;
        let chunk = bytes.as_bytes();
        py.detach(|| {
            let mut state = lock(&self.state);
            let open = state.open.as_mut().ok_or(SinkError::Closed)?;
            open.hasher.update(chunk);
            open.writer.write_all(chunk)?;
            state.position += chunk.len() as u64;
            Ok(chunk.len())
        })
        .map_err(|err: SinkError| err.into_pyerr(py, &self.path))
    }

    /// Return the number of bytes in the file so far (including a resumed prefix).
    fn tell(&self, py: Python<'_>) -> u64 {
        with_locked(py, &self.state, |state| state.position)
    }

    /// Flush (and fsync) the file, close it and return the hex SHA-256 of its whole content.
    #[pyo3(signature = (fsync = true))]
    fn finish(&self, py: Python<'_>, fsync: bool) -> PyResult<String> {
        let Some(open) = with_locked(py, &self.state, |state| state.open.take()) else {
            return Err(PyValueError::new_err(CLOSED_MESSAGE));
        };
        py.detach(|| -> io::Result<String> {
            let OpenFile { writer, hasher } = open;
            let file = writer
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?;
            if fsync {
                file.sync_all()?;
            }
            drop(file);
            Ok(to_hex(&hasher.finalize()))
        })
        .map_err(|err| os_error(py, &err, &self.path))
    }

    /// Close the file without finishing; the bytes written so far stay on disk.
    ///
    /// Idempotent, and never raises: it is meant for cleanup paths. A failure to flush the last
    /// buffered bytes is ignored (the file is then shorter than `tell()`).
    fn abort(&self, py: Python<'_>) {
        if let Some(open) = with_locked(py, &self.state, |state| state.open.take()) {
            py.detach(|| drop(open));
        }
    }
}
