//! `GzipVerifier`: inflate a gzip download to nowhere as it streams and follow its JSON text.

use std::sync::Mutex;

use flate2::{Decompress, DecompressError, FlushDecompress, Status};
use memchr::memmem;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::buffer::ContiguousBytes;
use crate::pipeline::StreamCheck;
use crate::sync::{lock, with_locked};

/// Chunks at least this long are inflated with the GIL released (as `Sha256.update` does).
const DETACH_MIN_LEN: usize = 2048;
/// The inflated text is followed through this buffer and then dropped: the memory a chunk
/// costs is bounded whatever it expands into. 128 KiB measured fastest (it stays in L2).
const OUTPUT_BUFFER: usize = 128 * 1024;
/// Gzip's window is always 32 KiB; `new_gzip` adds the 16 that asks zlib for the gzip wrapper.
const WINDOW_BITS: u8 = 15;
/// A record of a Spansh dump is a line that starts with `{`.
const RECORD_START: &[u8] = b"\n{";
const TRUNCATED_MESSAGE: &str = "truncated gzip stream (no complete trailer)";
const FINISHED_MESSAGE: &str = "operation on a finished GzipVerifier";

fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// The shape of the inflated text so far: the native twin of Python's `JsonShape`.
struct TextShape {
    first: Option<u8>,
    last: Option<u8>,
    records: u64,
    size: u64,
    /// The text so far ends with `\n`: a `{` opening the next piece starts a record.
    after_newline: bool,
    record_start: memmem::Finder<'static>,
}

impl TextShape {
    fn new() -> Self {
        Self {
            first: None,
            last: None,
            records: 0,
            size: 0,
            after_newline: false,
            record_start: memmem::Finder::new(RECORD_START),
        }
    }

    /// Follow the next piece of the text.
    fn feed(&mut self, text: &[u8]) {
        let (Some(&head), Some(&tail)) = (text.first(), text.last()) else {
            return;
        };
        self.size += text.len() as u64;
        if self.first.is_none() {
            self.first = text.iter().copied().find(|&byte| !is_json_whitespace(byte));
        }
        if let Some(last) = text.iter().rev().copied().find(|&b| !is_json_whitespace(b)) {
            self.last = Some(last);
        }
        let across_pieces = u64::from(self.after_newline && head == b'{');
        self.records += across_pieces + self.record_start.find_iter(text).count() as u64;
        self.after_newline = tail == b'\n';
    }

    /// Records are counted only in a document that opens an array, as `GzipCheck` reports them.
    fn records(&self) -> Option<u64> {
        (self.first == Some(b'[')).then_some(self.records)
    }
}

/// A gzip stream in progress: the current member's inflater and the text it produced.
struct GzipStream {
    inflater: Decompress,
    /// The last member ended with a valid trailer and no byte of another one has come yet.
    member_complete: bool,
    output: Box<[u8]>,
    shape: TextShape,
}

impl GzipStream {
    fn new() -> Self {
        Self {
            inflater: Decompress::new_gzip(WINDOW_BITS),
            member_complete: false,
            output: vec![0; OUTPUT_BUFFER].into_boxed_slice(),
            shape: TextShape::new(),
        }
    }

    /// Inflate `input`, starting a new member after each trailer; the text is followed, not kept.
    fn feed(&mut self, mut input: &[u8]) -> Result<(), String> {
        loop {
            if self.member_complete {
                if input.is_empty() {
                    return Ok(());
                }
                self.inflater = Decompress::new_gzip(WINDOW_BITS);
                self.member_complete = false;
            }
            let (read_before, written_before) =
                (self.inflater.total_in(), self.inflater.total_out());
            let status = self
                .inflater
                .decompress(input, &mut self.output, FlushDecompress::None)
                .map_err(|err| corrupt_message(&err))?;
            // Both counts are bounded by the lengths of `input` and `self.output`.
            let read =
                usize::try_from(self.inflater.total_in() - read_before).unwrap_or(usize::MAX);
            let written =
                usize::try_from(self.inflater.total_out() - written_before).unwrap_or(usize::MAX);
            self.shape.feed(&self.output[..written]);
            input = &input[read..];
            if status == Status::StreamEnd {
                self.member_complete = true; // CRC-32 and length matched
                continue;
            }
            // A full output buffer may leave inflated bytes pending inside the inflater (with
            // all of `input` already taken in): ask again before waiting for the next chunk.
            if written < self.output.len() {
                if input.is_empty() {
                    return Ok(());
                }
                if read == 0 && written == 0 {
                    return Err("corrupt gzip stream: inflate made no progress".to_owned());
                }
            }
        }
    }

    fn finish(&self) -> Result<(u64, Option<u64>), String> {
        if !self.member_complete {
            return Err(TRUNCATED_MESSAGE.to_owned());
        }
        Ok((self.shape.size, self.shape.records()))
    }
}

fn corrupt_message(err: &DecompressError) -> String {
    // zlib-rs 0.6 overwrites the message of an error found in its fast decoding loop (a bad code
    // or distance) with this one; a verifier never inflates again after an error, so here it
    // always means bad deflate data.
    let why = match err.message() {
        None | Some("repeated call with bad state") => "invalid deflate data",
        Some(message) => message,
    };
    format!("corrupt gzip stream: {why}")
}

enum VerifierState {
    Open(Box<GzipStream>),
    /// The stream was found bad; every later call repeats why.
    Failed(String),
    Finished,
}

impl VerifierState {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let fed = match self {
            Self::Open(stream) => stream.feed(chunk),
            Self::Failed(message) => return Err(message.clone()),
            Self::Finished => return Err(FINISHED_MESSAGE.to_owned()),
        };
        if let Err(message) = &fed {
            *self = Self::Failed(message.clone());
        }
        fed
    }

    /// The stream's result (or why it is bad); either way the verifier is finished afterwards.
    fn finish(&mut self) -> Result<(u64, Option<u64>), String> {
        match std::mem::replace(self, Self::Finished) {
            Self::Open(stream) => stream.finish(),
            Self::Failed(message) => Err(message),
            Self::Finished => Err(FINISHED_MESSAGE.to_owned()),
        }
    }
}

/// Inflates a gzip stream chunk by chunk (every member; CRC-32 and length checked), discarding
/// the text but following its JSON shape; safe to share between threads.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct GzipVerifier {
    state: Mutex<VerifierState>,
}

#[pymethods]
impl GzipVerifier {
    #[new]
    fn new() -> Self {
        Self {
            state: Mutex::new(VerifierState::Open(Box::new(GzipStream::new()))),
        }
    }

    /// Inflate the next chunk of the compressed stream; `ValueError` if the stream is corrupt.
    fn feed(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = ContiguousBytes::get(data)?;
        let chunk = bytes.as_bytes();
        let fed = if chunk.len() >= DETACH_MIN_LEN {
            py.detach(|| lock(&self.state).feed(chunk))
        } else {
            with_locked(py, &self.state, |state| state.feed(chunk))
        };
        fed.map_err(PyValueError::new_err)
    }

    /// End the stream: `(uncompressed_bytes, records)`, records only for a JSON array;
    /// `ValueError` unless the last member ended with its trailer.
    fn finish(&self, py: Python<'_>) -> PyResult<(u64, Option<u64>)> {
        with_locked(py, &self.state, VerifierState::finish).map_err(PyValueError::new_err)
    }
}

/// A sink's pipeline feeds the verifier on its own thread, without the GIL.
impl StreamCheck for Py<GzipVerifier> {
    fn feed_bytes(&self, chunk: &[u8]) -> Result<(), String> {
        lock(&self.get().state).feed(chunk)
    }
}
