"""The object-store rows of ``make bench-e2e``: one file landed in SeaweedFS against a local folder.

The same generated file, served by a local nginx, is fetched by ``ed-extractor fetch`` with 1 and
8 connections (a) into a folder and (b) to ``--dest s3://bench/ed`` on a SeaweedFS that this
benchmark starts on 127.0.0.1, whose data folder, the folder of (a) and the scratch folder of (b)
are on one filesystem (named in the output), so both land on the same disk. Beside them: the
pipe ``curl -s URL | aws s3 cp - s3://bench/pipe/NAME`` (awscli from PyPI, installed by the
benchmark into a virtualenv of its own: awscli pins its own botocore) and boto3's
``upload_file`` of the served file ("the best the store can take": no download, no checks).

Every row is a fresh process under GNU time (wall, CPU seconds of its tree, peak RSS), the rows
interleaved run by run; the CPU seconds SeaweedFS spent meanwhile are read from ``/proc`` for its
process tree. Every output is checked: the folder's file, or the object read back, against the
generated file's SHA-256. "speed vs local" is the folder row's seconds over the object-store
row's (same connections); the goal is 0.8x.

    python benches/e2e.py --size 1GiB --runs 3 --payloads binary --destinations object-store

``python benches/e2e_object_store.py boto3-upload FILE BUCKET KEY`` is the boto3 child.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python benches/e2e.py``: tests/ and benches/ importable
    sys.path.insert(0, str(ROOT))

from benches.e2e import (  # noqa: E402
    GB,
    Measured,
    Payload,
    human,
    make_payload,
    ratio_text,
    read_back_logged,
    sha256_file,
    timed,
)

BUCKET = "bench"
AWSCLI_VENV = Path.home() / ".cache" / "ed-extractor" / "bench-awscli"
Lands = Literal["folder", "object"]
ED_LABEL = "ed-extractor fetch, {n} connection{s}"
PIPE = "curl -s URL | aws s3 cp - s3://... (awscli)"
BOTO3 = "boto3 upload_file of the served file (no download, no checks)"


@dataclass(frozen=True)
class Setting:
    """What a row's command line is made of."""

    python: str
    url: str  # the served file
    served: Path  # the same file, locally
    folder: Path  # the destination folder of the folder rows
    aws: str | None  # the aws command of the pipe row, if any

    @property
    def name(self) -> str:
        return self.served.name


@dataclass(frozen=True)
class Lane:
    """One row: where it lands, how it runs, under which object key (object rows)."""

    label: str
    lands: Lands
    argv: Callable[[Setting], list[str]]
    prefix: str = ""
    connections: int | None = None


def _ed(connections: int, lands: Lands) -> Lane:
    def argv(setting: Setting) -> list[str]:
        dest = str(setting.folder) if lands == "folder" else f"s3://{BUCKET}/ed"
        return [setting.python, "-m", "ed_extractor", "fetch", setting.url, "--dest", dest,
                "--name", setting.name, "--json", "--connections", str(connections)]  # fmt: skip

    label = ED_LABEL.format(n=connections, s="" if connections == 1 else "s")
    return Lane(label, lands, argv, "ed", connections)


def _pipe(setting: Setting) -> list[str]:
    assert setting.aws is not None
    script = 'curl -sSf "$1" | "$2" s3 cp --no-progress - "$3"'
    return ["sh", "-c", script, "sh", setting.url, setting.aws,
            f"s3://{BUCKET}/pipe/{setting.name}"]  # fmt: skip


def _boto3(setting: Setting) -> list[str]:
    return [setting.python, __file__, "boto3-upload", str(setting.served), BUCKET,
            f"boto3/{setting.name}"]  # fmt: skip


LANES: tuple[Lane, ...] = (
    _ed(1, "folder"),
    _ed(1, "object"),
    _ed(8, "folder"),
    _ed(8, "object"),
    Lane(PIPE, "object", _pipe, "pipe"),
    Lane(BOTO3, "object", _boto3, "boto3"),
)


def boto3_upload(path: str, bucket: str, key: str) -> int:
    """Upload ``path`` with boto3's ``upload_file`` (s3transfer: 8 MiB parts, 10 at a time)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        config=Config(s3={"addressing_style": "path"}),
    )  # credentials and region from the environment, as the other rows get them
    client.upload_file(path, bucket, key)
    return 0


# --- SeaweedFS and its CPU ---------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants now (``/proc/PID/stat``)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree, total = {pid}, 0.0
    for child in stats:
        if _descends(child, tree, stats):
            tree.add(child)
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


def _descends(pid: int, tree: set[int], stats: dict[int, tuple[int, float]]) -> bool:
    """Whether ``pid`` or one of its ancestors is in ``tree``."""
    seen = set()
    while pid in stats and pid not in seen:
        if pid in tree:
            return True
        seen.add(pid)
        pid = stats[pid][0]
    return False


def filesystem_of(path: Path) -> str:
    """``ext4 /dev/vda on /``: the mount that holds ``path`` (the longest matching mount point)."""
    best = ("", "?", "?")
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, kind = line.split()[:3]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, device, kind)
    return f"{best[2]} {best[1]} on {best[0]}"


# --- awscli ------------------------------------------------------------------------------------


def awscli(choice: str) -> tuple[str | None, str]:
    """The ``aws`` command for the pipe row and where it came from, or None and why not.

    ``auto``: awscli from PyPI in a virtualenv of its own (created the first time; awscli pins the
    botocore it needs, which must not replace the project's); ``none``: no pipe row; else a path.
    """
    if choice == "none":
        return None, "not run (--aws-cli none)"
    if choice != "auto":
        return (choice, choice) if shutil.which(choice) else (None, f"not found: {choice}")
    aws = AWSCLI_VENV / "bin" / "aws"
    if not aws.is_file():
        print(f"installing awscli into {AWSCLI_VENV} ...", file=sys.stderr, flush=True)
        venv.create(AWSCLI_VENV, with_pip=True, clear=True)
        pip = [str(AWSCLI_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "awscli"]
        done = subprocess.run(pip, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not aws.is_file():
            why = (done.stderr.strip().splitlines() or ["?"])[-1][:100]
            return None, f"awscli could not be installed from PyPI ({why})"
    version = subprocess.run([str(aws), "--version"], capture_output=True, text=True, check=False)
    return str(aws), f"{version.stdout.strip() or version.stderr.strip()} ({AWSCLI_VENV})"


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Lanes:
    """The runs of one row: the measures of our process and SeaweedFS's CPU seconds meanwhile."""

    lane: Lane
    measured: Measured = field(default_factory=Measured)
    store_cpu: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.measured.problem is None and bool(self.measured.seconds)

    @property
    def seconds(self) -> float | None:
        return statistics.median(self.measured.seconds) if self.ok else None


def emptied(client: Any) -> None:
    """Delete every object and abort every multipart upload in the bucket."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])


def object_sha256(client: Any, key: str) -> str | None:
    """The SHA-256 of the object ``key`` read back whole (None if it is not there)."""
    import hashlib

    try:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
    except client.exceptions.NoSuchKey:
        return None
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def output_problem(lane: Lane, setting: Setting, client: Any, payload: Payload) -> str | None:
    if lane.lands == "folder":
        landed = setting.folder / setting.name
        found = sha256_file(landed) if landed.is_file() else None
    else:
        found = object_sha256(client, f"{lane.prefix}/{setting.name}")
    if found is None:
        return "WRONG: nothing landed"
    return None if found == payload.sha256 else "WRONG sha256 of what landed"


def run_lane(
    row: Lanes, setting: Setting, env: dict[str, str], store: tuple[int, Any], payload: Payload
) -> None:
    """One run of ``row``'s command on an emptied folder and bucket; its output checked."""
    pid, client = store
    shutil.rmtree(setting.folder, ignore_errors=True)
    setting.folder.mkdir(parents=True)
    emptied(client)
    before = tree_cpu_seconds(pid)
    once, _, stderr = timed(row.lane.argv(setting), env, setting.folder.parent)
    row.store_cpu.append(tree_cpu_seconds(pid) - before)
    if once.problem is None and once.unsupported:
        once.problem = f"FAILED ({(stderr or ['?'])[-1][:60]})"
    if once.problem is None:
        once.problem = output_problem(row.lane, setting, client, payload)
        once.read_back = read_back_logged(stderr)
    row.measured.add(once)


@contextmanager
def bench_store(root: Path) -> Iterator[tuple[Any, Any]]:
    """A SeaweedFS (tests/seaweedfs.py) with its data under ``root`` and the bucket; its client."""
    from tests.seaweedfs import seaweedfs

    with seaweedfs(root) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        yield server, client


# --- the table ---------------------------------------------------------------------------------

HEADER = ["payload", "lands in", "tool", "seconds", "GB/s", "CPU s (ours)",
          "CPU s (SeaweedFS)", "peak RSS MiB (ours)", "read back bytes", "sha256",
          "speed vs local folder"]  # fmt: skip


def _cells(row: Lanes, scenario: str, payload: Payload, local: float | None) -> list[str]:
    where = "local folder" if row.lane.lands == "folder" else "SeaweedFS (S3)"
    head = [scenario, where, row.lane.label]
    rss = f"{max(row.measured.rss_kib) / 1024:.0f}" if row.measured.rss_kib else ""
    if row.seconds is None:
        return [*head, str(row.measured.problem), "", "", "", rss, "", "no", ""]
    cpu = statistics.median(row.measured.cpu_seconds)
    store = statistics.median(row.store_cpu)
    read_back = ""
    if row.lane.connections is not None:
        read_back = str(max(row.measured.read_back)) if row.measured.read_back else "-"
    vs = ratio_text(local, row.seconds) if row.lane.lands == "object" else ""
    figures = [f"{row.seconds:.2f}", f"{payload.bytes / row.seconds / GB:.3f}", f"{cpu:.2f}",
               f"{store:.2f}", rss, read_back, "ok", vs]  # fmt: skip
    return [*head, *figures]


def _local_seconds(rows: Sequence[Lanes], row: Lanes) -> float | None:
    """The folder row's seconds for the object row ``row``: same connections, else the fastest."""
    folders = [r for r in rows if r.lane.lands == "folder" and r.seconds is not None]
    same = [r.seconds for r in folders if r.lane.connections == row.lane.connections]
    pool = same or [r.seconds for r in folders]
    return min((s for s in pool if s is not None), default=None)


def table_lines(scenario: str, payload: Payload, rows: Sequence[Lanes]) -> list[str]:
    lines = [HEADER, ["---"] * len(HEADER)]
    lines += [_cells(row, scenario, payload, _local_seconds(rows, row)) for row in rows]
    return ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines]


def ratio_lines(scenario: str, rows: Sequence[Lanes]) -> list[str]:
    """Speed vs local (goal >= 0.8x) per connection count, and ours against the pipe and boto3."""
    by_label = {row.lane.label: row for row in rows}

    def seconds(label: str) -> float | None:
        row = by_label.get(label)
        return None if row is None else row.seconds

    ed1, ed8 = ED_LABEL.format(n=1, s=""), ED_LABEL.format(n=8, s="s")
    local = {n: _local_seconds(rows, by_label[label]) for n, label in ((1, ed1), (8, ed8))}
    best_ours = min((s for s in (seconds(ed1), seconds(ed8)) if s is not None), default=None)
    return [
        *_cpu_bound_lines(scenario, rows, local),
        f"{scenario}: speed vs local folder (goal >= 0.80x): 1 connection "
        f"{ratio_text(local[1], seconds(ed1))}, 8 connections {ratio_text(local[8], seconds(ed8))}"
        f"; ours (best of 1 and 8 connections) vs curl | aws s3 cp - "
        f"{ratio_text(seconds(PIPE), best_ours)}, vs boto3 upload_file of the local file "
        f"{ratio_text(seconds(BOTO3), best_ours)} (speed ratios: their seconds over ours)",
    ]


def _cpu_bound_lines(
    scenario: str, rows: Sequence[Lanes], local: dict[int, float | None]
) -> list[str]:
    """What the CPU seconds of ours and SeaweedFS's allow: their sum spread over every core."""
    cores = os.cpu_count() or 1
    out = []
    for row in rows:
        if row.lane.lands != "object" or row.lane.connections is None or row.seconds is None:
            continue
        ours = statistics.median(row.measured.cpu_seconds)
        store = statistics.median(row.store_cpu)
        floor = (ours + store) / cores
        out.append(
            f"{scenario}, {row.lane.label} to SeaweedFS: CPU bound: (ours {ours:.2f} + SeaweedFS "
            f"{store:.2f} CPU s) / {cores} cores = {floor:.2f} s at the very least, so at most "
            f"{ratio_text(local.get(row.lane.connections), floor)} the speed of the local folder "
            f"on this machine; measured {row.seconds:.2f} s"
        )
    return out


# --- the section -------------------------------------------------------------------------------


def object_store_section(options: Any, payload_kinds: Sequence[str]) -> tuple[list[str], int]:
    """Measure every payload kind on every row; the printed lines and how many outputs were wrong.

    ``options``: e2e's (``size``, ``runs``, ``disk_dir``, ``ed_python``, ``aws_cli``).
    """
    from tests.test_s3 import environment

    from ed_extractor.demo.mirror import start_mirror

    aws, aws_note = awscli(options.aws_cli)
    lanes = [lane for lane in LANES if aws is not None or lane.label != PIPE]
    out: list[str] = []
    wrong = 0
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="ed-e2e-s3-", dir=options.disk_dir))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        www = Path(tempfile.mkdtemp(prefix="ed-e2e-s3-www-", dir="/dev/shm"))
        stack.callback(shutil.rmtree, www, ignore_errors=True)
        server, client = stack.enter_context(bench_store(work / "seaweedfs"))
        mirror = stack.enter_context(start_mirror(www, prefer="nginx"))
        env = environment(
            server.endpoint,
            ED_EXTRACTOR_SCRATCH=str(work / "scratch"),
            ED_EXTRACTOR_NATIVE="1",
            ED_EXTRACTOR_LOG_FORMAT="json",
            AWS_ENDPOINT_URL=server.endpoint,  # the pipe's awscli and the boto3 child
            AWS_DEFAULT_REGION="us-east-1",
        )
        out.append(
            f"object store vs local folder: SeaweedFS {server.endpoint} (data in "
            f"{work / 'seaweedfs'}), the folder rows' folder and the object rows' scratch in "
            f"{work}: all on {filesystem_of(work)}; source: nginx on 127.0.0.1 serving tmpfs; "
            f"median of {options.runs} interleaved runs, fresh processes; pipe row: "
            f"{aws_note if aws else aws_note + ' (no pipe row)'}"
        )
        for kind in payload_kinds:
            payload = make_payload(kind, options.size, www, "store")
            served = www / payload.name
            setting = Setting(options.ed_python, f"{mirror.base_url}/{payload.name}", served,
                              work / "dest", aws)  # fmt: skip
            scenario = f"{kind} {human(options.size)}"
            print(f"measuring {scenario}, object store vs folder ...", file=sys.stderr, flush=True)
            rows = [Lanes(lane) for lane in lanes]
            for _ in range(options.runs):
                for row in rows:
                    if row.measured.problem is None:
                        run_lane(row, setting, env, (server.process.pid, client), payload)
            served.unlink()
            out += ["", *table_lines(scenario, payload, rows), "", *ratio_lines(scenario, rows)]
            wrong += sum(1 for row in rows if row.measured.problem)
    return out, wrong


if __name__ == "__main__" and sys.argv[1:2] == ["boto3-upload"]:
    sys.exit(boto3_upload(*sys.argv[2:5]))
