//! `Sha256`: a hashlib-shaped SHA-256 hasher (the `sha2` crate, SHA-NI detected at run time).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::Digest;

use crate::buffer::{ContiguousBytes, DETACH_MIN_LEN};
use crate::sync::with_locked;

/// Which SHA-256 code path this process runs, e.g. `"sha2 0.10 (x86 SHA-NI)"`.
pub fn implementation() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        // The same features `sha2` 0.10 checks before choosing its SHA-NI backend.
        if std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            return "sha2 0.10 (x86 SHA-NI)";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("sha2") {
            return "sha2 0.10 (ARMv8 SHA2)";
        }
    }
    "sha2 0.10 (portable)"
}

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// A SHA-256 hasher with hashlib's interface; safe to share between threads.
#[pyclass(module = "ed_extractor._native", frozen)]
pub struct Sha256 {
    state: Mutex<sha2::Sha256>,
}

#[pymethods]
impl Sha256 {
    #[new]
    #[pyo3(signature = (data = None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let hasher = Self {
            state: Mutex::new(sha2::Sha256::new()),
        };
        if let Some(data) = data {
            hasher.update(py, data)?;
        }
        Ok(hasher)
    }

    #[classattr]
    fn name() -> &'static str {
        "sha256"
    }

    #[classattr]
    fn digest_size() -> usize {
        32
    }

    #[classattr]
    fn block_size() -> usize {
        64
    }

    /// Feed a contiguous buffer into the hash.
    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = ContiguousBytes::get(data)?;
        let bytes = bytes.as_bytes();
        if bytes.len() >= DETACH_MIN_LEN {
            py.detach(|| crate::sync::lock(&self.state).update(bytes));
        } else {
            with_locked(py, &self.state, |hasher| hasher.update(bytes));
        }
        Ok(())
    }

    /// Return the digest of everything fed so far.
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.finalized(py))
    }

    /// Return the digest of everything fed so far as lowercase hex.
    fn hexdigest(&self, py: Python<'_>) -> String {
        to_hex(&self.finalized(py))
    }

    /// Return an independent copy of the hasher's state.
    fn copy(&self, py: Python<'_>) -> Self {
        Self {
            state: Mutex::new(with_locked(py, &self.state, |hasher| hasher.clone())),
        }
    }
}

impl Sha256 {
    fn finalized(&self, py: Python<'_>) -> [u8; 32] {
        with_locked(py, &self.state, |hasher| hasher.clone().finalize().into())
    }
}
