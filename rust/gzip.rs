//! `GzipVerifier`: inflate a gzip download to nowhere as it streams and follow its JSON text;
//! ISA-L inflates (1.13x zlib-rs on the demo's level-1 dumps, 1.58x at gzip's default level 6:
//! `benches/gzip_inflaters.py`), zlib-rs stays selectable for comparisons.

use flate2::{Decompress, DecompressError, FlushDecompress, Status};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::isal_inflate::IsalMember;
use crate::pipeline::{Failure, StreamCheck};
use crate::verifier::{Decoding, Summary, TextShape, VerifierState, OUTPUT_BUFFER};

/// Gzip's window is always 32 KiB; `new_gzip` adds the 16 that asks zlib for the gzip wrapper.
const WINDOW_BITS: u8 = 15;
const TRUNCATED_MESSAGE: &str = "truncated gzip stream (no complete trailer)";
const FINISHED_MESSAGE: &str = "operation on a finished GzipVerifier";
/// zlib's words for a header with a reserved FLG bit set (RFC 1952 has a decoder refuse it).
pub const RESERVED_FLAGS_MESSAGE: &str = "unknown header flags set";

/// What one inflate call did: input taken, text written, and whether the member's trailer
/// (CRC-32 and length) was reached and matched.
pub struct Inflated {
    pub read: usize,
    pub written: usize,
    pub member_end: bool,
}

/// One gzip member's inflater: zlib-rs or ISA-L.
pub trait MemberInflater: Send {
    /// Inflate from `input` into `output`; `Err` carries why the stream is corrupt.
    fn inflate(&mut self, input: &[u8], output: &mut [u8]) -> Result<Inflated, String>;
    /// Start over for the next member.
    fn next_member(&mut self);
}

/// zlib-rs (through flate2), with runtime CPU detection.
struct ZlibRsMember(Decompress);

impl MemberInflater for ZlibRsMember {
    fn inflate(&mut self, input: &[u8], output: &mut [u8]) -> Result<Inflated, String> {
        let (read_before, written_before) = (self.0.total_in(), self.0.total_out());
        let status = self
            .0
            .decompress(input, output, FlushDecompress::None)
            .map_err(|err| zlib_reason(&err))?;
        // Both counts are bounded by the lengths of `input` and `output`.
        Ok(Inflated {
            read: usize::try_from(self.0.total_in() - read_before).unwrap_or(usize::MAX),
            written: usize::try_from(self.0.total_out() - written_before).unwrap_or(usize::MAX),
            member_end: status == Status::StreamEnd, // CRC-32 and length matched
        })
    }

    fn next_member(&mut self) {
        self.0 = Decompress::new_gzip(WINDOW_BITS);
    }
}

/// The inflater a `GzipVerifier` uses, by its name in the constructor.
fn member_inflater(name: &str) -> PyResult<Box<dyn MemberInflater>> {
    match name {
        "isal" => Ok(Box::new(IsalMember::new())),
        "zlib-rs" => Ok(Box::new(ZlibRsMember(Decompress::new_gzip(WINDOW_BITS)))),
        _ => Err(PyValueError::new_err(format!(
            "unknown gzip inflater {name:?} (expected \"isal\" or \"zlib-rs\")"
        ))),
    }
}

/// A gzip stream in progress: the current member's inflater and the text it produced.
struct GzipStream {
    inflater: Box<dyn MemberInflater>,
    /// The last member ended with a valid trailer and no byte of another one has come yet.
    member_complete: bool,
    output: Box<[u8]>,
    shape: TextShape,
}

impl GzipStream {
    fn new(inflater: Box<dyn MemberInflater>) -> Self {
        Self {
            inflater,
            member_complete: false,
            output: vec![0; OUTPUT_BUFFER].into_boxed_slice(),
            shape: TextShape::new(),
        }
    }
}

impl Decoding for GzipStream {
    /// Inflate `input`, starting a new member after each trailer; the text is followed, not kept.
    fn feed(&mut self, mut input: &[u8]) -> Result<(), String> {
        loop {
            if self.member_complete {
                if input.is_empty() {
                    return Ok(());
                }
                self.inflater.next_member();
                self.member_complete = false;
            }
            let Inflated {
                read,
                written,
                member_end,
            } = self
                .inflater
                .inflate(input, &mut self.output)
                .map_err(|why| format!("corrupt gzip stream: {why}"))?;
            self.shape.feed(&self.output[..written]);
            input = &input[read..];
            if member_end {
                self.member_complete = true;
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

    fn finish(&self) -> Result<Summary, String> {
        if !self.member_complete {
            return Err(TRUNCATED_MESSAGE.to_owned());
        }
        Ok(self.shape.summary())
    }
}

fn zlib_reason(err: &DecompressError) -> String {
    // zlib-rs 0.6 overwrites the message of an error found in its fast decoding loop (a bad code
    // or distance) with this one; a verifier never inflates again after an error, so here it
    // always means bad deflate data.
    match err.message() {
        None | Some("repeated call with bad state") => "invalid deflate data",
        Some(message) => message,
    }
    .to_owned()
}

/// Inflates a gzip stream chunk by chunk (every member; CRC-32 and length checked), discarding
/// the text but following its JSON shape; safe to share between threads.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct GzipVerifier {
    state: VerifierState<GzipStream>,
}

#[pymethods]
impl GzipVerifier {
    /// `inflater`: `"isal"` (ISA-L, the default) or `"zlib-rs"`, for comparisons.
    #[new]
    #[pyo3(signature = (*, inflater = "isal"))]
    fn new(inflater: &str) -> PyResult<Self> {
        Ok(Self {
            state: VerifierState::new(
                GzipStream::new(member_inflater(inflater)?),
                FINISHED_MESSAGE,
            ),
        })
    }

    /// Inflate the next chunk of the compressed stream; `ValueError` if the stream is corrupt.
    fn feed(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.state.feed(py, data)
    }

    /// End the stream: `(uncompressed_bytes, records)`, records only for a JSON array;
    /// `ValueError` unless the last member ended with its trailer.
    fn finish(&self, py: Python<'_>) -> PyResult<Summary> {
        self.state.finish(py)
    }
}

/// A sink's pipeline feeds the verifier on its own thread, without the GIL.
impl StreamCheck for Py<GzipVerifier> {
    fn feed_bytes(&self, chunk: &[u8]) -> Result<(), Failure> {
        self.get().state.feed_bytes(chunk).map_err(Failure::Check)
    }
}
