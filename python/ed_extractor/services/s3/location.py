"""S3Location (an ``s3://BUCKET/KEY`` source) and S3Prefix (an ``s3://BUCKET/PREFIX`` dest)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ed_extractor.errors import InvalidURLError

SCHEME: Final = "s3://"
# S3's bucket rules, with upper case and underscores tolerated for S3-compatible servers.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key; the key is taken literally (no percent-decoding), as the AWS CLI does."""

    bucket: str
    key: str

    @property
    def url(self) -> str:
        """The ``s3://`` form."""
        return f"{SCHEME}{self.bucket}/{self.key}"


def is_s3_url(url: str) -> bool:
    """True when ``url`` names an S3 object (``s3://``, any case)."""
    return url.strip()[: len(SCHEME)].lower() == SCHEME


def parse_s3_url(url: str) -> S3Location:
    """The bucket and key of ``s3://BUCKET/KEY``; InvalidURLError naming what is wrong otherwise."""
    rest = url.strip()[len(SCHEME) :]
    bucket, slash, key = rest.partition("/")
    if not bucket:
        raise InvalidURLError(url, "no bucket (expected s3://BUCKET/KEY)")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidURLError(url, f"invalid bucket name {bucket!r}")
    if not slash or not key:
        raise InvalidURLError(url, "no object key (expected s3://BUCKET/KEY)")
    if key.endswith("/"):
        raise InvalidURLError(url, "the key names a folder (ends with '/'), not an object")
    if "?" in key or "#" in key:
        raise InvalidURLError(url, "an s3:// URL takes no query or fragment")
    return S3Location(bucket, key)


@dataclass(frozen=True)
class S3Prefix:
    """An object-store destination: a bucket and a key prefix (no empty, `.` or `..` segment)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """The ``s3://`` form (no trailing slash)."""
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, name: str) -> str:
        """The object key of the file ``name`` (a relative path with ``/``) under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name


def parse_s3_prefix(url: str) -> S3Prefix:
    """The bucket and prefix of ``s3://BUCKET[/PREFIX]``; InvalidURLError naming what is wrong.

    The prefix's segments may not be empty, ``.`` or ``..`` (a prefix that escapes is refused).
    """
    rest = url.strip()[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InvalidURLError(url, "no bucket (expected s3://BUCKET/PREFIX)")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidURLError(url, f"invalid bucket name {bucket!r}")
    prefix = prefix.rstrip("/")
    if "?" in prefix or "#" in prefix or "\\" in prefix:
        raise InvalidURLError(url, "a destination prefix takes no query, fragment or backslash")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise InvalidURLError(url, "the prefix has an empty, '.' or '..' segment")
    return S3Prefix(bucket, prefix)
