#!/usr/bin/env bash
# CI's container stage (called from .ci/run): the deployment files checked offline, then for real.
#
#   1. hadolint on the Containerfile; deploy/k8s validated offline (scripts/validate-k8s.py).
#   2. The image built with podman (scripts/build-image.sh: local Debian bases when no registry).
#   3. The job run in the container (read-only root, no capabilities, user 10001) against a local
#      demo mirror (20 MB), twice: everything downloaded, then everything unchanged; the files,
#      the manifest and the metrics file checked on the host.
#   4. The CronJob's pod template (jobTemplate.spec.template, as rendered from deploy/k8s) run with
#      `podman kube play`: same securityContext, a host folder for the PVC, the ConfigMap pointing
#      at the mirror, the Pushgateway at a recording server; the files, manifest and push checked.
#   5. The Indexed CronJob (deploy/k8s/cronjob-sharded.yaml) as the Job controller would run it:
#      `podman kube play` runs no Job, so scripts/indexed-job.py turns its pod template into one
#      `podman run` per completion index (JOB_COMPLETION_INDEX=0..2, same securityContext, the
#      Secret's keys from a local SeaweedFS S3 server's credentials, each emptyDir a tmpfs); the
#      three shards land the mirror in one bucket prefix, twice: every source fetched by exactly one
#      container, each object's bytes, its sha256 metadata and the shared manifest checked; then
#      every source unchanged.
# Where podman cannot run (not installed and not installable, or unable to run a container), the
# podman part is skipped with the reason printed and the script exits 0; anything else that goes
# wrong exits 1. Environment: CI_CONTAINERS_SCALE_MB (default 20), CI_CONTAINERS_KEEP=1 keeps the
# work folder, IMAGE (default localhost/ed-extractor:dev).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=$root/.venv/bin/python
image=${IMAGE:-localhost/ed-extractor:dev}
scale_mb=${CI_CONTAINERS_SCALE_MB:-20}
started=$SECONDS

say() { echo "ci-containers: $*" >&2; }
stage() { say "== $* ($((SECONDS - started)) s)"; }
fail() {
  say "FAILED: $*"
  exit 1
}
skip() {
  say "SKIPPED the podman stage: $*"
  say "(the offline checks passed; the image, the container run, podman kube play and the Indexed"
  say "Job in podman did not run)"
  exit 0
}

[ -x "$py" ] || make build

stage "offline: hadolint Containerfile, deploy/k8s"
"$root/.venv/bin/hadolint" Containerfile || fail "hadolint found problems in the Containerfile"
"$py" scripts/validate-k8s.py deploy/k8s || fail "deploy/k8s is not valid"

stage "podman"
if ! setup_log=$(scripts/setup-podman.sh 2>&1); then
  skip "podman cannot be set up on this machine: $(echo "$setup_log" | tail -n1)"
fi
echo "$setup_log" >&2

# The work folder: tmpfs when there is one (the temp folder is on a slow disk on the CI machines).
parent=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && parent=/dev/shm
work=$(mktemp -d "$parent/ci-containers.XXXXXX")
pids=()
containers=() # started with podman run, removed at exit
cleanup() {
  podman pod rm --force --ignore ed-extractor-e2e >/dev/null 2>&1 || true
  for name in "${containers[@]}"; do podman rm --force --ignore "$name" >/dev/null 2>&1 || true; done
  podman volume rm --force ed-extractor-sources >/dev/null 2>&1 || true # kube play's ConfigMap volume
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${CI_CONTAINERS_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Can podman run a container at all? A registry-free probe: /usr/bin/true and its libraries as
# the root filesystem. Only this, and podman's set-up above, may skip the stage.
probe=$work/probe-rootfs
mkdir -p "$probe"
for file in /usr/bin/true $(ldd /usr/bin/true | grep -o '/[^ ]*'); do
  cp --parents --dereference "$file" "$probe"
done
if ! probe_out=$(podman run --rm --network=host --rootfs "$probe" /usr/bin/true 2>&1); then
  skip "podman cannot run a container here: $(echo "$probe_out" | tail -n1)"
fi
say "podman runs containers"

stage "image: make image"
# The local bases (when needed) are unpacked on tmpfs when there is one: about 30% faster.
BASE_BUILD_TMPDIR=$parent scripts/build-image.sh || fail "the image build failed"
size=$(podman image inspect --format '{{.Size}}' "$image")

stage "demo mirror: ${scale_mb} MB"
"$py" -m ed_extractor.demo generate --root "$work/mirror" --scale-mb "$scale_mb" 2>/dev/null
"$py" -m ed_extractor.demo serve --root "$work/mirror" >"$work/mirror.url" 2>"$work/mirror.log" &
pids+=($!)
# A stand-in Pushgateway: answers 200 and keeps each request's method, path and body.
"$py" - "$work/pushes" >"$work/pushgateway.url" 2>"$work/pushgateway.log" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir()


class Recorder(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        count = len(list(out.iterdir()))
        (out / f"{count:03d}.txt").write_bytes(f"{self.command} {self.path}\n".encode() + body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT


server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
PY
pids+=($!)
for _ in $(seq 100); do [ -s "$work/mirror.url" ] && [ -s "$work/pushgateway.url" ] && break; sleep 0.1; done
base_url=$(head -n1 "$work/mirror.url")
pushgateway=$(head -n1 "$work/pushgateway.url")
[ -n "$base_url" ] && [ -n "$pushgateway" ] || fail "the local mirror or the recorder did not start"
names=()
for file in "$work"/mirror/*.json.gz; do names+=("$(basename "$file")"); done
for name in "${names[@]}"; do
  printf '[[source]]\nurl = "%s/%s"\nexpect = "gzip"\n\n' "$base_url" "$name"
done >"$work/sources.toml"
say "mirror $base_url: ${#names[@]} dumps; Pushgateway stand-in $pushgateway"

# check_results JSONL STATUS: one line per dump, every one with STATUS.
check_results() {
  "$py" - "$1" "$2" "${#names[@]}" <<'PY' || fail "unexpected results in $1"
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
statuses = {line["name"]: line["status"] for line in lines}
assert len(lines) == int(sys.argv[3]), f"{len(lines)} result lines, expected {sys.argv[3]}"
assert set(statuses.values()) == {sys.argv[2]}, statuses
PY
}

# check_data DIR: the manifest lists every dump and each file on the host hashes to its record.
check_data() {
  "$root/.venv/bin/ed-extractor" manifest --dest "$1" --json >"$1.manifest.jsonl" ||
    fail "no readable manifest in $1"
  "$py" - "$1" "$work/mirror" <<'PY' || fail "the files in $1 do not match the manifest or the mirror"
import hashlib, json, sys
from pathlib import Path
data, mirror = Path(sys.argv[1]), Path(sys.argv[2])
records = [json.loads(line) for line in open(f"{data}.manifest.jsonl")]
expected = sorted(p.name for p in mirror.glob("*.json.gz"))
assert sorted(r["name"] for r in records) == expected, [r["name"] for r in records]
for record in records:
    local = data.resolve() / record["name"]
    assert record["path"] == str(local), record["path"]  # written as /data/..., read on the host
    digest = hashlib.file_digest(local.open("rb"), "sha256").hexdigest()
    assert digest == record["sha256"], f"{local}: sha256 differs from the manifest"
    assert local.read_bytes() == (mirror / record["name"]).read_bytes(), f"{local} != mirror"
leftovers = sorted(p.name for p in data.iterdir() if p.name.endswith(".part"))
assert not leftovers, leftovers
print(f"{len(records)} files match the manifest and the mirror")
PY
}

# check_hardening CONTAINER: the securityContext was applied (read-only root, no capabilities,
# no privilege escalation, user 10001).
check_hardening() {
  podman inspect "$1" --format \
    'readonly={{.HostConfig.ReadonlyRootfs}} user={{.Config.User}} caps={{.EffectiveCaps}} opts={{.HostConfig.SecurityOpt}} memory={{.HostConfig.Memory}}' \
    >"$work/inspect-$1.txt"
  say "container $1: $(cat "$work/inspect-$1.txt")"
  local readonly user caps
  read -r readonly user caps _ <"$work/inspect-$1.txt"
  readonly=${readonly#readonly=} user=${user#user=}
  [ "$caps" = "caps=[]" ] || fail "$1: capabilities drop ALL was not applied: $caps"
  [ "$readonly" = true ] || fail "$1: the root filesystem is not read-only"
  [ "${user%%:*}" = 10001 ] || fail "$1 ran as $user, not 10001"
  grep -q 'no-new-privileges' "$work/inspect-$1.txt" ||
    fail "$1: allowPrivilegeEscalation: false was not applied"
}

# The image's user must own the host folders it writes (rootless: inside podman's user namespace).
own_by_job_user() {
  if [ "$(id -u)" -eq 0 ]; then chown 10001:10001 "$@"; else podman unshare chown 10001:10001 "$@"; fi
}

stage "podman run: the job in the container, twice"
data=$work/podman-data
mkdir -p "$data" "$work/metrics"
own_by_job_user "$data" "$work/metrics"
run_job() {
  podman run --rm --network=host --read-only --cap-drop=ALL --security-opt=no-new-privileges \
    -v "$data:/data" -v "$work/sources.toml:/etc/ed-extractor/sources.toml:ro" \
    -v "$work/metrics:/metrics" \
    -e ED_EXTRACTOR_CONFIG=/etc/ed-extractor/sources.toml \
    -e ED_EXTRACTOR_METRICS_FILE=/metrics/ed_extractor.prom \
    "$image" run --json
}
run_job >"$work/run1.jsonl" 2>"$work/run1.log" || {
  code=$?
  tail -n 20 "$work/run1.log" >&2
  fail "the containerised job exited $code on its first run"
}
check_results "$work/run1.jsonl" downloaded
run_job >"$work/run2.jsonl" 2>"$work/run2.log" || fail "the second run failed"
check_results "$work/run2.jsonl" unchanged
check_data "$data"
grep -q '^ed_extractor_source_status{source="galaxy_1day.json.gz",status="unchanged"} 1.0$' \
  "$work/metrics/ed_extractor.prom" || fail "the metrics file does not show the second run"
"$py" -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$work/run1.log" ||
  fail "the container's logs (stderr) are not JSON lines"

stage "podman kube play: the CronJob's pod template"
kube_data=$work/kube-data
mkdir -p "$kube_data"
own_by_job_user "$kube_data"
"$py" - "$work" "$kube_data" "$pushgateway" "$image" <<'PY' || fail "cannot derive the pod from the CronJob"
import copy, sys
from pathlib import Path
import yaml
sys.path.insert(0, "scripts")
from k8s_render import render

work, data, pushgateway, image = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
resources = render(Path("deploy/k8s"))
[job] = [r for r in resources if r["kind"] == "CronJob" and r["metadata"]["name"] == "ed-extractor"]
[config] = [r for r in resources if r["kind"] == "ConfigMap"]
spec = copy.deepcopy(job["spec"]["jobTemplate"]["spec"]["template"]["spec"])
spec["hostNetwork"] = True  # the mirror listens on the host's 127.0.0.1
for volume in spec["volumes"]:
    if "persistentVolumeClaim" in volume:  # the PVC becomes a host folder
        del volume["persistentVolumeClaim"]
        volume["hostPath"] = {"path": data, "type": "Directory"}
[container] = spec["containers"]
container["image"] = image
for variable in container["env"]:
    if variable["name"] == "ED_EXTRACTOR_PUSHGATEWAY_URL":
        variable["value"] = pushgateway
pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "ed-extractor-e2e", "labels": job["spec"]["jobTemplate"]["metadata"]["labels"]},
    "spec": spec,
}
config = copy.deepcopy(config)  # same name and key, sources on the local mirror
config["data"] = {"sources.toml": (work / "sources.toml").read_text()}
(work / "pod.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))
(work / "configmap.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
PY
podman volume rm --force ed-extractor-sources >/dev/null 2>&1 || true # no stale ConfigMap copy
podman kube play --configmap "$work/configmap.yaml" "$work/pod.yaml" >"$work/play.log" 2>&1 || {
  cat "$work/play.log" >&2
  fail "podman kube play refused the pod"
}
container=ed-extractor-e2e-ed-extractor
code=$(timeout 600 podman wait "$container") || fail "the pod did not finish within 10 minutes"
podman logs "$container" >"$work/kube.jsonl" 2>"$work/kube.log" || true
[ "$code" = 0 ] || {
  tail -n 20 "$work/kube.log" >&2
  fail "the pod's container exited $code"
}
check_results "$work/kube.jsonl" downloaded # stdout: only the result lines
"$py" -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$work/kube.log" ||
  fail "the pod's logs (stderr) are not JSON lines"
check_data "$kube_data"
check_hardening "$container"
push=$(ls "$work/pushes" | head -n1)
[ -n "$push" ] || fail "the pod pushed no metrics"
head -n1 "$work/pushes/$push" | grep -q '^PUT /metrics/job/ed_extractor$' ||
  fail "unexpected push: $(head -n1 "$work/pushes/$push")"
grep -q '^ed_extractor_source_bytes{source="galaxy_1day.json.gz"}' "$work/pushes/$push" ||
  fail "the push lacks the per-source metrics"

stage "Indexed Job: the sharded CronJob's pod template, one podman run per index"
indexed_started=$SECONDS
bucket=ed-extractor-ci
dest=s3://$bucket/spansh
"$py" scripts/s3-serve.py --root "$work/s3" --bucket "$bucket" >"$work/s3.url" 2>"$work/s3.log" &
pids+=($!)
for _ in $(seq 1200); do # weed's own start-up timeout is 90 s
  [ -s "$work/s3.url" ] || ! kill -0 "${pids[-1]}" 2>/dev/null && break
  sleep 0.1
done
endpoint=$(head -n1 "$work/s3.url")
[ -n "$endpoint" ] || {
  tail -n 20 "$work/s3.log" >&2
  fail "the SeaweedFS S3 server did not start"
}
job=$work/indexed-job
"$py" scripts/indexed-job.py render --out "$job" --image "$image" --dest "$dest" \
  --endpoint "$endpoint" --sources "$work/sources.toml" >&2 ||
  fail "cannot derive the containers from the Indexed CronJob"
say "SeaweedFS S3 $endpoint, destination $dest"

# run_indexed_job RUN STATUS: every index's container at once, as parallelism = completions; each
# must exit 0, then the results, the objects and the manifest are checked on the host.
run_indexed_job() {
  local out=$job/$1 started=() index args_file args code
  mkdir -p "$out"
  for args_file in "$job"/*.args; do
    index=$(basename "$args_file" .args)
    mapfile -t args <"$args_file"
    containers+=("${args[0]#--name=}")
    podman rm --force --ignore "${containers[-1]}" >/dev/null # left by an interrupted run
    podman run "${args[@]}" >"$out/$index.jsonl" 2>"$out/$index.log" &
    started+=("$index:$!")
  done
  for entry in "${started[@]}"; do
    code=0
    wait "${entry#*:}" || code=$?
    [ "$code" = 0 ] || {
      tail -n 20 "$out/${entry%%:*}.log" >&2
      fail "the container of index ${entry%%:*} exited $code on $1"
    }
  done
  "$py" scripts/indexed-job.py check --results "$out" --mirror "$work/mirror" --status "$2" \
    --dest "$dest" --endpoint "$endpoint" --sources "$work/sources.toml" >&2 ||
    fail "the Indexed Job's $1 did not do what it should"
  for name in "${containers[@]}"; do
    [ "$1" != run1 ] || check_hardening "$name"
    podman rm "$name" >/dev/null || fail "cannot remove the container $name"
  done
  containers=()
}
run_indexed_job run1 downloaded
run_indexed_job run2 unchanged
"$py" -c 'import json, sys; [json.loads(l) for f in sys.argv[1:] for l in open(f)]' "$job"/run1/*.log ||
  fail "the shards' logs (stderr) are not JSON lines"
say "Indexed Job: $(ls "$job"/*.args | wc -l) containers, two runs, in $((SECONDS - indexed_started)) s"

stage "done"
# Each changed build leaves its predecessor's layers untagged (about 1.3 GB with the builder's):
# drop those older than a day, keeping the recent ones as the build cache.
podman image prune --force --filter until=24h >/dev/null || say "could not prune old untagged images"
say "passed in $((SECONDS - started)) s; image $image: $((size / 1000000)) MB"
