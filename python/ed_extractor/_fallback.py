"""Pure-Python backend (hashlib, blake3, a buffered file) with the native extension's API."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from typing import TYPE_CHECKING, Final, Protocol

from blake3 import blake3 as _blake3

if TYPE_CHECKING:
    from typing_extensions import Buffer

_RESUME_READ_CHUNK: Final = 1 << 20


def _contiguous(buffer: Buffer) -> memoryview:
    view = memoryview(buffer)
    if not view.c_contiguous:
        raise BufferError("buffer is not C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _add_filename(error: OSError, path: str) -> None:
    """Name the file in an error from an open file object, as ``open()`` and the native sink do."""
    if error.filename is None:
        error.filename = path


class Sha256:
    """A hashlib-shaped SHA-256 hasher."""

    name: Final = "sha256"
    digest_size: Final = 32
    block_size: Final = 64

    def __init__(self, data: Buffer | None = None) -> None:
        self._hash = hashlib.sha256()
        if data is not None:
            self.update(data)

    def update(self, data: Buffer) -> None:
        """Feed a contiguous buffer into the hash."""
        self._hash.update(_contiguous(data))

    def digest(self) -> bytes:
        """Return the digest of everything fed so far."""
        return self._hash.digest()

    def hexdigest(self) -> str:
        """Return the digest of everything fed so far as lowercase hex."""
        return self._hash.hexdigest()

    def copy(self) -> Sha256:
        """Return an independent copy of the hasher's state."""
        clone = Sha256.__new__(Sha256)
        clone._hash = self._hash.copy()
        return clone


class Blake3:
    """A hashlib-shaped BLAKE3 hasher (the ``blake3`` package, multi-threaded for large inputs)."""

    name: Final = "blake3"
    digest_size: Final = 32
    block_size: Final = 64

    def __init__(self, data: Buffer | None = None) -> None:
        self._hash = _blake3(max_threads=_blake3.AUTO)
        if data is not None:
            self.update(data)

    def update(self, data: Buffer) -> None:
        """Feed a contiguous buffer into the hash."""
        self._hash.update(_contiguous(data))

    def digest(self, length: int = 32) -> bytes:
        """Return the digest of everything fed so far (``length`` bytes of extendable output)."""
        return self._hash.digest(_checked_length(length))

    def hexdigest(self, length: int = 32) -> str:
        """Return the digest of everything fed so far as lowercase hex."""
        return self._hash.hexdigest(_checked_length(length))

    def copy(self) -> Blake3:
        """Return an independent copy of the hasher's state."""
        clone = Blake3.__new__(Blake3)
        clone._hash = self._hash.copy()
        return clone


def _checked_length(length: int) -> int:
    if length <= 0:
        raise ValueError("length must be > 0")
    return length


class SinkVerifier(Protocol):
    """A content check fed chunk by chunk (``GzipVerifier``); ``feed`` raises ``ValueError``."""

    def feed(self, data: Buffer) -> None:
        """Check the next chunk of the stream."""


class FileSink:
    """Write chunks to a file while hashing them; ``finish`` returns the whole file's SHA-256.

    ``blake3=True`` also computes BLAKE3 (``blake3_hexdigest()`` after ``finish``); a
    ``verifier`` is fed every chunk, the resumed prefix included, and its ``ValueError`` raised.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resume_from: int = 0,
        blake3: bool = False,
        verifier: SinkVerifier | None = None,
    ) -> None:
        if resume_from < 0:
            raise ValueError("resume_from must be >= 0")
        self._path = os.fspath(path)  # as given, like open() reports it in OSError.filename
        self._hash = hashlib.sha256()
        self._blake3 = _blake3() if blake3 else None
        self._blake3_hex: str | None = None
        self._verifier = verifier
        self._file: io.BufferedIOBase
        if resume_from:
            self._file = open(self._path, "r+b")  # noqa: SIM115 - lifetime is the sink's
            try:
                self._hash_prefix(resume_from)
            except BaseException as error:
                self._file.close()
                if isinstance(error, OSError):
                    _add_filename(error, self._path)
                raise
        else:
            self._file = open(self._path, "wb")  # noqa: SIM115 - lifetime is the sink's
        self._position = resume_from
        self._closed = False

    def _hash_prefix(self, length: int) -> None:
        remaining = length
        while remaining:
            chunk = self._file.read(min(remaining, _RESUME_READ_CHUNK))
            if not chunk:
                raise ValueError(
                    f"cannot resume from byte {length}: {self._path} holds only "
                    f"{length - remaining} bytes"
                )
            self._digest(chunk)
            remaining -= len(chunk)
        self._file.truncate(length)
        self._file.seek(length)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a finished or aborted FileSink")

    def _digest(self, view: Buffer) -> None:
        """Hash and check bytes of the file."""
        self._hash.update(view)
        if self._blake3 is not None:
            self._blake3.update(view)
        if self._verifier is not None:
            self._verifier.feed(view)

    def write(self, data: Buffer) -> int:
        """Hash, check and write one chunk; return the number of bytes written."""
        self._check_open()
        view = _contiguous(data)
        self._digest(view)
        try:
            self._file.write(view)
        except OSError as error:
            _add_filename(error, self._path)
            raise
        self._position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        """Return the number of bytes in the file so far (including a resumed prefix)."""
        return self._position

    def finish(self, fsync: bool = True) -> str:
        """Flush (and fsync) the file, close it and return the hex SHA-256 of its whole content."""
        self._check_open()
        self._closed = True
        try:
            try:
                self._file.flush()
                if fsync:
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()
        except OSError as error:
            _add_filename(error, self._path)
            raise
        if self._blake3 is not None:
            self._blake3_hex = self._blake3.hexdigest()
        return self._hash.hexdigest()

    def blake3_hexdigest(self) -> str | None:
        """The hex BLAKE3 of the whole file after ``finish``; None before, or unless blake3=True."""
        return self._blake3_hex

    def abort(self) -> None:
        """Close the file without finishing; the bytes written so far stay on disk.

        Idempotent, and never raises: it is meant for cleanup paths. A failure to flush the last
        buffered bytes is ignored (the file is then shorter than ``tell()``).
        """
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._file.close()


class PartWriter:
    """A part file of a known size, written and read at offsets from any thread (os.pwrite)."""

    def __init__(self, path: str | os.PathLike[str], size: int, *, keep: bool = False) -> None:
        self._path = os.fspath(path)
        self._size = size
        flags = os.O_RDWR | (0 if keep else os.O_CREAT | os.O_TRUNC)
        self._fd: int | None = os.open(self._path, flags, 0o666)
        try:
            if keep:
                held = os.fstat(self._fd).st_size
                if held != size:
                    raise ValueError(
                        f"cannot continue {self._path}: it holds {held} bytes, not {size}"
                    )
            else:
                os.ftruncate(self._fd, size)
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        """The part file's size in bytes."""
        return self._size

    def _open_fd(self, offset: int, length: int) -> int:
        if self._fd is None:
            raise ValueError("I/O operation on a closed PartWriter")
        if offset < 0 or offset + length > self._size:
            raise ValueError(
                f"bytes {offset}..{offset}+{length} lie outside the part file's {self._size} bytes"
            )
        return self._fd

    def pwrite(self, data: Buffer, offset: int) -> int:
        """Write all of ``data`` at ``offset``; return the number of bytes written."""
        view = _contiguous(data)
        fd = self._open_fd(offset, view.nbytes)
        done = 0
        try:
            while done < view.nbytes:
                done += os.pwrite(fd, view[done:], offset + done)
        except OSError as error:
            _add_filename(error, self._path)
            raise
        return done

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``."""
        fd = self._open_fd(offset, length)
        pieces = []
        done = 0
        while done < length:
            piece = os.pread(fd, length - done, offset + done)
            if not piece:
                raise OSError(f"unexpected end of {self._path} at byte {offset + done}")
            pieces.append(piece)
            done += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def sync(self) -> None:
        """Flush the file's data and metadata to the disk."""
        os.fsync(self._open_fd(0, 0))

    def sync_data(self) -> None:
        """Flush the file's data to the disk (fdatasync): what is written survives a crash."""
        os.fdatasync(self._open_fd(0, 0))

    def close(self) -> None:
        """Close the file (idempotent); writes already made stay on disk."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
