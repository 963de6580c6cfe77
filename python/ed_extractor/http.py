"""The one factory for the shared httpx client: pooled, identified, bounded timeouts, redirects."""

from __future__ import annotations

import httpx

from ed_extractor import __version__
from ed_extractor.errors import TransferError

USER_AGENT = f"ed-extractor/{__version__}"
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0
DEFAULT_MAX_REDIRECTS = 10


def make_client(
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """Return the client shared by probing and downloading (one connection pool per run)."""
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        follow_redirects=True,
        max_redirects=max_redirects,
        transport=transport,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )


def error_from_httpx(url: str, exc: httpx.HTTPError) -> TransferError:
    """Translate an httpx exception into the project's TransferError, naming the URL."""
    if isinstance(exc, httpx.TooManyRedirects):
        return TransferError(url, "too many redirects")
    if isinstance(exc, httpx.TimeoutException):
        return TransferError(url, f"timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return TransferError(url, f"cannot connect ({exc})")
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return TransferError(url, f"HTTP {code}", status_code=code)
    return TransferError(url, f"{type(exc).__name__}: {exc}")
