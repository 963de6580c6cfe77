#!/usr/bin/env bash
# The main job on a generated local mirror: generate Spansh-style dumps, serve them on 127.0.0.1,
# run ed-extractor twice (downloaded, or unchanged when an earlier demo stored it; then unchanged),
# verify with sha256sum, print the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${DEMO_ROOT:-demo-data}
scale_mb=${DEMO_SCALE_MB:-200}
bin=.venv/bin

$bin/python -m ed_extractor.demo generate --root "$root/mirror" --scale-mb "$scale_mb"

url_file=$(mktemp)
$bin/python -m ed_extractor.demo serve --root "$root/mirror" >"$url_file" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$url_file"' EXIT
for _ in $(seq 100); do [ -s "$url_file" ] && break; sleep 0.1; done
base_url=$(head -n1 "$url_file")
[ -n "$base_url" ] || { echo "demo: the local mirror did not start" >&2; exit 1; }

# The demo's sources: every generated dump on the local mirror (the real ones live on Spansh).
{
  echo "[defaults]"
  echo 'expect = "gzip"'
  for dump in "$root"/mirror/*.json.gz; do
    printf '\n[[source]]\nurl = "%s/%s"\n' "$base_url" "$(basename "$dump")"
  done
} >"$root/sources.toml"

export ED_EXTRACTOR_DEST="$root/data"
if [ -e "$ED_EXTRACTOR_DEST/manifest.sqlite3" ]; then
  echo "== first run: $ED_EXTRACTOR_DEST has an earlier demo's files: only new or changed ones are downloaded"
else
  echo "== first run: everything is downloaded"
fi
$bin/ed-extractor run --config "$root/sources.toml"
echo "== second run: nothing changed on the mirror, no body is transferred"
$bin/ed-extractor run --config "$root/sources.toml" --json
echo "== the files on disk match the manifest"
$bin/ed-extractor manifest --json \
  | $bin/python -c 'import json, sys; [print(r["sha256"] + "  " + r["path"]) for r in map(json.loads, sys.stdin)]' \
  | sha256sum --check
echo "== the manifest"
$bin/ed-extractor manifest
