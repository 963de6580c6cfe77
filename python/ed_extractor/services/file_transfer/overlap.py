"""ChunkWorker: one consumer of a body's chunks on its own thread, so that the steps overlap.

Reading the socket, hashing and writing, and verifying then run on separate cores (the heavy
steps release the GIL). The native FileSink has its own Rust threads: it is fed through
``InlineFeed``, the same interface without a Python thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Final

_QUEUE_CHUNKS: Final = 64  # at most ~4 MiB in flight per worker with httpx's 64 KiB reads
_STOP: Final = b""


class ChunkWorker:
    """Feeds each chunk given to ``put`` to ``consume`` on a worker thread, in order.

    The first exception ``consume`` raises stops the worker; ``put`` and ``close`` re-raise it in
    the caller's thread, so a failing disk or a corrupt stream ends the download at once.
    """

    def __init__(self, consume: Callable[[bytes], object], name: str) -> None:
        self._consume = consume
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not _STOP:
            if self._error is None:
                try:
                    self._consume(chunk)
                except BaseException as exc:
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, chunk: bytes) -> None:
        """Queue ``chunk`` (blocking while the worker is behind); raise the worker's error."""
        self._raise_error()
        if chunk:
            self._chunks.put(chunk)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(_STOP)
            self._thread.join()

    def close(self) -> None:
        """Wait until every queued chunk is consumed; raise the worker's error if any."""
        self._stop()
        self._raise_error()

    def cancel(self) -> None:
        """Drop what is still queued and stop the worker, without raising."""
        self._error = self._error or RuntimeError("cancelled")
        self._stop()


class InlineFeed:
    """``ChunkWorker``'s interface, calling ``consume`` at once (for a sink that queues itself)."""

    def __init__(self, consume: Callable[[bytes], object]) -> None:
        self._consume = consume

    def put(self, chunk: bytes) -> None:
        """Hand ``chunk`` over; raise what ``consume`` raises."""
        self._consume(chunk)

    def close(self) -> None:
        """Nothing is queued here."""

    def cancel(self) -> None:
        """Nothing is queued here."""


ChunkFeed = ChunkWorker | InlineFeed
