//! `ZstdVerifier`: decompress a zstd download to nowhere as it streams and follow its JSON text.

use pyo3::prelude::*;
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

use crate::pipeline::{Failure, StreamCheck};
use crate::verifier::{Decoding, Summary, TextShape, VerifierState, OUTPUT_BUFFER};

const TRUNCATED_MESSAGE: &str = "truncated zstd stream (last frame incomplete)";
const FINISHED_MESSAGE: &str = "operation on a finished ZstdVerifier";

/// A zstd stream in progress: one decoder for every frame in turn, and the text it produced.
struct ZstdStream {
    /// libzstd's streaming decoder: it starts the next frame by itself after one ends, checks
    /// each frame's checksum when it has one, and refuses windows over 128 MiB.
    decoder: Decoder<'static>,
    /// The last frame ended and no byte of another one has come yet.
    frame_complete: bool,
    output: Box<[u8]>,
    shape: TextShape,
}

impl ZstdStream {
    fn new() -> Result<Self, String> {
        Ok(Self {
            decoder: Decoder::new().map_err(|err| format!("zstd decoder: {err}"))?,
            frame_complete: false,
            output: vec![0; OUTPUT_BUFFER].into_boxed_slice(),
            shape: TextShape::new(),
        })
    }
}

impl Decoding for ZstdStream {
    /// Decompress `input` through the fixed output buffer; the text is followed, not kept.
    fn feed(&mut self, input: &[u8]) -> Result<(), String> {
        let mut input = InBuffer::around(input);
        while input.pos() < input.src.len() || !self.frame_complete {
            let read_before = input.pos();
            let mut output = OutBuffer::around(&mut self.output[..]);
            let hint = self
                .decoder
                .run(&mut input, &mut output)
                .map_err(|err| format!("corrupt zstd stream: {err}"))?;
            let written = output.pos();
            self.shape.feed(&self.output[..written]);
            // A hint of 0: the frame is decoded, its checksum checked and all of it flushed.
            self.frame_complete = hint == 0;
            if written < self.output.len() && input.pos() == input.src.len() {
                return Ok(());
            }
            if written == 0 && input.pos() == read_before {
                return Err("corrupt zstd stream: decoding made no progress".to_owned());
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<Summary, String> {
        if !self.frame_complete {
            return Err(TRUNCATED_MESSAGE.to_owned());
        }
        Ok(self.shape.summary())
    }
}

/// Decompresses a zstd stream chunk by chunk (every frame, skippable ones included; checksums
/// checked where a frame has one), discarding the text but following its JSON shape; safe to
/// share between threads.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct ZstdVerifier {
    state: VerifierState<ZstdStream>,
}

#[pymethods]
impl ZstdVerifier {
    #[new]
    fn new() -> PyResult<Self> {
        let stream = ZstdStream::new().map_err(pyo3::exceptions::PyMemoryError::new_err)?;
        Ok(Self {
            state: VerifierState::new(stream, FINISHED_MESSAGE),
        })
    }

    /// Decompress the next chunk of the compressed stream; `ValueError` if the stream is corrupt.
    fn feed(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.state.feed(py, data)
    }

    /// End the stream: `(uncompressed_bytes, records)`, records only for a JSON array;
    /// `ValueError` unless the last frame is complete.
    fn finish(&self, py: Python<'_>) -> PyResult<Summary> {
        self.state.finish(py)
    }
}

/// A sink's pipeline feeds the verifier on its own thread, without the GIL.
impl StreamCheck for Py<ZstdVerifier> {
    fn feed_bytes(&self, chunk: &[u8]) -> Result<(), Failure> {
        self.get().state.feed_bytes(chunk).map_err(Failure::Check)
    }
}
