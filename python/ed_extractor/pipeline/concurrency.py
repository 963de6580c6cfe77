"""Work on several items at once on a few threads, handing back each result as it completes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Sequence
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


def completed(
    function: Callable[[T], R], items: Sequence[T], *, workers: int, name: str = "worker"
) -> Generator[R, None, None]:
    """Apply ``function`` to every item on up to ``workers`` threads; yield results as they finish.

    The results come in order of completion. An exception raised by ``function`` is raised here,
    in the consuming thread. Closing the iterator early starts no further item. The threads are
    daemons: an interrupted run leaves a transfer as a ``kill -9`` would, which is safe to resume.
    """
    todo: queue.SimpleQueue[T] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    done: queue.SimpleQueue[tuple[bool, R | BaseException]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((True, function(item)))
            except BaseException as exc:
                done.put((False, exc))

    for number in range(min(workers, len(items))):
        threading.Thread(target=work, name=f"{name}-{number}", daemon=True).start()
    try:
        for _ in items:
            ok, value = done.get()
            if not ok:
                raise cast(BaseException, value)
            yield cast(R, value)
    finally:
        stop.set()
