//! `ed_extractor._native`: SHA-256 and BLAKE3 hashing, the part sink and gzip and zstd verifiers,
//! the per-byte work of a download.

mod blake3_hash;
mod buffer;
mod gzip;
mod isal_inflate;
mod part_order;
mod part_sink;
mod pipeline;
mod py_bridge;
mod sha;
mod sync;
mod verifier;
mod zstd;

/// Native SHA-256 and BLAKE3 hashers, part sink and gzip and zstd verifiers for
/// ed-extractor; the GIL is released while hashing, writing and decompressing.
#[pyo3::pymodule(name = "_native")]
mod native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::blake3_hash::Blake3;
    #[pymodule_export]
    use crate::gzip::GzipVerifier;
    #[pymodule_export]
    use crate::part_sink::PartSink;
    #[pymodule_export]
    use crate::sha::Sha256;
    #[pymodule_export]
    use crate::zstd::ZstdVerifier;

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", env!("CARGO_PKG_VERSION"))?;
        module.add("HASH_IMPLEMENTATION", crate::sha::implementation())
    }
}
