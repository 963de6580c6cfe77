"""Type stubs for the native extension (``rust/``): SHA-256, a hashing file sink, gzip checks."""

import os
import sys
from typing import Final, final

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__all__ = [
    "HASH_IMPLEMENTATION",
    "FileSink",
    "GzipVerifier",
    "PartWriter",
    "Sha256",
    "__version__",
]

__version__: Final[str]
HASH_IMPLEMENTATION: Final[str]
"""The SHA-256 code path in use, e.g. ``"sha2 0.10 (x86 SHA-NI)"``."""

@final
class Sha256:
    """A hashlib-shaped SHA-256 hasher; the GIL is released for inputs of 2 KiB and more."""

    name: Final = "sha256"
    digest_size: Final = 32
    block_size: Final = 64

    def __new__(cls, data: Buffer | None = None) -> Sha256: ...
    def update(self, data: Buffer) -> None:
        """Feed a C-contiguous buffer (any item format) into the hash, without copying it."""

    def digest(self) -> bytes:
        """Return the digest of everything fed so far."""

    def hexdigest(self) -> str:
        """Return the digest of everything fed so far as lowercase hex."""

    def copy(self) -> Sha256:
        """Return an independent copy of the hasher's state."""

@final
class FileSink:
    """Write chunks to a file while hashing them; ``finish`` returns the SHA-256 of the whole file.

    ``resume_from=0`` creates or truncates ``path``. ``resume_from=N`` hashes the file's first N
    bytes, drops anything after them and appends from there (``ValueError`` if the file is
    shorter). I/O failures raise the matching ``OSError`` subclass with ``errno`` and
    ``filename``; after one, the sink's state is unspecified: ``abort()`` it.
    """

    def __new__(cls, path: str | os.PathLike[str], *, resume_from: int = 0) -> FileSink: ...
    def write(self, data: Buffer) -> int:
        """Hash and write one chunk with the GIL released; return the number of bytes written."""

    def tell(self) -> int:
        """Return the number of bytes in the file so far (including a resumed prefix)."""

    def finish(self, fsync: bool = True) -> str:
        """Flush (and fsync) the file, close it and return the hex SHA-256 of its whole content."""

    def abort(self) -> None:
        """Close the file without finishing; the bytes written so far stay on disk. Never raises."""

@final
class GzipVerifier:
    """Inflate a gzip stream chunk by chunk to nowhere, following the JSON shape of its text.

    Every member is inflated (concatenated members are one stream) and its CRC-32 and length
    trailer checked. The text goes through a fixed buffer (bounded memory) and is dropped; its
    first and last non-whitespace bytes, its size and its records (lines opening with ``{``,
    across chunks) are followed. Errors raise ``ValueError``: ``"corrupt gzip stream: <why>"``
    (repeated by every later call) or ``"truncated gzip stream (no complete trailer)"``; any
    call after ``finish`` raises ``ValueError`` too.
    """

    def __new__(cls) -> GzipVerifier: ...
    def feed(self, data: Buffer) -> None:
        """Inflate the next chunk (any C-contiguous buffer), with the GIL released from 2 KiB."""

    def finish(self) -> tuple[int, int | None]:
        """End the stream: ``(uncompressed_bytes, records)``, records only for a JSON array.

        ``ValueError`` unless the last member ended with its trailer (an empty stream included).
        """

@final
class PartWriter:
    """A part file of a known size, written and read at offsets from any thread.

    ``keep=False`` creates (or empties) ``path`` and sizes it; ``keep=True`` opens the existing
    file, which must hold exactly ``size`` bytes (``ValueError`` otherwise). Offsets outside the
    file raise ``ValueError``; I/O failures the matching ``OSError`` with ``filename``.
    """

    def __new__(
        cls, path: str | os.PathLike[str], size: int, *, keep: bool = False
    ) -> PartWriter: ...
    @property
    def size(self) -> int:
        """The part file's size in bytes."""

    def pwrite(self, data: Buffer, offset: int) -> int:
        """Write all of ``data`` at ``offset`` with the GIL released; return the bytes written."""

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` with the GIL released."""

    def sync(self) -> None:
        """Flush the file's data and metadata to the disk."""

    def close(self) -> None:
        """Close the file (idempotent); writes already made stay on disk."""
