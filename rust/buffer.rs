//! Borrow the bytes of a C-contiguous Python buffer without copying them.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;

/// Inputs at least this long are hashed with the GIL released (hashlib's `HASHLIB_GIL_MINSIZE`).
pub const DETACH_MIN_LEN: usize = 2048;

/// The exported buffer of one Python object, checked to be C-contiguous.
///
/// Any item format is accepted (`memoryview.cast("I")`, `array.array("d")`, ...): the hash is over
/// the raw bytes, exactly what `memoryview(obj).cast("B")` would yield.
pub struct ContiguousBytes {
    buffer: PyUntypedBuffer,
}

impl ContiguousBytes {
    /// Export `obj`'s buffer; `BufferError` if it is not C-contiguous, `TypeError` if `obj` has none.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buffer = PyUntypedBuffer::get(obj)?;
        if !buffer.is_c_contiguous() {
            return Err(PyBufferError::new_err("buffer is not C-contiguous"));
        }
        Ok(Self { buffer })
    }

    /// The exported bytes.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self.buffer.len_bytes();
        if len == 0 {
            // An empty export may carry a null or dangling pointer; never build a slice from it.
            return &[];
        }
        // SAFETY: `buf_ptr` points at `len_bytes` bytes that the exporter keeps allocated and in
        // place until the export is released, which happens only when `self.buffer` drops; the
        // returned slice borrows `self`, so it cannot outlive the export. `get` checked that the
        // bytes are C-contiguous, so they form one run. `u8` has no alignment or validity
        // requirements. We only ever read through the slice. Caveat shared with hashlib and
        // blake3-py: another thread may write into a *mutable* exporter (e.g. a bytearray) while
        // we hash with the GIL released; the export stops it from being resized or freed, so the
        // worst outcome is a digest of torn contents, which is that caller's own race.
        unsafe { std::slice::from_raw_parts(self.buffer.buf_ptr().cast::<u8>().cast_const(), len) }
    }
}
