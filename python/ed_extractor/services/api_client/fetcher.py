"""ApiFetcher: JSON requests rate-limited per host and retried, and Spansh's search flow."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from ed_extractor.errors import ConfigError, TransferError, VerificationError
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.retry import RetryPolicy
from ed_extractor.services.api_client.body import ACCEPT_ENCODING, decoded_chunks
from ed_extractor.services.api_client.rate_limit import HostRateLimiter

log = logging.getLogger(__name__)

QUEUED = "queued"
T = TypeVar("T")


@dataclass(frozen=True)
class PollSchedule:
    """How a queued job is polled: growing pauses, at most ``total_s`` seconds in all.

    The pauses start at ``first_s`` and grow by ``factor`` up to ``max_interval_s``.
    """

    first_s: float = 0.5
    factor: float = 2.0
    max_interval_s: float = 5.0
    total_s: float = 60.0

    def pauses(self) -> Iterator[float]:
        """The pauses before each poll after the first; their sum never exceeds ``total_s``."""
        pause, spent = self.first_s, 0.0
        while spent + pause <= self.total_s:
            yield pause
            spent += pause
            pause = min(pause * self.factor, self.max_interval_s)


def parse_auth_header(value: str) -> tuple[str, str]:
    """Split ``"Name: value"`` (e.g. ``"Authorization: Bearer X"``); ConfigError if malformed."""
    name, sep, content = value.partition(":")
    name, content = name.strip(), content.strip()
    if not sep or not name or not content or any(c.isspace() for c in name):
        raise ConfigError("the API auth header must look like 'Name: value'")
    return name, content


@dataclass(frozen=True)
class ApiAnswer:
    """What a successful API response says about itself, before its body is read."""

    url: str
    final_url: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class ApiResponse(ApiAnswer):
    """A successful API answer read whole: its decoded body and the parsed JSON document."""

    body: bytes
    document: Any


#: Reads one successful answer's decoded body (an iterator of chunks) and returns a result.
BodyReader = Callable[[ApiAnswer, Iterator[bytes]], T]


class ApiFetcher:
    """Requests JSON from ``base_url``, each attempt let through by the host's request window.

    429 and 5xx (and connection errors) are tried again under ``retry``, waiting at least the
    server's Retry-After, during which the host's window lets nothing through either. Any other
    error status, or a body that is not JSON, fails at once. Bodies are streamed: gzip and
    deflate are undone in small steps, and more than ``max_bytes`` decoded bytes fail the
    request (BodyTooLargeError, not retried).
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        limiter: HostRateLimiter,
        max_bytes: int,
        retry: RetryPolicy | None = None,
        auth_header: tuple[str, str] | None = None,
        poll: PollSchedule | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/") + "/"
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self.max_bytes = max_bytes
        self._headers = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING}
        if auth_header is not None:
            self._headers[auth_header[0]] = auth_header[1]
        self._poll = poll or PollSchedule()
        self._sleep = sleep

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the base URL); an absolute one as it is."""
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> ApiResponse:
        """GET ``path`` and parse its JSON body."""
        return self.request("GET", path, params=params)

    def post(self, path: str, payload: Any) -> ApiResponse:
        """POST ``payload`` as JSON to ``path`` and parse the JSON answer."""
        return self.request("POST", path, payload=payload)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        payload: Any = None,
    ) -> ApiResponse:
        """One API call, rate-limited and retried, its body (at most ``max_bytes``) parsed.

        Raises TransferError or VerificationError.
        """
        return self.stream(method, path, _parse_json, params=params, payload=payload)

    def stream(
        self,
        method: str,
        path: str,
        read: BodyReader[T],
        *,
        params: dict[str, Any] | None = None,
        payload: Any = None,
    ) -> T:
        """One API call, rate-limited and retried, whose decoded body ``read`` consumes.

        ``read`` is called once per successful attempt with a fresh body; an error it raises
        is retried when retryable (a connection cut while reading), else raised.
        """
        url = self.url(path)
        result: T = self._retry.retrying()(self._attempt, method, url, params, payload, read)
        return result

    def _attempt(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        payload: Any,
        read: BodyReader[T],
    ) -> T:
        window = self._limiter.window(urlsplit(url).netloc)
        with window.acquire() as slot, httpx_errors_as_transfer_errors(url, method):
            request = self._client.build_request(
                method, url, params=params, json=payload, headers=self._headers
            )
            response = self._client.send(request, stream=True)
            slot.answered()
            try:
                if not response.is_success:
                    error = status_error(url, response, method)
                    if error.retry_after is not None:
                        window.hold_off(error.retry_after)
                    raise error
                answer = ApiAnswer(
                    url=url,
                    final_url=str(response.url),
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                )
                body = decoded_chunks(
                    response.iter_raw(),
                    response.headers.get("Content-Encoding"),
                    url=url,
                    max_bytes=self.max_bytes,
                )
                return read(answer, body)
            finally:
                response.close()

    def search(self, path: str, query: Any, *, results_path: str = "/api/results/{job}") -> Any:
        """POST ``query`` to ``path``, then poll the job until it is no longer queued.

        The POST answers with the job's id in ``job`` (or ``search_reference``); the results
        answer ``{"status": "queued"}`` until done. Polling follows the PollSchedule and fails
        (TransferError, not retried) when the job is still queued at its end.
        """
        started = self.post(path, query).document
        job = _job_id(started) if isinstance(started, dict) else None
        if job is None:
            raise VerificationError(self.url(path), "the search answer names no job")
        if started.get("status") not in (None, QUEUED):
            return started  # answered at once
        results = self.url(results_path.format(job=job))
        document = self.get(results).document
        polls = 1
        for pause in self._poll.pauses():
            if not (isinstance(document, dict) and document.get("status") == QUEUED):
                return document
            self._sleep(pause)
            document = self.get(results).document
            polls += 1
        if isinstance(document, dict) and document.get("status") == QUEUED:
            raise TransferError(
                results, f"job {job} still queued after {polls} polls", retryable=False
            )
        return document


def _parse_json(answer: ApiAnswer, chunks: Iterator[bytes]) -> ApiResponse:
    """Read the whole (capped) body and parse it as JSON."""
    body = b"".join(chunks)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise VerificationError(answer.url, f"the answer is not JSON ({exc})") from None
    return ApiResponse(**vars(answer), body=body, document=document)


def _job_id(document: dict[str, Any]) -> str | None:
    for key in ("job", "search_reference"):
        value = document.get(key)
        if isinstance(value, str | int) and str(value):
            return str(value)
    return None
