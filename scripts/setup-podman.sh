#!/usr/bin/env bash
# Set podman up on a Debian machine for `make image` and scripts/ci-containers.sh (idempotent, root).
#
# Installs podman, runc, fuse-overlayfs, slirp4netns, uidmap, mmdebstrap and catatonit (the pause
# process `podman kube play` builds its infra image from) when missing, and writes a
# containers.conf drop-in with what these machines need (facts measured on the CI machines):
#   runtime = "runc"               crun refuses the hybrid cgroup layout ("cgroups in hybrid mode not supported")
#   cgroup_manager = "cgroupfs"    no systemd as PID 1
#   events_logger = "file"         no journald
#   default_ulimits                the defaults fail: "setrlimit RLIMIT_NOFILE: Operation not permitted"
# Exit status: 0 when podman is ready, 1 when it cannot be set up (the reason on stderr).
set -euo pipefail

conf_dir=/etc/containers/containers.conf.d
conf=$conf_dir/50-ed-extractor.conf
wanted=$(
  cat <<'CONF'
# Written by ed-extractor's scripts/setup-podman.sh; see the comments there.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)

say() { echo "setup-podman: $*" >&2; }

need=()
for pair in podman:podman runc:runc fuse-overlayfs:fuse-overlayfs slirp4netns:slirp4netns \
  newuidmap:uidmap mmdebstrap:mmdebstrap catatonit:catatonit; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${need[*]}; install them as root (Debian: apt-get install ${need[*]})"
    exit 1
  fi
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$(id -u)" -eq 0 ]; then
  if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$wanted" ]; then
    mkdir -p "$conf_dir"
    printf '%s\n' "$wanted" >"$conf.tmp"
    mv "$conf.tmp" "$conf"
    say "wrote $conf"
  fi
else
  say "not root: $conf not written; make sure your containers.conf has the settings in $0"
fi

runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null || true)
if [ -z "$runtime" ]; then
  say "podman is installed but 'podman info' fails:"
  podman info >/dev/null
  exit 1
fi
say "ready: $(podman --version), runtime $runtime"
