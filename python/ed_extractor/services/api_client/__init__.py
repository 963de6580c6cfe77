"""The rate-limited API fetcher: token buckets per host, retries, pagination, the search flow."""

from ed_extractor.services.api_client.fetcher import (
    ApiFetcher,
    ApiResponse,
    PollSchedule,
    parse_auth_header,
)
from ed_extractor.services.api_client.pagination import cursor_pages, offset_pages
from ed_extractor.services.api_client.rate_limit import HostRateLimiter, TokenBucket

__all__ = [
    "ApiFetcher",
    "ApiResponse",
    "HostRateLimiter",
    "PollSchedule",
    "TokenBucket",
    "cursor_pages",
    "offset_pages",
    "parse_auth_header",
]
