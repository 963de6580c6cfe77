"""The demo generator writes Spansh-shaped, reproducible gzip dumps and a reusable mirror tree."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ed_extractor.demo import generator
from ed_extractor.demo.generator import (
    MIRROR_LAYOUT,
    STAMP_NAME,
    DumpStats,
    generate_dump,
    generate_mirror,
)
from ed_extractor.demo.records import (
    GALAXY_KEYS,
    POPULATED_KEYS,
    STATION_KEYS,
    SYSTEMS_KEYS,
    RecordSpec,
)

DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+00$")


def lines_of(path: Path) -> list[str]:
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def records_of(path: Path) -> list[dict[str, Any]]:
    """Parse a dump line by line, checking the Spansh layout on the way."""
    lines = lines_of(path)
    assert lines[0] == "["
    assert lines[-1] == "]"
    body = lines[1:-1]
    assert all(line.endswith(",") for line in body[:-1])
    assert not body or not body[-1].endswith(",")
    records = [json.loads(line.removesuffix(",")) for line in body]
    assert json.loads("\n".join(lines)) == records  # also one JSON array as a whole
    return records


def assert_keys(record: dict[str, Any], keys: dict[str, tuple[type | None, ...]]) -> None:
    for key, types in keys.items():
        assert key in record, key
        value = record[key]
        allowed = tuple(t for t in types if t is not None)
        assert (value is None and None in types) or isinstance(value, allowed), (key, value)


def dump(path: Path, **kwargs: Any) -> DumpStats:
    args: dict[str, Any] = {"systems": 300, "seed": 7, "populated": False, "stations": False}
    return generate_dump(path, **{**args, **kwargs})


def test_dump_is_a_reproducible_gzip_member(tmp_path: Path) -> None:
    stats = dump(tmp_path / "galaxy.json.gz")
    raw = (tmp_path / "galaxy.json.gz").read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FEXTRA/FCOMMENT
    assert raw[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert stats.bytes == len(raw)
    assert stats.sha256 == hashlib.sha256(raw).hexdigest()
    assert stats.uncompressed_bytes == len(gzip.decompress(raw))
    assert stats.records == 300
    assert stats.name == "galaxy.json.gz"


def test_same_parameters_give_identical_bytes(tmp_path: Path) -> None:
    first = dump(tmp_path / "a.json.gz")
    second = dump(tmp_path / "b.json.gz")
    assert first.sha256 == second.sha256
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    assert dump(tmp_path / "c.json.gz", seed=8).sha256 != first.sha256


@pytest.mark.parametrize(
    ("populated", "stations"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_galaxy_records_follow_the_spansh_schema(
    tmp_path: Path, populated: bool, stations: bool
) -> None:
    path = tmp_path / "galaxy.json.gz"
    dump(path, systems=200, populated=populated, stations=stations)
    records = records_of(path)
    assert len(records) == 200
    for record in records:
        assert_keys(record, GALAXY_KEYS)
        assert set(record["coords"]) == {"x", "y", "z"}
        assert all(isinstance(v, float) for v in record["coords"].values())
        assert DATE.match(record["date"])
        assert record["bodyCount"] >= len(record["bodies"])
        if record["population"] > 0:
            assert_keys(record, POPULATED_KEYS)
            assert set(record["controllingFaction"]) == {"name", "government", "allegiance"}
            assert record["controllingFaction"]["name"] in {f["name"] for f in record["factions"]}
        for station in record["stations"]:
            assert all(key in station for key in STATION_KEYS)
            assert DATE.match(station["updateTime"])
        for body in record["bodies"]:
            assert body["id64"] & ((1 << 55) - 1) == record["id64"]
    ids = [r["id64"] for r in records]
    assert len(set(ids)) == len(ids)
    if populated:
        assert all(r["population"] > 0 for r in records)
    if stations:
        assert all(r["stations"] for r in records)
    if not populated and not stations:  # the galaxy-wide mix: mostly uninhabited
        inhabited = sum(r["population"] > 0 for r in records)
        assert 0 < inhabited < len(records) // 4


def test_systems_records_are_minimal(tmp_path: Path) -> None:
    path = tmp_path / "systems_neutron.json.gz"
    dump(path, kind="systems", main_star="Neutron Star", window_days=7)
    records = records_of(path)
    assert len(records) == 300
    for record in records:
        assert set(record) == set(SYSTEMS_KEYS)
        assert_keys(record, SYSTEMS_KEYS)
        assert record["mainStar"] == "Neutron Star"
        assert DATE.match(record["updateTime"])
    assert min(r["updateTime"] for r in records) >= "2026-11-17"  # within the 7-day window


def test_empty_dump_is_an_empty_array(tmp_path: Path) -> None:
    stats = dump(tmp_path / "empty.json.gz", systems=0)
    assert lines_of(tmp_path / "empty.json.gz") == ["[", "]"]
    assert stats.records == 0


def test_chunked_dump_is_one_valid_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "_CHUNK_TEXT_BYTES", 40_000)  # ~10 records per chunk
    path = tmp_path / "chunked.json.gz"
    stats = dump(path, systems=95, workers=1)
    assert len(generator._jobs(RecordSpec(), 95, "k", 1)) > 5
    records = records_of(path)  # gzip.decompress checks the combined CRC-32 and length
    assert len(records) == stats.records == 95
    with gzip.open(path) as stream:  # a single member: streaming readers see all of it
        assert len(stream.read()) == stats.uncompressed_bytes


def test_worker_processes_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generator, "_CHUNK_TEXT_BYTES", 40_000)
    serial = dump(tmp_path / "serial.json.gz", systems=120, workers=1)
    parallel = dump(tmp_path / "parallel.json.gz", systems=120, workers=2)
    assert parallel.sha256 == serial.sha256


def mtimes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in root.iterdir()}


@pytest.fixture(scope="module")
def small_mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DumpStats]]:
    root = tmp_path_factory.mktemp("mirror")
    return root, generate_mirror(root, scale_mb=1, seed=3, workers=1)


def test_mirror_has_the_spansh_file_names_and_size(
    small_mirror: tuple[Path, list[DumpStats]],
) -> None:
    root, stats = small_mirror
    names = [s.name for s in stats]
    assert names == [entry.name for entry in MIRROR_LAYOUT]
    assert "galaxy.json.gz" in names
    assert "galaxy_populated.json.gz" in names
    assert "systems_1day.json.gz" in names
    assert max(stats, key=lambda s: s.bytes).name == "galaxy.json.gz"
    assert 0.8e6 < sum(s.bytes for s in stats) < 1.25e6
    for s in stats:
        assert s.path == root / s.name
        assert hashlib.sha256(s.path.read_bytes()).hexdigest() == s.sha256
    stamp = json.loads((root / STAMP_NAME).read_text())
    assert [f["sha256"] for f in stamp["files"]] == [s.sha256 for s in stats]


def test_layout_sizes_match_what_the_generator_writes(tmp_path: Path) -> None:
    for entry in MIRROR_LAYOUT[:1] + MIRROR_LAYOUT[4:7]:
        spec = entry.spec
        stats = generate_dump(
            tmp_path / entry.name,
            systems=max(40, int(400_000 / entry.record_bytes)),
            seed=1,
            populated=spec.populated,
            stations=spec.stations,
            kind=spec.kind,
            main_star=spec.main_star,
            window_days=spec.window_days,
        )
        assert stats.bytes / stats.records == pytest.approx(entry.record_bytes, rel=0.2)


def test_mirror_is_reused_without_rewriting(tmp_path: Path) -> None:
    first = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    before = mtimes(tmp_path)
    again = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    assert again == first
    assert mtimes(tmp_path) == before


def test_mirror_is_redone_without_its_stamp(tmp_path: Path) -> None:
    first = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    (tmp_path / STAMP_NAME).unlink()
    for s in first:
        os.utime(s.path, ns=(0, 0))
    again = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    assert [s.sha256 for s in again] == [s.sha256 for s in first]
    assert all(s.path.stat().st_mtime_ns != 0 for s in again)  # every file rewritten
    assert (tmp_path / STAMP_NAME).exists()


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_mirror_redoes_a_missing_or_damaged_file(tmp_path: Path, damage: str) -> None:
    first = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    victim = tmp_path / "galaxy_1day.json.gz"
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    before = mtimes(tmp_path)
    again = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    assert [s.sha256 for s in again] == [s.sha256 for s in first]
    after = mtimes(tmp_path)
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {"galaxy_1day.json.gz", STAMP_NAME}


def test_mirror_with_other_parameters_is_regenerated(tmp_path: Path) -> None:
    first = generate_mirror(tmp_path, scale_mb=1, seed=3, workers=1)
    other = generate_mirror(tmp_path, scale_mb=1, seed=4, workers=1)
    assert all(a.sha256 != b.sha256 for a, b in zip(first, other, strict=True))
    assert json.loads((tmp_path / STAMP_NAME).read_text())["params"]["seed"] == 4


def test_generate_command_writes_the_tree_and_reports_json_lines(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "ed_extractor.demo", "generate", "--root", str(tmp_path)]
    done = subprocess.run(
        [*command, "--scale-mb", "1", "--workers", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["name"] for line in lines] == [entry.name for entry in MIRROR_LAYOUT]
    for line in lines:
        path = tmp_path / line["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == line["sha256"]
    assert "mirror at" in done.stderr  # logs go to stderr
