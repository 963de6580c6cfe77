"""What a probe learns about a source: the HeadInfo and ProbeResult models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ProbeResult(BaseModel):
    """Everything the probe learnt about one URL, with real types parsed from the headers."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="the URL as requested")
    final_url: str = Field(description="the URL after redirects")
    status_code: int = Field(description="status of the last probing response (HEAD, else GET)")
    content_length: int | None = Field(
        default=None, description="size of the whole body in bytes, if the server told"
    )
    etag: str | None = None
    last_modified: str | None = Field(default=None, description="Last-Modified as sent")
    mime_type: str = Field(description="canonical MIME type sniffed from the first bytes")
    is_range_supported: bool = False
    content_type: str | None = Field(default=None, description="Content-Type as the server sent it")
    content_encoding: str | None = Field(
        default=None, description="Content-Encoding as the server sent it"
    )


class HeadInfo(BaseModel):
    """What a source's headers say before any body byte is looked at (HEAD, else a ranged GET)."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="the URL as requested")
    final_url: str = Field(description="the URL after redirects")
    status_code: int = Field(description="status of the response the fields come from")
    method: Literal["HEAD", "GET"] = Field(
        default="HEAD", description="GET when the server refused or mis-answered HEAD"
    )
    content_length: int | None = Field(
        default=None, description="size of the whole body in bytes, if the server told"
    )
    etag: str | None = None
    last_modified: str | None = Field(default=None, description="Last-Modified as sent")
    is_range_supported: bool = Field(
        default=False, description="HEAD: Accept-Ranges: bytes; GET: the server answered 206"
    )
    content_type: str | None = Field(default=None, description="Content-Type as the server sent it")
    content_encoding: str | None = Field(
        default=None, description="Content-Encoding as the server sent it"
    )
    sample: bytes | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="the first bytes, when the fallback GET already fetched them",
    )
