"""The rate-limited API fetcher: per-host request windows, retries, pagination, the search flow."""

from ed_extractor.services.api_client.body import BodyTooLargeError, decoded_chunks
from ed_extractor.services.api_client.fetcher import (
    ApiAnswer,
    ApiFetcher,
    ApiResponse,
    PollSchedule,
    parse_auth_header,
)
from ed_extractor.services.api_client.json_check import JsonDocumentCheck
from ed_extractor.services.api_client.pagination import cursor_pages, offset_pages
from ed_extractor.services.api_client.rate_limit import HostRateLimiter, RequestSlot, RequestWindow

__all__ = [
    "ApiAnswer",
    "ApiFetcher",
    "ApiResponse",
    "BodyTooLargeError",
    "HostRateLimiter",
    "JsonDocumentCheck",
    "PollSchedule",
    "RequestSlot",
    "RequestWindow",
    "cursor_pages",
    "decoded_chunks",
    "offset_pages",
    "parse_auth_header",
]
