//! What the content verifiers share: following the JSON shape of the decompressed text, and the
//! open / failed / finished life of a verifier behind its Python class.

use std::sync::Mutex;

use memchr::memmem;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::buffer::{ContiguousBytes, DETACH_MIN_LEN};
use crate::sync::{lock, with_locked};
/// The decompressed text is followed through a buffer of this size and then dropped: the memory
/// a chunk costs is bounded whatever it expands into. 128 KiB measured fastest (it stays in L2).
pub const OUTPUT_BUFFER: usize = 128 * 1024;
/// A record of a Spansh dump is a line that starts with `{`.
const RECORD_START: &[u8] = b"\n{";

/// `(uncompressed_bytes, records)`, records only for a JSON array.
pub type Summary = (u64, Option<u64>);

fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// The shape of the inflated text so far: the native twin of Python's `JsonShape`.
pub struct TextShape {
    first: Option<u8>,
    last: Option<u8>,
    records: u64,
    size: u64,
    /// The text so far ends with `\n`: a `{` opening the next piece starts a record.
    after_newline: bool,
    record_start: memmem::Finder<'static>,
}

impl TextShape {
    pub fn new() -> Self {
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
    pub fn feed(&mut self, text: &[u8]) {
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

    /// The text's size, and its records: counted only in a document that opens an array, as
    /// the Python checks report them.
    pub fn summary(&self) -> Summary {
        (
            self.size,
            (self.first == Some(b'[')).then_some(self.records),
        )
    }
}

/// A compressed stream being checked: decompressed chunk by chunk, its text followed and dropped.
pub trait Decoding: Send {
    /// Decompress the next chunk; `Err` carries the one-line reason the stream is bad.
    fn feed(&mut self, input: &[u8]) -> Result<(), String>;
    /// The stream's summary, or why it is incomplete.
    fn finish(&self) -> Result<Summary, String>;
}

enum State<D> {
    Open(Box<D>),
    /// The stream was found bad; every later call repeats why.
    Failed(String),
    Finished,
}

/// The state of a verifier class: open, failed (every later call repeats why) or finished.
pub struct VerifierState<D> {
    state: Mutex<State<D>>,
    finished_message: &'static str,
}

impl<D: Decoding> VerifierState<D> {
    /// A verifier decoding with `decoding`; `finished_message` is what a call after `finish` says.
    pub fn new(decoding: D, finished_message: &'static str) -> Self {
        Self {
            state: Mutex::new(State::Open(Box::new(decoding))),
            finished_message,
        }
    }

    fn feed_locked(
        state: &mut State<D>,
        chunk: &[u8],
        finished: &'static str,
    ) -> Result<(), String> {
        let fed = match state {
            State::Open(stream) => stream.feed(chunk),
            State::Failed(message) => return Err(message.clone()),
            State::Finished => return Err(finished.to_owned()),
        };
        if let Err(message) = &fed {
            *state = State::Failed(message.clone());
        }
        fed
    }

    fn finish_locked(state: &mut State<D>, finished: &'static str) -> Result<Summary, String> {
        match std::mem::replace(state, State::Finished) {
            State::Open(stream) => stream.finish(),
            State::Failed(message) => Err(message),
            State::Finished => Err(finished.to_owned()),
        }
    }

    /// Decompress the next chunk of `data` (any C-contiguous buffer), with the GIL released from
    /// 2 KiB; `ValueError` if the stream is bad.
    pub fn feed(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = ContiguousBytes::get(data)?;
        let chunk = bytes.as_bytes();
        let finished = self.finished_message;
        let fed = if chunk.len() >= DETACH_MIN_LEN {
            py.detach(|| Self::feed_locked(&mut lock(&self.state), chunk, finished))
        } else {
            with_locked(py, &self.state, |state| {
                Self::feed_locked(state, chunk, finished)
            })
        };
        fed.map_err(PyValueError::new_err)
    }

    /// Decompress the next chunk without the GIL (from a sink's pipeline thread).
    pub fn feed_bytes(&self, chunk: &[u8]) -> Result<(), String> {
        Self::feed_locked(&mut lock(&self.state), chunk, self.finished_message)
    }

    /// End the stream (the verifier is finished afterwards either way); `ValueError` if it is bad
    /// or incomplete.
    pub fn finish(&self, py: Python<'_>) -> PyResult<Summary> {
        let finished = self.finished_message;
        with_locked(py, &self.state, |state| {
            Self::finish_locked(state, finished)
        })
        .map_err(PyValueError::new_err)
    }
}
