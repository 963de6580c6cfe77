#!/usr/bin/env bash
# Build the Containerfile's two base images locally from Debian packages, for machines that reach
# deb.debian.org but no container registry:
#   localhost/ed-extractor-base:runtime   Debian bookworm minbase + python3 (3.11), python3-venv,
#                                         ca-certificates, libmagic1
#   localhost/ed-extractor-base:builder   the same + rustc-web/cargo-web (Rust >= 1.85, Debian's
#                                         toolchain for browser builds), gcc, libc6-dev, and
#                                         nasm, autotools and make (ISA-L's build)
# Usage: scripts/build-base-image.sh [--force] [runtime|builder ...]   (default: both)
# An image that already exists is kept unless --force (or ED_BASE_REBUILD=1). Takes about a minute
# per image. Needs root (mmdebstrap's root mode) and podman (scripts/setup-podman.sh).
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_SECURITY_MIRROR
# (default http://deb.debian.org/debian-security), BASE_REPO (default localhost/ed-extractor-base),
# BASE_BUILD_TMPDIR (where mmdebstrap unpacks; default $TMPDIR: tmpfs is about 30% faster).
set -euo pipefail

suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
repo=${BASE_REPO:-localhost/ed-extractor-base}
force=${ED_BASE_REBUILD:-0}

runtime_packages=python3,python3-venv,ca-certificates,libmagic1
# rustc-web/cargo-web: bookworm's rustc is 1.63, too old for the crate's rust-version (1.85); the
# -web packages are Debian's newer toolchain for Firefox/Chromium builds (1.85 in bookworm, newer
# through bookworm-security), installed as /usr/bin/rustc and /usr/bin/cargo.
builder_packages=$runtime_packages,rustc-web,cargo-web,gcc,libc6-dev
builder_packages=$builder_packages,nasm,autoconf,automake,libtool,make # ISA-L (isal-sys)

say() { echo "build-base-image: $*" >&2; }

targets=()
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    runtime | builder) targets+=("$arg") ;;
    *)
      say "unknown argument: $arg (usage: $0 [--force] [runtime|builder ...])"
      exit 2
      ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(runtime builder)

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null 2>&1 || {
    say "$tool is missing; run scripts/setup-podman.sh first"
    exit 1
  }
done

build() {
  local name=$1 packages=$2 image="$repo:$1"
  if [ "$force" != 1 ] && podman image exists "$image"; then
    say "$image exists (--force to rebuild)"
    return
  fi
  local started=$SECONDS
  say "building $image from $suite: $packages"
  local log old
  log=$(mktemp)
  old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  # No recommends, no documentation, manual pages or translations: a slim base like python:*-slim.
  # The merged-usr hook sets /usr up itself; without it bookworm installs usrmerge and with it perl.
  TMPDIR=${BASE_BUILD_TMPDIR:-${TMPDIR:-/tmp}} mmdebstrap --variant=minbase --mode=root --quiet \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='APT::Install-Suggests "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --include="$packages" \
    "$suite" - \
    "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" \
    "deb $security $suite-security main" 2>"$log" |
    podman import \
      --change 'CMD ["/bin/bash"]' \
      --change 'ENV LANG=C.UTF-8' \
      --change "LABEL org.opencontainers.image.title=ed-extractor-base-$name" \
      --change "LABEL org.opencontainers.image.description=Debian $suite minbase with $packages" \
      - "$image" >/dev/null 2>"$log.import" || {
    cat "$log" "$log.import" >&2
    rm -f "$log" "$log.import"
    say "building $image failed"
    return 1
  }
  rm -f "$log" "$log.import"
  # The image this one replaces, now untagged, unless a container or another tag still uses it.
  [ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
  say "built $image in $((SECONDS - started)) s"
}

for target in "${targets[@]}"; do
  case $target in
    runtime) build runtime "$runtime_packages" ;;
    builder) build builder "$builder_packages" ;;
  esac
done
