"""What every source is: the ``Source`` protocol, and how a source asks for a content check."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import httpx

from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.source_probe.models import HeadInfo
from ed_extractor.vocabulary import Regime

#: The content check of a sniffed MIME type for one request (the files of a torrent ask for it).
CheckLookup = Callable[[str, DownloadRequest], ContentCheck | None]


class Source(Protocol):
    """One kind of source: how it is probed and how its bytes reach the part file."""

    kind: ClassVar[str]

    def head(self, client: httpx.Client, url: str) -> HeadInfo | None:
        """Size and validators before any body (None: nothing to ask, the bytes come from peers)."""
        ...

    def ranged_sample(self, client: httpx.Client, url: str) -> HeadInfo:
        """The first bytes of the body (the 1 KiB sample), with what the answer said."""
        ...

    def regime(self, content: Regime) -> Regime:
        """The manifest's regime of a download of ``content`` from this source."""
        ...

    def download(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        check: ContentCheck | None,
        checks: CheckLookup,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """Fetch ``request.url`` into place through ``check`` (``checks``: per file, by type)."""
        ...
