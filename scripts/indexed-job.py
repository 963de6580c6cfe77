"""The Indexed CronJob of deploy/k8s run as one podman container per index, and its run checked.

``podman kube play`` runs Pods, Deployments and DaemonSets but no Job, let alone an Indexed one,
so CI's container stage (scripts/ci-containers.sh) does what the Job controller would do:

``render`` turns the pod template of the CronJob ``ed-extractor-sharded`` (rendered from
deploy/k8s) into the ``podman run`` arguments of each completion index I, one argument a line in
``OUT/I.args``: the template's image pull policy, args and env plus JOB_COMPLETION_INDEX=I (as
Kubernetes sets it); the Secret's keys from the local server's credentials; ED_EXTRACTOR_DEST and
the S3 endpoint pointed at the local server; the securityContext (user, read-only root, no
capabilities, no privilege escalation); the memory and CPU limits; each emptyDir as a tmpfs of its
sizeLimit; the ConfigMap as a read-only folder holding the given sources file. Host networking
stands in for the cluster's (the mirror and the S3 server listen on the host's 127.0.0.1). Any key
of the template this does not translate is an error, never silently dropped.

``check`` checks one run of those containers on the host: each printed its shard's sources (the
"shard" of every result line is I/N, each source fetched by exactly one container, each with the
expected status); every source is an object under the prefix whose bytes hash to its ``sha256``
metadata and to the mirror's file; no multipart upload is left; the manifest under the prefix
(read with ``ed-extractor manifest --json``) has one record per source.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT / "scripts"), str(_ROOT)]

from k8s_render import Resource, render  # noqa: E402  (scripts/ is on the path now)
from tests.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY  # noqa: E402

from ed_extractor.pipeline.shards import shard_index  # noqa: E402

JOB_NAME = "ed-extractor-sharded"
SECRET_NAME = "ed-extractor-s3"
SECRET_DATA = {"access-key-id": ACCESS_KEY, "secret-access-key": SECRET_KEY}  # the local server's
SOURCES_KEY = "sources.toml"  # the ConfigMap's key replaced by the local sources file
_POD_KEYS = {"restartPolicy", "automountServiceAccountToken", "enableServiceLinks",
             "securityContext", "containers", "volumes"}  # fmt: skip
_CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "args", "env", "resources",
                   "securityContext", "volumeMounts"}  # fmt: skip
_PULL = {"IfNotPresent": "missing", "Never": "never", "Always": "always"}
_QUANTITY = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti)?")
_BINARY = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


class JobError(Exception):
    """The Job or its pod template has something this translation does not do."""


@dataclass(frozen=True)
class Target:
    """Where the containers run: the image, the local S3 server and prefix, the sources file."""

    image: str
    dest: str
    endpoint: str
    sources: Path


def sharded_job(directory: Path) -> tuple[Resource, list[Resource]]:
    """The Indexed CronJob's Job spec and every resource rendered from ``directory``."""
    resources = render(directory)
    jobs = [r for r in resources if r["kind"] == "CronJob" and r["metadata"]["name"] == JOB_NAME]
    if len(jobs) != 1:
        raise JobError(f"{directory}: no single CronJob {JOB_NAME}")
    return jobs[0]["spec"]["jobTemplate"]["spec"], resources


def completions(job_spec: Resource) -> int:
    """How many indexes the Job runs, all at once (completions = parallelism)."""
    if job_spec.get("completionMode") != "Indexed":
        raise JobError(f"{JOB_NAME}: completionMode is not Indexed")
    count = job_spec.get("completions")
    if not isinstance(count, int) or count < 1 or job_spec.get("parallelism") != count:
        raise JobError(f"{JOB_NAME}: completions and parallelism must be one number >= 1")
    return count


def _quantity_kib(quantity: str, where: str) -> str:
    """A binary Kubernetes quantity (``8Gi``) in podman's form, whole KiB (``8388608k``)."""
    match = _QUANTITY.fullmatch(str(quantity))
    if match is None or (int(match[1]) * _BINARY[match[2]]) % 1024:
        raise JobError(f"{where}: {quantity!r} is not a whole number of KiB (use Ki, Mi, Gi)")
    return f"{int(match[1]) * _BINARY[match[2]] // 1024}k"


def _cpus(quantity: str) -> str:
    text = str(quantity)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


def _environment(container: Resource, index: int, count: int, target: Target) -> list[str]:
    """``--env`` arguments: the template's, the Secret's values, the overrides, the index."""
    overrides = {"ED_EXTRACTOR_DEST": target.dest, "ED_EXTRACTOR_S3_ENDPOINT_URL": target.endpoint}
    values: dict[str, str] = {}
    for variable in container.get("env", []):
        name = variable["name"]
        secret = variable.get("valueFrom", {}).get("secretKeyRef")
        if name in overrides:
            values[name] = overrides[name]
        elif "value" in variable:
            values[name] = str(variable["value"])
        elif secret and secret["name"] == SECRET_NAME and secret["key"] in SECRET_DATA:
            values[name] = SECRET_DATA[secret["key"]]
        else:
            raise JobError(f"env {name}: only values and the Secret {SECRET_NAME}'s keys")
    if set(overrides) - set(values):
        raise JobError(f"env: the template sets none of {sorted(set(overrides) - set(values))}")
    if values.get("ED_EXTRACTOR_SHARDS") != str(count):
        raise JobError(f"env ED_EXTRACTOR_SHARDS is not {count}, the Job's completions")
    values["JOB_COMPLETION_INDEX"] = str(index)  # what the Job controller adds to pod I
    return [f"--env={name}={value}" for name, value in values.items()]


def _security(pod: Resource, container: Resource) -> list[str]:
    """User, read-only root, dropped capabilities, no privilege escalation."""
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user, group = context.get("runAsUser"), context.get("runAsGroup", context.get("runAsUser"))
    if not isinstance(user, int) or (context.get("runAsNonRoot") and user == 0):
        raise JobError("securityContext: runAsUser must be set (and not 0 with runAsNonRoot)")
    if context.get("seccompProfile", {}).get("type", "RuntimeDefault") != "RuntimeDefault":
        raise JobError("securityContext: only the RuntimeDefault seccomp profile (podman's own)")
    capabilities = context.get("capabilities", {})
    if capabilities.get("add") or capabilities.get("drop") not in (None, ["ALL"]):
        raise JobError(f"securityContext.capabilities: only drop [ALL], not {capabilities}")
    arguments = [f"--user={user}:{group}"]
    if context.get("fsGroup") is not None:
        arguments.append(f"--group-add={context['fsGroup']}")
    if context.get("readOnlyRootFilesystem"):
        arguments.append("--read-only")
    if capabilities.get("drop") == ["ALL"]:
        arguments.append("--cap-drop=ALL")
    if context.get("allowPrivilegeEscalation") is False:
        arguments.append("--security-opt=no-new-privileges")
    return arguments


def _limits(container: Resource) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    arguments = []
    if "memory" in limits:
        arguments.append(f"--memory={_quantity_kib(limits['memory'], 'limits.memory')}")
    if "cpu" in limits:
        arguments.append(f"--cpus={_cpus(limits['cpu'])}")
    return arguments  # ephemeral-storage: the tmpfs sizes below bound what the pod writes


def _mounts(pod: Resource, container: Resource, out: Path, resources: list[Resource]) -> list[str]:
    """``--tmpfs`` for each emptyDir, ``--volume`` for the ConfigMap.

    An emptyDir is a tmpfs of its sizeLimit, mode 0777 as the kubelet makes it; the ConfigMap a
    read-only folder of its keys, the sources key holding the local sources file.
    """
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    arguments = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            limit = f",size={_quantity_kib(size, mount['name'])}" if size else ""
            arguments.append(f"--tmpfs={path}:rw,mode=0777{limit}")
        elif "configMap" in volume:
            folder = _config_folder(volume["configMap"]["name"], out, resources)
            arguments.append(f"--volume={folder}:{path}:ro")
        else:
            raise JobError(f"volume {mount['name']}: only emptyDir and configMap")
    return arguments


def _config_folder(name: str, out: Path, resources: list[Resource]) -> Path:
    maps = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name]
    if len(maps) != 1 or SOURCES_KEY not in maps[0].get("data", {}):
        raise JobError(f"ConfigMap {name}: not rendered once with a key {SOURCES_KEY}")
    folder = out / f"configmap-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in maps[0]["data"].items():
        (folder / key).write_text(value)
    return folder


def podman_arguments(directory: Path, target: Target, out: Path) -> list[list[str]]:
    """The ``podman run`` arguments of each index of the Job, in index order."""
    job_spec, resources = sharded_job(directory)
    count = completions(job_spec)
    pod = job_spec["template"]["spec"]
    if set(pod) - _POD_KEYS or pod.get("restartPolicy") != "Never":
        raise JobError(f"pod spec: only {sorted(_POD_KEYS)}, restartPolicy Never")
    if pod.get("automountServiceAccountToken") or pod.get("enableServiceLinks"):
        raise JobError("pod spec: no service account token, no service links (none here)")
    [container] = pod["containers"]
    if set(container) - _CONTAINER_KEYS or "command" in container:
        raise JobError(f"container: only {sorted(_CONTAINER_KEYS)}")
    resources = copy.deepcopy(resources)
    for resource in resources:  # the ConfigMap's sources: the local mirror's
        if resource["kind"] == "ConfigMap" and SOURCES_KEY in resource.get("data", {}):
            resource["data"][SOURCES_KEY] = target.sources.read_text()
    shared = [
        "--network=host",  # the mirror and the S3 server listen on the host's 127.0.0.1
        f"--pull={_PULL[container.get('imagePullPolicy', 'IfNotPresent')]}",
        *_security(pod, container),
        *_limits(container),
        *_mounts(pod, container, out, resources),
    ]
    return [
        [
            f"--name={JOB_NAME}-{index}",
            *shared,
            *_environment(container, index, count, target),
            target.image,
            *container.get("args", []),
        ]
        for index in range(count)
    ]


def _render(args: argparse.Namespace) -> int:
    target = Target(args.image, args.dest, args.endpoint, args.sources)
    args.out.mkdir(parents=True, exist_ok=True)
    every = podman_arguments(args.k8s, target, args.out)
    for index, arguments in enumerate(every):
        (args.out / f"{index}.args").write_text("".join(f"{a}\n" for a in arguments))
    print(f"{len(every)} indexes of {JOB_NAME}: {args.out}/0..{len(every) - 1}.args")
    return 0


# ---- check ------------------------------------------------------------------------------------


class CheckError(Exception):
    """The containers' run did not do what the Indexed Job should."""


def source_names(sources: Path) -> list[str]:
    """The name of each source of a sources file: the last segment of its URL's path."""
    specs = tomllib.loads(sources.read_text())["source"]
    return [spec.get("name") or PurePosixPath(urlsplit(spec["url"]).path).name for spec in specs]


def check_container(path: Path, index: int, count: int, names: list[str], status: str) -> list[str]:
    """The sources container ``index`` printed: all its shard's, in shard I/N, with ``status``."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    wrong = [(line["name"], line["shard"], line["status"]) for line in lines
             if (line["shard"], line["status"]) != (f"{index}/{count}", status)]  # fmt: skip
    if wrong:
        raise CheckError(f"{path}: expected shard {index}/{count}, {status}: {wrong}")
    fetched = sorted(line["name"] for line in lines)
    expected = sorted(name for name in names if shard_index(name, count) == index)
    if fetched != expected or not expected:
        raise CheckError(f"{path}: {fetched}; shard {index}/{count} is {expected}")
    return fetched


def check_results(results: list[Path], names: list[str], status: str) -> dict[int, list[str]]:
    """Each container printed its own shard's sources, every source exactly once."""
    fetched = {
        index: check_container(path, index, len(results), names, status)
        for index, path in enumerate(results)
    }
    times = Counter(name for group in fetched.values() for name in group)
    if sorted(times.elements()) != sorted(names):
        raise CheckError(f"not each source exactly once: {dict(times)} for {sorted(names)}")
    return fetched


def _s3_environment(endpoint: str) -> dict[str, str]:
    """The host's environment for the local server: its credentials, nothing from the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ED_EXTRACTOR_"))}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        AWS_EC2_METADATA_DISABLED="true",
        ED_EXTRACTOR_S3_ENDPOINT_URL=endpoint,
    )
    return env


def _objects(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            yield entry["Key"]


def check_objects(endpoint: str, dest: str, names: list[str], mirror: Path) -> dict[str, str]:
    """The sha256 of each source's object, after checking the prefix.

    Every source is an object whose bytes hash to its ``sha256`` metadata and to the mirror's
    file; nothing else is under the prefix but the manifest; no multipart upload is left.
    """
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    bucket, _, prefix = dest.removeprefix("s3://").partition("/")
    keys = sorted(_objects(client, bucket, f"{prefix}/"))
    data = [key for key in keys if not key.startswith(f"{prefix}/_manifest/")]
    if data != sorted(f"{prefix}/{name}" for name in names):
        raise CheckError(f"s3://{bucket}/{prefix}/ holds {data}, not the {len(names)} sources")
    digests = {}
    for name in names:
        answer = client.get_object(Bucket=bucket, Key=f"{prefix}/{name}")
        digest = hashlib.sha256(answer["Body"].read()).hexdigest()
        mirrored = hashlib.sha256((mirror / name).read_bytes()).hexdigest()
        if not digest == answer["Metadata"].get("sha256") == mirrored:
            metadata = answer["Metadata"]
            raise CheckError(f"{name}: bytes {digest}, metadata {metadata}, mirror {mirrored}")
        digests[name] = digest
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if uploads:
        raise CheckError(f"multipart uploads left: {[u['Key'] for u in uploads]}")
    return digests


def check_manifest(endpoint: str, dest: str, digests: dict[str, str]) -> int:
    """``ed-extractor manifest --dest s3://... --json`` lists each source once, as stored."""
    listing = subprocess.run(
        [sys.executable, "-m", "ed_extractor", "manifest", "--dest", dest, "--json"],
        capture_output=True, text=True, timeout=120, env=_s3_environment(endpoint), check=False,
    )  # fmt: skip
    if listing.returncode != 0:
        raise CheckError(f"manifest --dest {dest} exited {listing.returncode}: {listing.stderr}")
    records = [json.loads(line) for line in listing.stdout.splitlines()]
    found = {record["name"]: (record["sha256"], record["path"]) for record in records}
    wanted = {name: (digest, f"{dest}/{name}") for name, digest in digests.items()}
    if len(records) != len(digests) or found != wanted:
        raise CheckError(f"manifest records {found}, expected {wanted}")
    return len(records)


def _check(args: argparse.Namespace) -> int:
    names = source_names(args.sources)
    results = sorted(args.results.glob("*.jsonl"), key=lambda path: int(path.stem))
    if [int(path.stem) for path in results] != list(range(len(results))) or len(results) < 2:
        raise CheckError(f"{args.results}: expected 0.jsonl .. N-1.jsonl (N >= 2)")
    fetched = check_results(results, names, args.status)
    digests = check_objects(args.endpoint, args.dest, names, args.mirror)
    records = check_manifest(args.endpoint, args.dest, digests)
    for index, group in fetched.items():
        print(f"container {index}: {args.status} {', '.join(group)}")
    print(f"{len(digests)} objects hash to their sha256 metadata and the mirror; {records} records")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rendering = commands.add_parser("render", help="write OUT/I.args for each index")
    rendering.add_argument("--k8s", type=Path, default=_ROOT / "deploy/k8s")
    rendering.add_argument("--out", type=Path, required=True)
    rendering.add_argument("--image", required=True)
    checking = commands.add_parser("check", help="check a run of the containers")
    checking.add_argument("--results", type=Path, required=True, help="I.jsonl of each index")
    checking.add_argument("--mirror", type=Path, required=True, help="the mirror's folder")
    checking.add_argument("--status", required=True, help="every result line's status")
    for command in (rendering, checking):
        command.add_argument("--dest", required=True, help="s3://BUCKET/PREFIX")
        command.add_argument("--endpoint", required=True, help="the S3 server's URL")
        command.add_argument("--sources", type=Path, required=True, help="the sources file")
    args = parser.parse_args()
    try:
        return _render(args) if args.command == "render" else _check(args)
    except (JobError, CheckError) as error:
        print(f"indexed-job: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
