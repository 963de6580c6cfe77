"""Sharding a run: which sources shard I of N takes, and one local folder per shard."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ed_extractor.errors import StorageError, UsageError
from ed_extractor.settings import Settings, SourceSpec

log = logging.getLogger(__name__)

JOB_INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
"""Set by Kubernetes in each pod of an Indexed Job: the pod's index, 0 to completions - 1."""
SHARDS_VARIABLE = "ED_EXTRACTOR_SHARDS"
"""How many shards the run is cut into (Settings.shards); with the index above it picks a shard."""
MARKER_NAME = ".ed-extractor-shard"
"""The file in a local destination that says which shard ("I/N") the folder belongs to."""

_SHARD_FORM = re.compile(r"([0-9]+)/([0-9]+)")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the sources whose name hashes to ``index`` modulo ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise UsageError(f"shard {self.index}/{self.count}: expected 0 <= I < N")

    @property
    def label(self) -> str:
        """``"I/N"``, as ``--shard`` takes it and ``--json`` prints it."""
        return f"{self.index}/{self.count}"

    def holds(self, name: str) -> bool:
        """True when the source called ``name`` belongs to this shard."""
        return shard_index(name, self.count) == self.index

    def select(self, specs: Sequence[SourceSpec]) -> list[SourceSpec]:
        """The sources of ``specs`` that belong to this shard, in their order."""
        return [spec for spec in specs if self.holds(spec.name)]


def shard_index(name: str, count: int) -> int:
    """The shard of a source: the first 8 bytes of SHA-256 of its UTF-8 name, modulo ``count``.

    Stable across processes, machines and Python versions (never ``hash()``), and independent of
    where the source stands in the sources file.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """``"I/N"`` with 0 <= I < N as a Shard; anything else is a UsageError."""
    match = _SHARD_FORM.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"expected a shard I/N such as 0/3, got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def shard_of_run(
    explicit: Shard | None, shards: int | None, environ: Mapping[str, str]
) -> Shard | None:
    """The shard this run works on, None for the whole list.

    An explicit ``--shard`` wins; else ``ED_EXTRACTOR_SHARDS`` (``shards``) with the Indexed
    Job's ``JOB_COMPLETION_INDEX`` picks shard ``JOB_COMPLETION_INDEX`` of ``shards``.
    """
    if explicit is not None:
        return explicit
    if shards is None:
        return None
    index = environ.get(JOB_INDEX_VARIABLE)
    if index is None or index == "":
        raise UsageError(
            f"{SHARDS_VARIABLE}={shards} needs {JOB_INDEX_VARIABLE} (the pod's index in an "
            "Indexed Job) or --shard I/N to say which shard to run"
        )
    if not (index.isascii() and index.isdigit()) or int(index) >= shards:
        raise UsageError(
            f"{JOB_INDEX_VARIABLE}={index!r} is not a shard of {SHARDS_VARIABLE}={shards} "
            f"(expected 0 to {shards - 1})"
        )
    return Shard(int(index), shards)


def shard_settings(settings: Settings, shard: Shard | None) -> Settings:
    """``settings`` for the shard: an object-store run gets a scratch folder of its own.

    Shards on one machine would otherwise share one scratch folder (its part files, its lock),
    whether ``ED_EXTRACTOR_SCRATCH`` names it or not: each takes ``<scratch>/shard-I``.
    """
    if shard is None or settings.dest_url is None:
        return settings
    scratch = settings.dest / f"shard-{shard.index}"
    return settings.model_copy(update={"dest": scratch, "scratch": scratch})


def claim_folder(dest: Path, shard: Shard | None) -> None:
    """Make sure the local folder ``dest`` is this run's: one shard per folder, never two.

    The first sharded run writes ``<dest>/.ed-extractor-shard`` ("I/N"), created atomically so
    that two shards started together cannot both claim it. A run of another shard, of another N
    or without --shard on that folder is a UsageError, raised before anything is written (and
    before the destination lock, so a second shard hears why rather than waiting). Deleting the
    marker gives the folder back.
    """
    marker = dest / MARKER_NAME
    owner = _read_marker(marker)
    if owner is None and shard is not None:
        owner = _create_marker(marker, shard.label)
        if owner == shard.label:
            log.info("destination claimed by shard", extra={"shard": shard.label})
    if owner is None or (shard is not None and owner == shard.label):
        return
    this_run = f"shard {shard.label}" if shard is not None else "an unsharded run"
    raise UsageError(
        f"{dest} holds shard {owner} ({marker}); {this_run} needs a folder of its own "
        f"(each shard of a local destination has its own --dest; delete {marker} to reuse it)"
    )


def _read_marker(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(marker, f"cannot read the shard marker ({exc.strerror or exc})") from exc


def _create_marker(marker: Path, label: str) -> str:
    """Write ``label`` to ``marker`` unless it exists; return the label the marker holds then."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        staged = marker.with_name(f"{MARKER_NAME}.{os.getpid()}.{uuid.uuid4().hex}")
        staged.write_text(f"{label}\n", encoding="utf-8")
        try:
            os.link(staged, marker)  # fails if another run claimed the folder meanwhile
        except FileExistsError:
            pass
        finally:
            staged.unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(
            marker, f"cannot write the shard marker ({exc.strerror or exc})"
        ) from exc
    return _read_marker(marker) or label
