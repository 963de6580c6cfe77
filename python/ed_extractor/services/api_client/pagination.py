"""Walk a paginated API: page/offset style (a short page ends it) and cursor style."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def offset_pages(
    fetch: Callable[[int, int], Sequence[T]],
    *,
    page_size: int,
    max_pages: int | None = None,
) -> Iterator[T]:
    """Yield the items of ``fetch(page, offset)`` for page 0, 1, ... until a page is short.

    ``offset`` is ``page * page_size``, for APIs that count items instead of pages; an empty or
    short page is the last one. ``max_pages`` bounds the walk.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    page = 0
    while max_pages is None or page < max_pages:
        items = fetch(page, page * page_size)
        yield from items
        if len(items) < page_size:
            return
        page += 1


def cursor_pages(
    fetch: Callable[[str | None], tuple[Sequence[T], str | None]],
    *,
    max_pages: int | None = None,
) -> Iterator[T]:
    """Yield the items of ``fetch(cursor)``, starting with None, following each next cursor.

    The walk ends when a page has no next cursor, or repeats one (a server bug, not a loop).
    """
    cursor: str | None = None
    seen: set[str] = set()
    pages = 0
    while max_pages is None or pages < max_pages:
        items, cursor = fetch(cursor)
        pages += 1
        yield from items
        if cursor is None or cursor in seen:
            return
        seen.add(cursor)
