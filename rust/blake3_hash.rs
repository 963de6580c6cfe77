//! `Blake3`: a hashlib-shaped BLAKE3 hasher (the `blake3` crate; SIMD detected at run time,
//! multi-threaded with rayon for large inputs).

use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::{ContiguousBytes, DETACH_MIN_LEN};
use crate::sha::to_hex;
use crate::sync::{lock, with_locked};

/// Inputs at least this long are split across rayon's threads (`update_rayon`); below it the
/// hand-off costs more than a second core gains (the crate's docs name 128 KiB as the floor).
const RAYON_MIN_LEN: usize = 512 * 1024;
/// The default digest length, in bytes.
const DIGEST_SIZE: usize = blake3::OUT_LEN;

/// Feed `bytes` into `hasher`, on several threads when they are many.
pub fn update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= RAYON_MIN_LEN {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}

/// The first `length` bytes of the extendable output of everything fed to `hasher`.
fn output(hasher: &blake3::Hasher, length: usize) -> Vec<u8> {
    let mut out = vec![0u8; length];
    hasher.finalize_xof().fill(&mut out);
    out
}

fn checked_length(length: i64) -> PyResult<usize> {
    usize::try_from(length)
        .ok()
        .filter(|&length| length > 0)
        .ok_or_else(|| PyValueError::new_err("length must be > 0"))
}

/// A BLAKE3 hasher with hashlib's interface; safe to share between threads.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct Blake3 {
    state: Mutex<blake3::Hasher>,
}

#[pymethods]
impl Blake3 {
    #[new]
    #[pyo3(signature = (data = None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let hasher = Self {
            state: Mutex::new(blake3::Hasher::new()),
        };
        if let Some(data) = data {
            hasher.update(py, data)?;
        }
        Ok(hasher)
    }

    #[classattr]
    fn name() -> &'static str {
        "blake3"
    }

    #[classattr]
    fn digest_size() -> usize {
        DIGEST_SIZE
    }

    #[classattr]
    fn block_size() -> usize {
        blake3::BLOCK_LEN
    }

    /// Feed a contiguous buffer into the hash.
    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = ContiguousBytes::get(data)?;
        let bytes = bytes.as_bytes();
        if bytes.len() >= DETACH_MIN_LEN {
            py.detach(|| update(&mut lock(&self.state), bytes));
        } else {
            with_locked(py, &self.state, |hasher| {
                hasher.update(bytes);
            });
        }
        Ok(())
    }

    /// Return the digest of everything fed so far (`length` bytes of the extendable output).
    #[pyo3(signature = (length = 32))]
    fn digest<'py>(&self, py: Python<'py>, length: i64) -> PyResult<Bound<'py, PyBytes>> {
        let length = checked_length(length)?;
        Ok(PyBytes::new(
            py,
            &with_locked(py, &self.state, |hasher| output(hasher, length)),
        ))
    }

    /// Return the digest of everything fed so far as lowercase hex.
    #[pyo3(signature = (length = 32))]
    fn hexdigest(&self, py: Python<'_>, length: i64) -> PyResult<String> {
        let length = checked_length(length)?;
        Ok(to_hex(&with_locked(py, &self.state, |hasher| {
            output(hasher, length)
        })))
    }

    /// Return an independent copy of the hasher's state.
    fn copy(&self, py: Python<'_>) -> Self {
        Self {
            state: Mutex::new(with_locked(py, &self.state, |hasher| hasher.clone())),
        }
    }
}
