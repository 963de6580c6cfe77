"""The one factory for the shared httpx client: pooled, identified, bounded timeouts, redirects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import httpcore
import httpx

from ed_extractor import __version__
from ed_extractor.errors import TransferError
from ed_extractor.headers import parse_retry_after
from ed_extractor.settings import CONNECT_TIMEOUT_S, MAX_REDIRECTS, READ_TIMEOUT_S

USER_AGENT = f"ed-extractor/{__version__}"
# Bodies are stored and hashed exactly as served: never ask for (or get) a transfer encoding.
IDENTITY = {"Accept-Encoding": "identity"}
# httpcore reads the socket 64 KiB at a time, which is what iter_raw then yields. 1 MiB reads make
# a receive loop about twice as fast, in wall and CPU time, and hand the native sink bigger chunks
# (benches/fetch_vs_httpx.py measures both). A read returns what has arrived, never waits for more.
SOCKET_READ_BYTES = 1 << 20


def make_client(
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    max_redirects: int = MAX_REDIRECTS,
    transport: httpx.BaseTransport | None = None,
    connections_per_file: int = 1,
) -> httpx.Client:
    """Return the client shared by probing and downloading (one connection pool per run).

    The pool holds every ranged connection of a segmented download, and a few more.
    """
    httpcore.HTTP11Connection.READ_NUM_BYTES = SOCKET_READ_BYTES
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, **IDENTITY},
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


#: What a status says about the URL itself, in the words a user reads (not which request got it).
_STATUS_MEANINGS: Final = {
    401: "authentication required",
    403: "access denied",
    404: "not found",
    410: "gone",
}


def status_meaning(status_code: int) -> str | None:
    """What ``status_code`` says about the URL ("not found" for 404), if it says something."""
    return _STATUS_MEANINGS.get(status_code)


def status_error(url: str, response: httpx.Response, what: str) -> TransferError:
    """The TransferError for an error status, with Retry-After and the redirect target if any.

    A status that says what is wrong with the URL reads ``not found: HTTP 404``, whichever request
    (``what``: HEAD, the probe's ranged GET, the body's GET) met it; others name the request.
    """
    final = str(response.url)
    where = "" if final == url else f" from {final}"
    meaning = status_meaning(response.status_code)
    status = (
        f"{meaning}: HTTP {response.status_code}"
        if meaning
        else f"{what} answered HTTP {response.status_code} {response.reason_phrase}"
    )
    return TransferError(
        url,
        f"{status}{where}",
        status_code=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
