"""The one factory for the shared httpx client: pooled, identified, bounded timeouts, redirects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ed_extractor import __version__
from ed_extractor.errors import TransferError
from ed_extractor.headers import parse_retry_after

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
    connections_per_file: int = 1,
) -> httpx.Client:
    """Return the client shared by probing and downloading (one connection pool per run).

    The pool holds every ranged connection of a segmented download, and a few more.
    """
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        follow_redirects=True,
        max_redirects=max_redirects,
        transport=transport,
        limits=httpx.Limits(
            max_connections=max(16, connections_per_file + 4),
            max_keepalive_connections=max(8, connections_per_file),
        ),
    )


@contextmanager
def httpx_errors_as_transfer_errors(url: str, what: str) -> Iterator[None]:
    """Turn every httpx exception raised inside the block into a TransferError naming ``url``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransferError(url, f"{what} timed out ({type(exc).__name__})") from exc
    except httpx.ConnectError as exc:
        raise TransferError(url, f"{what}: cannot connect: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise TransferError(url, f"{what}: too many redirects", retryable=False) from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise TransferError(url, f"{what} failed: {type(exc).__name__}: {exc}") from exc


def status_error(url: str, response: httpx.Response, what: str) -> TransferError:
    """The TransferError for an error status, with Retry-After and the redirect target if any."""
    final = str(response.url)
    where = "" if final == url else f" from {final}"
    return TransferError(
        url,
        f"{what} answered HTTP {response.status_code} {response.reason_phrase}{where}",
        status_code=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
