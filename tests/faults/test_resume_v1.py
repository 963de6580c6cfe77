"""Part files and sidecars written by the release before the one-engine redesign still resume.

``tests/data/resume-v1/`` holds a one-stream part (a prefix) and a segmented part (three ranges,
each written up to a point) with the sidecars that release wrote (``make_resume_v1.py``); only the
placeholder URL in each sidecar is replaced by the test server's. A fetch must ask for exactly the
missing bytes and store the right file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.data.make_resume_v1 import ETAG, HERE, payload
from tests.faults.conftest import assert_stored, cli, explain
from tests.faults.server import FaultServer, Version

Start = Callable[..., FaultServer]
NAME = "file.bin"


def _kept(layout: str, dest: Path, url: str) -> dict[str, object]:
    """Copy the kept part and its sidecar into ``dest``, the sidecar naming ``url``."""
    source = HERE / layout
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / f"{NAME}.part", dest / f"{NAME}.part")
    sidecar = json.loads((source / f"{NAME}.part.resume").read_text())
    assert sidecar["url"] == "URL"
    sidecar["url"] = url
    (dest / f"{NAME}.part.resume").write_text(json.dumps(sidecar))
    return dict(sidecar)


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
def test_a_one_stream_part_of_the_previous_release_resumes_with_its_tail(
    native: str, fault_server: Start, dest: Path
) -> None:
    body = payload()
    server = fault_server(Version(body, etag=ETAG))
    url = server.url(NAME)
    _kept("single", dest, url)
    kept = (dest / f"{NAME}.part").stat().st_size
    result = cli("fetch", url, "--dest", str(dest), "--json", env={"ED_EXTRACTOR_NATIVE": native})
    assert_stored(result, dest, NAME, body, server)
    [get] = server.body_gets()
    assert (get.range, get.if_range, get.status) == (f"bytes={kept}-", ETAG, 206), explain(result)
    assert server.body_bytes() == len(body) - kept


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
def test_a_segmented_part_of_the_previous_release_resumes_each_range(
    native: str, fault_server: Start, dest: Path
) -> None:
    body = payload()
    server = fault_server(Version(body, etag=ETAG))
    url = server.url(NAME)
    sidecar = _kept("segmented", dest, url)
    segments = [tuple(segment) for segment in sidecar["segments"]]  # type: ignore[attr-defined]
    missing = sum(end - written for _, written, end in segments)
    result = cli(
        "fetch", url, "--dest", str(dest), "--json", "--connections", "4",
        env={"ED_EXTRACTOR_NATIVE": native},
    )  # fmt: skip
    assert_stored(result, dest, NAME, body, server)
    asked = sorted(get.range_start or 0 for get in server.body_gets())
    assert asked == [written for _, written, end in segments if written < end], explain(result)
    assert all(get.if_range == ETAG for get in server.body_gets())
    assert server.body_bytes() == missing
