//! `ed_extractor._native`: SHA-256 hashing, a hashing file sink and a gzip verifier, the per-byte
//! work of a download.

mod buffer;
mod gzip;
mod segments;
mod sha;
mod sink;
mod sync;

/// Native SHA-256 hasher, hashing file sink and gzip verifier for ed-extractor; the GIL is released
/// while hashing, writing and inflating.
#[pyo3::pymodule(name = "_native")]
mod native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::gzip::GzipVerifier;
    #[pymodule_export]
    use crate::segments::PartWriter;
    #[pymodule_export]
    use crate::sha::Sha256;
    #[pymodule_export]
    use crate::sink::FileSink;

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", env!("CARGO_PKG_VERSION"))?;
        module.add("HASH_IMPLEMENTATION", crate::sha::implementation())
    }
}
