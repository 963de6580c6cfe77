"""A ``.jsonl.gz`` file written line by line through its part file, published whole on close."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ed_extractor.errors import StorageError
from ed_extractor.paths import part_path
from ed_extractor.services.file_transfer.base import FileLanding
from ed_extractor.services.file_transfer.landing import finish_and_land, open_part_sink

log = logging.getLogger(__name__)

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ClosedFile:
    """A published file: where, its SHA-256 and BLAKE3, size, lines and uncompressed size."""

    path: Path
    sha256: str
    blake3: str | None
    bytes: int
    records: int
    uncompressed_bytes: int


class GzipLines:
    """The complete lines (without their newline) of a gzip file, as far as it can be read.

    Members are read in turn; a cut or damaged end stops the reading, and a last line without
    its newline is left out: what a killed writer left behind is read up to its last whole line.
    After the iteration ``complete`` says whether the file ended cleanly (False: cut or damaged).
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.complete = False

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        decoder = zlib.decompressobj(_GZIP_WBITS)
        fed = False  # whether the current member has begun (an unfed decoder: a clean end)
        while chunk := self._file.read(_READ_CHUNK):
            while chunk:
                fed = True
                try:
                    pending += decoder.decompress(chunk)
                except zlib.error:
                    return
                *lines, pending = pending.split(b"\n")
                yield from lines
                if not decoder.eof:
                    break
                chunk, fed = decoder.unused_data, False
                decoder = zlib.decompressobj(_GZIP_WBITS)
        self.complete = not pending and (decoder.eof or not fed)


def readable_lines(file: BinaryIO) -> Iterator[bytes]:
    """The complete lines (without their newline) of a gzip file, as far as it can be read."""
    return iter(GzipLines(file))


def count_lines(path: Path) -> int:
    """How many complete lines ``readable_lines`` finds in the file at ``path``."""
    with path.open("rb") as file:
        return sum(1 for _ in readable_lines(file))


class GzipLineFile:
    """Lines appended to ``<final>.part`` as one gzip member; ``close`` publishes it as ``final``.

    Opening an existing name continues it: the lines of the current file, or of a part file a
    killed run left behind when that has more whole lines, are written again first, so a second
    run within the same hour adds to the hour's file and nothing already published is lost.
    """

    def __init__(self, final: Path, *, level: int = 6, landing: FileLanding | None = None) -> None:
        self.final = final
        self._landing = landing
        self._part = part_path(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            source = self._richer_source()
            carried = source.open("rb") if source is not None else None
            if source == self._part:
                self._part.unlink()  # read through the open handle into the new part file
        except OSError as exc:
            raise StorageError(self._part, f"cannot open ({exc.strerror or exc})") from exc
        self._sink = open_part_sink(final)
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self.records = 0
        self.uncompressed_bytes = 0
        if carried is not None:
            with carried:
                for line in readable_lines(carried):
                    self.write_line(line)
            if source == self._part:
                log.warning("recovered %d lines of an unfinished file", self.records,
                            extra={"path": str(self.final)})  # fmt: skip

    def _richer_source(self) -> Path | None:
        """The file to start from: the published one, or a left-over part with more lines."""
        counts = [(count_lines(path), path) for path in (self.final, self._part) if path.exists()]
        if not counts:
            return None
        return max(counts, key=lambda item: item[0])[1]  # the published file on a tie

    def write_line(self, line: bytes) -> None:
        """Append ``line`` (which must not hold a newline) and a newline."""
        data = line + b"\n"
        self._write(self._compressor.compress(data))
        self.records += 1
        self.uncompressed_bytes += len(data)

    def flush(self) -> None:
        """Push what the compressor holds to the file (a killed run loses less)."""
        self._write(self._compressor.flush(zlib.Z_SYNC_FLUSH))

    def close(self) -> ClosedFile:
        """End the gzip member, fsync, hash and land the part file under the final name."""
        self._write(self._compressor.flush(zlib.Z_FINISH))
        landed = finish_and_land(self._sink, self.final, self._landing)
        return ClosedFile(
            self.final,
            landed.sha256,
            landed.blake3,
            landed.bytes,
            self.records,
            self.uncompressed_bytes,
        )

    def abort(self) -> None:
        """Stop writing; the part file stays for the next run to recover."""
        self._sink.abort()

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self._sink.write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(self._part, f"cannot write ({exc.strerror or exc})") from exc
