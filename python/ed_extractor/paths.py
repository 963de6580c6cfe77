r"""URL checks and file-name rules: what a source is called on disk, and where (inside ``dest``).

A file name is one path segment: no ``/``, ``\``, NUL or other control characters, never ``.``
or ``..``, no leading dots (no hidden files), at most 255 bytes of UTF-8 (a longer name is cut in
the stem so that its extension, e.g. ``.json.gz``, survives). Separators become ``_``; control
characters are dropped; surrounding whitespace is stripped.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from ed_extractor.errors import ConfigError, InvalidURLError, StorageError
from ed_extractor.services.s3.location import is_s3_url, parse_s3_url

MAX_NAME_BYTES = 255
PART_SUFFIX = ".part"

_SCHEMES = frozenset({"http", "https"})
ACCEPTED_URLS = "http://, https://, s3:// or magnet:"
"""The kinds of URL validate_url accepts, as its error messages name them."""
MAGNET_PREFIX = "magnet:?"
TORRENT_SUFFIX = ".torrent"
_INFO_HASH_TOPICS = ("urn:btih:", "urn:btmh:")
_SEPARATORS = str.maketrans({"/": "_", "\\": "_"})
# Cc: C0/C1 controls incl. NUL and DEL; Cs: lone surrogates (not encodable); Zl/Zp: line breaks.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# An extension worth keeping when a name is cut: up to three short alphanumeric suffixes.
_EXTENSION = re.compile(r"(?:\.[A-Za-z0-9]{1,16}){1,3}$")


def validate_url(url: str) -> str:
    """Return ``url``, stripped of surrounding blanks, if it is an absolute http(s) or s3:// URL.

    An http(s) URL needs a host; an ``s3://BUCKET/KEY`` needs a valid bucket name and a key.
    A ``magnet:`` link is accepted too when it names a BitTorrent info-hash (``xt=urn:btih:`` or
    ``xt=urn:btmh:``).

    Raises InvalidURLError naming the reason: not absolute, unsupported scheme, missing host,
    whitespace or control characters inside, or otherwise malformed (bad port, bad IPv6 literal).
    """
    candidate = url.strip()
    if not candidate:
        raise InvalidURLError(url, "empty URL")
    if any(ch.isspace() or unicodedata.category(ch) in _DROPPED_CATEGORIES for ch in candidate):
        raise InvalidURLError(url, "contains whitespace or control characters")
    if is_s3_url(candidate):
        parse_s3_url(candidate)
        return candidate
    if candidate[: len(MAGNET_PREFIX)].lower() == MAGNET_PREFIX:
        if not _magnet_topics(candidate):
            raise InvalidURLError(url, "magnet link without a BitTorrent info-hash (xt=urn:btih:)")
        return candidate
    try:
        parts = urlsplit(candidate)
        _ = parts.port  # raises ValueError unless the port is a number in range
    except ValueError as exc:
        raise InvalidURLError(url, f"malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURLError(url, f"not an absolute URL (no scheme); use {ACCEPTED_URLS}")
    if scheme not in _SCHEMES:
        raise InvalidURLError(url, f"unsupported scheme {scheme!r}; use {ACCEPTED_URLS}")
    if not parts.hostname:
        raise InvalidURLError(url, "missing host")
    return candidate


_LEADING_DOTS_AND_BLANKS = re.compile(r"^[\s.]+")


def sanitize_name(name: str) -> str:
    """Turn ``name`` into a safe single-segment file name under the module's rules.

    Raises ConfigError when nothing usable remains (empty, only dots, only control characters).
    """
    cleaned = name.translate(_SEPARATORS)
    cleaned = "".join(ch for ch in cleaned if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    cleaned = _LEADING_DOTS_AND_BLANKS.sub("", cleaned).rstrip()
    if not cleaned:
        raise ConfigError(f"invalid file name {name!r}: nothing usable remains after sanitising")
    return _truncate(cleaned)


def name_from_url(url: str) -> str:
    """Return the file name for ``url``: its last path segment, percent-decoded and sanitised.

    The query and fragment are ignored; an encoded separator (``a%2Fb``) stays inside the segment
    and becomes ``_``. Raises InvalidURLError for an invalid URL or one with no usable last
    segment (``https://host/`` or ``https://host/dir/``).
    """
    checked = url if url.startswith("file:") else validate_url(url)  # file: a local torrent
    if is_magnet(checked):
        return _magnet_name(checked)
    segment = urlsplit(checked).path.rsplit("/", 1)[-1]
    if segment.lower().endswith(TORRENT_SUFFIX) and len(segment) > len(TORRENT_SUFFIX):
        segment = segment[: -len(TORRENT_SUFFIX)]  # the source is the torrent's payload
    if not segment:
        raise InvalidURLError(url, "no file name in the URL path (it is empty or ends with '/')")
    try:
        return sanitize_name(unquote(segment, errors="replace"))
    except ConfigError:
        raise InvalidURLError(
            url, f"last path segment {segment!r} is not a usable file name"
        ) from None


def is_magnet(url: str) -> bool:
    """True for a ``magnet:`` link."""
    return url[: len(MAGNET_PREFIX)].lower() == MAGNET_PREFIX


def _magnet_topics(link: str) -> list[str]:
    """The BitTorrent info-hash topics (``xt``) of a magnet link."""
    query = parse_qs(link[len(MAGNET_PREFIX) :])
    return [t for t in query.get("xt", []) if t.lower().startswith(_INFO_HASH_TOPICS)]


def _magnet_name(link: str) -> str:
    """A magnet link's display name (``dn``) sanitised, else its first info-hash."""
    names = parse_qs(link[len(MAGNET_PREFIX) :]).get("dn", [])
    if names:
        try:
            return sanitize_name(names[0])
        except ConfigError:
            pass
    return sanitize_name(_magnet_topics(link)[0].split(":")[-1])


def resolve_inside(dest: Path, name: str) -> Path:
    """Return ``dest.resolve() / name``, after checking that it resolves to a place inside ``dest``.

    ``name`` is relative and may have sub-directories (``api/dump/1.json``) but no ``.``/``..``
    components. Symlinks are followed when checking, so a link in ``dest`` pointing outside is
    refused; the returned path itself does not follow a final-component symlink. Raises
    StorageError (carrying the offending path) when the path would leave ``dest``.
    """
    root = dest.resolve()
    relative = PurePosixPath(name)
    if (
        not name
        or relative.is_absolute()
        or "\\" in name
        or "\0" in name
        or any(part in {".", ".."} for part in name.split("/"))
    ):
        raise StorageError(root / name, "refusing a name that is not a plain relative path")
    target = root / relative
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise StorageError(target, f"cannot resolve the destination path ({exc})") from None
    if resolved == root or not resolved.is_relative_to(root):
        raise StorageError(target, f"refusing to write outside the destination {root}")
    return target


def is_whole_file(path: str | Path, size: int) -> bool:
    """Return True if ``path`` is a regular file (not a symlink) of exactly ``size`` bytes."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def part_path(final: Path) -> Path:
    """Return the temporary path a download streams into before it is renamed to ``final``."""
    return final.with_name(final.name + PART_SUFFIX)


def _truncate(name: str) -> str:
    """Cut ``name`` to MAX_NAME_BYTES of UTF-8, keeping a recognisable extension if it has one."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    match = _EXTENSION.search(name)
    extension = match.group(0) if match and match.start() > 0 else ""
    stem = name[: len(name) - len(extension)]
    budget = MAX_NAME_BYTES - len(extension.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip()
    return cut + extension
