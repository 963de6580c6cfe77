"""Type stubs for the native extension (``rust/``): hashers, the part sink, content checks."""

import os
import sys
from collections.abc import Sequence
from typing import Final, Literal, Protocol, final

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__all__ = [
    "HASH_IMPLEMENTATION",
    "Blake3",
    "GzipVerifier",
    "PartSink",
    "Sha256",
    "ZstdVerifier",
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
class Blake3:
    """A hashlib-shaped BLAKE3 hasher; the GIL is released from 2 KiB, rayon from 512 KiB."""

    name: Final = "blake3"
    digest_size: Final = 32
    block_size: Final = 64

    def __new__(cls, data: Buffer | None = None) -> Blake3: ...
    def update(self, data: Buffer) -> None:
        """Feed a C-contiguous buffer (any item format) into the hash, without copying it."""

    def digest(self, length: int = 32) -> bytes:
        """Return the digest of everything fed so far (``length`` bytes of extendable output)."""

    def hexdigest(self, length: int = 32) -> str:
        """Return the digest of everything fed so far as lowercase hex."""

    def copy(self) -> Blake3:
        """Return an independent copy of the hasher's state."""

@final
class GzipVerifier:
    """Inflate a gzip stream chunk by chunk to nowhere, following the JSON shape of its text.

    Every member is inflated (concatenated members are one stream) and its CRC-32 and length
    trailer checked. The text goes through a fixed buffer (bounded memory) and is dropped; its
    first and last non-whitespace bytes, its size and its records (lines opening with ``{``,
    across chunks) are followed. Errors raise ``ValueError``: ``"corrupt gzip stream: <why>"``
    (repeated by every later call) or ``"truncated gzip stream (no complete trailer)"``; any
    call after ``finish`` raises ``ValueError`` too.

    ``inflater`` is ``"isal"`` (ISA-L's igzip, the default) or ``"zlib-rs"`` (for comparisons);
    both refuse the same streams, each in its own words.
    """

    def __new__(cls, *, inflater: Literal["isal", "zlib-rs"] = "isal") -> GzipVerifier: ...
    def feed(self, data: Buffer) -> None:
        """Inflate the next chunk (any C-contiguous buffer), with the GIL released from 2 KiB."""

    def finish(self) -> tuple[int, int | None]:
        """End the stream: ``(uncompressed_bytes, records)``, records only for a JSON array.

        ``ValueError`` unless the last member ended with its trailer (an empty stream included).
        """

@final
class ZstdVerifier:
    """Decompress a zstd stream chunk by chunk to nowhere, following the JSON shape of its text.

    Every frame is decompressed (skippable ones skipped) and its checksum checked when it has one;
    a frame whose window exceeds 128 MiB is refused. The text goes through a fixed buffer
    (bounded memory) and is dropped, followed as ``GzipVerifier`` follows it. Errors raise
    ``ValueError``: ``"corrupt zstd stream: <why>"`` (repeated by every later call) or
    ``"truncated zstd stream (last frame incomplete)"``; any call after ``finish`` raises
    ``ValueError`` too.
    """

    def __new__(cls) -> ZstdVerifier: ...
    def feed(self, data: Buffer) -> None:
        """Decompress the next chunk (any C-contiguous buffer), with the GIL released from 2 KiB."""

    def finish(self) -> tuple[int, int | None]:
        """End the stream: ``(uncompressed_bytes, records)``, records only for a JSON array.

        ``ValueError`` unless the last frame is complete (an empty stream included).
        """

class _Feedable(Protocol):
    """A content check written in Python: fed ``bytes`` with the GIL taken, its errors raised."""

    def feed(self, data: bytes, /) -> object: ...

@final
class PartSink:
    """A part file written at offsets by any number of threads, hashed and checked in file order.

    ``size``: the final size when known: the file is created/truncated to ``size`` (``keep=False``),
    or the existing file must be exactly ``size`` bytes (``keep=True``, else ``ValueError``).
    ``size=None``: the length is unknown (one open-ended stream); the file is created empty
    (``keep=False``), or kept as it is (``keep=True``) and grows as written.
    ``written``: byte intervals ``(start, end)`` (end exclusive) already on disk in a kept file (a
    resumed download); they are read back from the file (counted in ``resumed_bytes``, not in
    ``read_back``) when the hash frontier reaches them.
    ``blake3``: also compute BLAKE3. ``verifier``: fed every byte in file order.
    ``window``: the most bytes of early chunks held in memory for the in-order hash; every
    ``PartSink`` of the process shares one budget of 32 MiB, ``window`` is this sink's cap in it.
    A chunk that does not fit makes ``write`` wait (GIL released) while the hashing makes
    progress; when the hashing waits for bytes not written yet, the chunk is left on disk and
    read back later (``read_back``).
    """

    def __new__(
        cls,
        path: str | os.PathLike[str],
        size: int | None,
        *,
        keep: bool = False,
        written: Sequence[tuple[int, int]] = ...,
        blake3: bool = False,
        verifier: GzipVerifier | ZstdVerifier | _Feedable | None = None,
        window: int = ...,
    ) -> PartSink: ...
    def write(self, offset: int, data: Buffer) -> int:
        """Write all of ``data`` at ``offset`` (GIL released) for the in-order hash; its length.

        Thread-safe. Raises the first failure of an earlier write, hash or check (``OSError``
        with ``errno`` and ``filename``, the verifier's ``ValueError``); offsets beyond ``size``
        raise ``ValueError``.
        """

    def hashed(self) -> int:
        """Bytes hashed in file order so far (the frontier)."""

    def read_back(self) -> int:
        """Bytes that had to be read back from the file (they did not fit the window)."""

    def resumed_bytes(self) -> int:
        """Bytes of the resumed ``written`` intervals read back from the file."""

    def sync_data(self) -> None:
        """Flush the file's data to the disk (fdatasync)."""

    def finish(self, fsync: bool = True) -> str:
        """Wait until every byte of the file is hashed and checked; fsync, close; the SHA-256.

        ``ValueError`` naming the offset if bytes are missing; the pipeline's failure if any.
        """

    def blake3_hexdigest(self) -> str | None:
        """The hex BLAKE3 of the whole file after ``finish``; None before, or unless blake3."""

    def abort(self) -> None:
        """Stop hashing, release the held chunks and close the file; never raises."""
