"""Run settings from ``ED_EXTRACTOR_*`` variables, and the list of sources from a TOML file.

A sources file holds an optional ``[defaults]`` table and one ``[[source]]`` table per source::

    [defaults]                 # optional: expect, enabled, verify, max_bytes, connections, ...
                               # ... and for the whole run: parallel, dest
    expect = "gzip"
    parallel = 2               # sources a run works on at once (of the whole run, not per source)
    dest = "s3://bucket/raw"   # the run's destination unless --dest or ED_EXTRACTOR_DEST says

    [[source]]
    url = "https://downloads.spansh.co.uk/galaxy_1day.json.gz"   # required
    name = "galaxy_1day.json.gz"   # optional, default: the URL's last path segment
    expect = "gzip"                # optional: "gzip" | "json" | "zstd" | "binary" | "bittorrent"
    enabled = true                 # optional
    expect_sha256 = "<64 hex>"     # optional
    max_bytes = 1000000            # optional, > 0
    verify = true                  # optional
    connections = "auto"           # optional: "auto" or N ranged connections for this file
    description = "..."            # optional
    peers = ["host:port"]          # optional: BitTorrent peers to contact

    [[source]]
    torrent = "dumps/galaxy.json.gz.torrent"   # a local torrent file instead of a url (relative
                                               # to the sources file)

A key in a source overrides the same key in ``[defaults]``. Unknown keys, wrong types, invalid URLs
and duplicate names are errors. Every problem is a ConfigError of one line naming the file.
"""

from __future__ import annotations

import tempfile
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from ed_extractor.errors import ConfigError, UsageError
from ed_extractor.manifest.models import ContentRegime, Sha256Hex
from ed_extractor.manifest.store import default_manifest_path
from ed_extractor.paths import name_from_url, sanitize_name, validate_url
from ed_extractor.services.s3.location import S3Prefix, is_s3_url, parse_s3_prefix

#: Connections per file: N >= 1, or "auto" (several for a large file whose server allows it).
ConnectionsSetting = Annotated[int, Field(ge=1)] | Literal["auto"]

ENV_PREFIX = "ED_EXTRACTOR_"
DEFAULT_SOURCES = "default_sources.toml"
DEFAULT_PARALLEL = 2

# Network and retry defaults: written here only (http.make_client and RetryPolicy use them too).
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
MAX_REDIRECTS = 10
RETRY_ATTEMPTS = 5
RETRY_INITIAL_WAIT_S = 1.0
RETRY_MAX_WAIT_S = 300.0
RETRY_TOTAL_S = 3600.0
# The most bytes of one API answer, once decoded: Spansh's largest system dumps are a few MB of
# JSON, so 32 MiB leaves ample room while bounding what a hostile answer (a gzip bomb) can cost.
API_MAX_BYTES = 32 << 20


class Settings(BaseSettings):
    """Settings of one run; each field reads ``ED_EXTRACTOR_<FIELD>``, keyword arguments win.

    Invalid values raise ConfigError (one line) instead of pydantic's ValidationError.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True
    )

    dest: Path = Field(
        default=Path("data"),
        description="directory of the local copies; for an s3:// destination, its scratch folder",
    )
    dest_url: str | None = Field(
        default=None, description="s3://BUCKET/PREFIX when the destination is an object store"
    )
    scratch: Path | None = Field(
        default=None, description="part files of an object-store destination; None: a temp folder"
    )
    upload_max_age_s: float = Field(
        default=86400.0, gt=0, description="abort unfinished uploads under the prefix this old"
    )
    config: Path | None = Field(default=None, description="sources file; None: built-in list")
    manifest: Path | None = Field(default=None, description="None: <dest>/manifest.sqlite3")
    manifest_journal: Literal["wal", "delete"] = Field(
        default="wal", description="delete: a manifest on a network file system several hosts share"
    )
    connect_timeout: float = Field(default=CONNECT_TIMEOUT_S, gt=0, description="seconds")
    read_timeout: float = Field(default=READ_TIMEOUT_S, gt=0, description="seconds between reads")
    max_redirects: int = Field(default=MAX_REDIRECTS, ge=0)
    verify: bool = Field(default=True, description="check content after download")
    log_format: Literal["auto", "json", "text"] = "auto"
    retry_attempts: int = Field(default=RETRY_ATTEMPTS, ge=1, description="tries, first included")
    retry_initial_wait_s: float = Field(
        default=RETRY_INITIAL_WAIT_S, ge=0, description="first pause"
    )
    retry_max_wait_s: float = Field(default=RETRY_MAX_WAIT_S, ge=0, description="longest pause")
    retry_total_s: float = Field(default=RETRY_TOTAL_S, gt=0, description="retrying stops after")
    deadline_s: float | None = Field(default=None, gt=0, description="the whole run stops after")
    lock_wait_s: float = Field(default=0.0, ge=0, description="wait for another run's lock")
    metrics_file: Path | None = Field(default=None, description="Prometheus text file to write")
    pushgateway_url: str | None = Field(default=None, description="Pushgateway to push metrics to")
    # segmented downloads
    connections: ConnectionsSetting = Field(
        default="auto", description="ranged connections per file"
    )
    # BLAKE3 beside SHA-256: recorded at download, used by `verify`
    blake3: bool = Field(default=True, description="also record each file's BLAKE3")
    # s3:// sources (credentials come from the standard AWS chain, never from these settings)
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (path-style addressing); None: AWS"
    )
    s3_region: str | None = Field(default=None, description="signing region; None: AWS config")
    s3_anonymous: bool = Field(default=False, description="unsigned requests (public buckets)")
    # Several sources at once (ED_EXTRACTOR_PARALLEL); None: [defaults] parallel, else 2
    parallel: int | None = Field(default=None, ge=1, description="sources worked on at once")
    # `run` cut into N shards (ED_EXTRACTOR_SHARDS): with JOB_COMPLETION_INDEX it picks the shard
    shards: int | None = Field(default=None, ge=1, description="shards of an Indexed Job's run")
    # API fetcher (`api dump`) and EDDN stream (`eddn`)
    api_base_url: str = Field(default="https://spansh.co.uk", description="Spansh API root")
    api_rate: float = Field(default=2.0, gt=0, description="API requests per second per host")
    api_burst: int = Field(default=4, ge=1, description="API requests allowed back to back")
    api_auth_header: SecretStr | None = Field(default=None, description="'Name: value' to send")
    api_poll_total_s: float = Field(default=60.0, gt=0, description="longest wait for a search")
    api_max_bytes: int = Field(
        default=API_MAX_BYTES, ge=1, description="largest API answer, decoded, in bytes"
    )
    eddn_endpoint: str = Field(default="tcp://eddn.edcd.io:9500", description="EDDN relay")
    eddn_silence_timeout_s: float = Field(default=60.0, gt=0, description="reconnect after")
    # this recorder's replica name (None: the host name's first label); checked by the command
    eddn_replica: str | None = Field(default=None, description="EDDN replica name")
    eddn_heartbeat_s: float = Field(default=5.0, gt=0, description="coverage beat interval")
    # EDDN metrics while running: exported at least this often, and whenever an hour file closes
    eddn_metrics_interval_s: float = Field(
        default=60.0, gt=0, description="export the recorder's metrics this often"
    )
    # BitTorrent regime: the libtorrent session of torrent and magnet sources
    bt_listen: str = Field(default="0.0.0.0:6881,[::]:6881", description="listen interfaces")
    bt_peers: str = Field(default="", description="extra peers, comma-separated host:port")
    bt_dht: bool = Field(default=True, description="use the DHT to find peers and metadata")
    bt_lsd: bool = Field(default=True, description="local service discovery")
    bt_upnp: bool = Field(default=True, description="map the listen port with UPnP")
    bt_natpmp: bool = Field(default=True, description="map the listen port with NAT-PMP")
    bt_utp: bool = Field(default=True, description="uTP connections besides TCP")
    bt_stall_s: float = Field(default=300.0, gt=0, description="no progress for this long: failed")
    bt_seed_s: float = Field(default=0.0, ge=0, description="seed this long after a download")

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(
                "; ".join(_describe_setting(error) for error in exc.errors())
            ) from None

    @model_validator(mode="before")
    @classmethod
    def _object_store_destination(cls, data: Any) -> Any:
        """``dest = "s3://BUCKET/PREFIX"``: kept as ``dest_url``; ``dest`` becomes the scratch."""
        if not isinstance(data, dict) or not is_s3_url(str(data.get("dest") or "")):
            return data
        store = parse_s3_prefix(str(data["dest"]))
        scratch = data.get("scratch") or Path(tempfile.gettempdir()) / "ed-extractor" / (
            f"{store.bucket}/{store.prefix}".rstrip("/")
        )
        return {**data, "dest_url": store.url, "dest": scratch}

    @property
    def object_dest(self) -> S3Prefix | None:
        """The object-store destination (bucket and prefix), None for a local folder."""
        return None if self.dest_url is None else parse_s3_prefix(self.dest_url)

    @classmethod
    def from_environment(cls, **overrides: Any) -> Settings:
        """Read the environment; ``overrides`` (command-line options) win. Same as ``cls()``."""
        return cls(**overrides)

    @property
    def manifest_path(self) -> Path:
        """The manifest file: ``manifest`` if set, else ``<dest>/manifest.sqlite3``."""
        return self.manifest if self.manifest is not None else default_manifest_path(self.dest)

    def sources_at_once(self, sources: SourcesFile | None = None) -> int:
        """How many sources to work on at once: this setting, else the sources file's, else 2."""
        if self.parallel is not None:
            return self.parallel
        if sources is not None and sources.parallel is not None:
            return sources.parallel
        return DEFAULT_PARALLEL


class SourceDefaults(BaseModel):
    """The ``[defaults]`` table: values for keys a ``[[source]]`` table leaves out."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    expect: ContentRegime | None = None
    enabled: bool = True
    verify: bool = True
    max_bytes: int | None = Field(default=None, gt=0)
    connections: ConnectionsSetting | None = None
    parallel: int | None = Field(default=None, gt=0, description="of the run, not per source")
    dest: str | None = Field(
        default=None, min_length=1, description="the run's destination: a folder or s3://"
    )


RUN_DEFAULTS = frozenset({"parallel", "dest"})  # [defaults] keys of the run, not each source


class SourceSpec(BaseModel):
    """One source to fetch; ``name`` is derived from the URL when not given.

    Construction raises InvalidURLError for a bad URL and ConfigError (one line) for anything
    else; load_sources reports the same problems as ConfigError naming the file and the source.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    url: str = Field(description="absolute http(s) or s3:// URL or magnet link, as requested")
    name: str = Field(description="file name inside dest")
    expect: ContentRegime | None = Field(default=None, description="fail unless the body is this")
    enabled: bool = True
    expect_sha256: Sha256Hex | None = Field(default=None, description="64 hex digits")
    max_bytes: int | None = Field(default=None, gt=0, description="refuse a larger body")
    verify: bool = True
    connections: ConnectionsSetting | None = Field(default=None, description="None: the run's")
    description: str = ""
    torrent: str | None = Field(default=None, description="a local torrent file (no url then)")
    peers: list[str] = Field(default_factory=list, description="BitTorrent peers, host:port")

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe_errors(exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _derive_name(cls, data: Any) -> Any:
        """Fill in a missing name from the URL (raises InvalidURLError if the URL has none).

        A local ``torrent`` stands for the URL: ``file://`` + its absolute path.
        """
        if isinstance(data, dict) and isinstance(data.get("torrent"), str):
            if data.get("url") is not None:
                raise ConfigError("give either url or torrent, not both")
            path = Path(data["torrent"]).expanduser().absolute()
            data = {**data, "torrent": str(path), "url": path.as_uri()}
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("url"), str):
            return {**data, "name": name_from_url(data["url"])}
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value.startswith("file:"):  # set from ``torrent`` by _derive_name, checked there
            return value
        return validate_url(value)

    @model_validator(mode="after")
    def _file_url_needs_torrent(self) -> SourceSpec:
        if self.url.startswith("file:") and self.torrent is None:
            raise ValueError('a local file is given with torrent = "path", not as a url')
        return self

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return sanitize_name(value)


class SourcesFile(BaseModel):
    """A parsed sources file: its sources and the run-wide values of its ``[defaults]``."""

    model_config = ConfigDict(frozen=True)

    sources: list[SourceSpec]
    parallel: int | None = None
    dest: str | None = None  # a folder (relative to the sources file) or s3://BUCKET/PREFIX


def _run_wide(defaults: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """Take the run's own keys out of ``defaults``; a folder ``dest`` is relative to ``base``."""
    run_wide = {key: defaults.pop(key) for key in RUN_DEFAULTS & set(defaults)}
    dest = run_wide.get("dest")
    if isinstance(dest, str) and base is not None and not is_s3_url(dest):
        run_wide["dest"] = str(base / Path(dest).expanduser())
    return run_wide


def load_sources(path: Path | None = None) -> list[SourceSpec]:
    """Read the sources file at ``path``, or the built-in list of Spansh dumps when None."""
    return load_sources_file(path).sources


def parse_sources(text: str, *, origin: str = "<string>") -> list[SourceSpec]:
    """Parse the text of a sources file; ``origin`` names it in error messages."""
    return parse_sources_file(text, origin=origin).sources


def load_sources_file(path: Path | None = None) -> SourcesFile:
    """Read the sources file at ``path`` (None: the built-in list), run-wide defaults included."""
    if path is None:
        text = files("ed_extractor").joinpath(DEFAULT_SOURCES).read_text(encoding="utf-8")
        return parse_sources_file(text, origin=f"built-in {DEFAULT_SOURCES}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    return parse_sources_file(text, origin=str(path), base=path.parent)


def parse_sources_file(
    text: str, *, origin: str = "<string>", base: Path | None = None
) -> SourcesFile:
    """Parse the text of a sources file; ``origin`` names it in error messages.

    A relative ``torrent`` path is taken relative to ``base`` (the sources file's folder).
    """
    try:
        document = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigError(f"{origin}: invalid TOML: {_one_line(str(exc))}") from None
    unknown = sorted(set(document) - {"defaults", "source"})
    if unknown:
        raise ConfigError(
            f"{origin}: unknown top-level key {unknown[0]!r} (expected [defaults] and [[source]])"
        )
    defaults = _parse_defaults(document.get("defaults", {}), origin)
    run_wide = _run_wide(defaults, base)
    tables = document.get("source")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{origin}: expected one or more [[source]] tables")

    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        where = f"{origin}: source #{number}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table ([[source]])")
        where += _label(table)
        if base is not None and isinstance(table.get("torrent"), str):
            table = {**table, "torrent": str(base / Path(table["torrent"]).expanduser())}
        try:
            spec = SourceSpec(**{**defaults, **table})
        except UsageError as exc:
            raise ConfigError(f"{where}: {_one_line(str(exc))}") from None
        if spec.name in seen:
            raise ConfigError(
                f"{where}: duplicate name {spec.name!r} (also source #{seen[spec.name]})"
            )
        seen[spec.name] = number
        specs.append(spec)
    return SourcesFile(sources=specs, **run_wide)


def _parse_defaults(table: object, origin: str) -> dict[str, Any]:
    """Validate ``[defaults]``; return only the keys it sets, to merge under each source."""
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: 'defaults' must be a table ([defaults])")
    try:
        SourceDefaults.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: [defaults]: {_describe_errors(exc)}") from None
    return dict(table)


def _label(table: dict[str, Any]) -> str:
    """Name a source table in messages by its name, else its URL, when they are strings."""
    for key in ("name", "url"):
        value = table.get(key)
        if isinstance(value, str):
            return f" ({_one_line(value)!r})"
    return ""


def _describe_errors(exc: ValidationError) -> str:
    """One line for all of a model's validation errors, in the words of a config file."""
    # A name is never required from the user: it is missing only because the URL is unusable.
    errors = [e for e in exc.errors() if not (e["type"] == "missing" and e["loc"] == ("name",))]
    return "; ".join(_describe(error) for error in errors)


def _describe(error: ErrorDetails) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    if error["type"] == "missing":
        return f"missing required key {key!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"key {key!r}: {_one_line(message)}" if key else _one_line(message)


def _describe_setting(error: ErrorDetails) -> str:
    field = ".".join(str(part) for part in error["loc"])
    variable = ENV_PREFIX + field.upper()
    if error["type"] == "extra_forbidden":
        return f"unknown setting {field!r}"
    value = _one_line(repr(error["input"]))[:80]
    message = _one_line(error["msg"])
    return f"invalid setting {field} ({variable}) = {value}: {message}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
