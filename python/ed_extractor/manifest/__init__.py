"""The manifest: every stored file and every attempt, in SQLite or in the object store."""

from ed_extractor.manifest.models import (
    AttemptRecord,
    AttemptStatus,
    HashAlgorithm,
    ManifestRecord,
    Regime,
    VerificationRecord,
    VerificationStatus,
)
from ed_extractor.manifest.protocol import Manifest
from ed_extractor.manifest.store import (
    MANIFEST_FILENAME,
    ManifestStore,
    default_manifest_path,
    schema_version,
)

__all__ = [
    "MANIFEST_FILENAME",
    "AttemptRecord",
    "AttemptStatus",
    "HashAlgorithm",
    "Manifest",
    "ManifestRecord",
    "ManifestStore",
    "Regime",
    "VerificationRecord",
    "VerificationStatus",
    "default_manifest_path",
    "schema_version",
]
