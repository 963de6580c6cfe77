#!/usr/bin/env bash
# Install the system packages the tests, the demo and the benchmarks use (Debian; skipped when present).
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/time ] || need+=(time)  # GNU time: the peak RSS in make bench-e2e
[ -e /usr/share/misc/magic.mgc ] || ldconfig -p 2>/dev/null | grep -q libmagic.so.1 || need+=(libmagic1)
command -v cargo >/dev/null 2>&1 || { echo "setup-system: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}); tests that need them will skip" >&2
  exit 0
fi
echo "setup-system: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
