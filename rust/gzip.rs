//! `GzipVerifier`: inflate a gzip download to nowhere as it streams and follow its JSON text.

use flate2::{Decompress, DecompressError, FlushDecompress, Status};
use pyo3::prelude::*;

use crate::pipeline::StreamCheck;
use crate::verifier::{Decoding, Summary, TextShape, VerifierState, OUTPUT_BUFFER};

/// Gzip's window is always 32 KiB; `new_gzip` adds the 16 that asks zlib for the gzip wrapper.
const WINDOW_BITS: u8 = 15;
const TRUNCATED_MESSAGE: &str = "truncated gzip stream (no complete trailer)";
const FINISHED_MESSAGE: &str = "operation on a finished GzipVerifier";

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
}

impl Decoding for GzipStream {
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

    fn finish(&self) -> Result<Summary, String> {
        if !self.member_complete {
            return Err(TRUNCATED_MESSAGE.to_owned());
        }
        Ok(self.shape.summary())
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

/// Inflates a gzip stream chunk by chunk (every member; CRC-32 and length checked), discarding
/// the text but following its JSON shape; safe to share between threads.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct GzipVerifier {
    state: VerifierState<GzipStream>,
}

#[pymethods]
impl GzipVerifier {
    #[new]
    fn new() -> Self {
        Self {
            state: VerifierState::new(GzipStream::new(), FINISHED_MESSAGE),
        }
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
    fn feed_bytes(&self, chunk: &[u8]) -> Result<(), String> {
        self.get().state.feed_bytes(chunk)
    }
}
