#!/usr/bin/env bash
# Install the system packages the build, tests, demo and benchmarks use (Debian; skipped when present).
set -euo pipefail
rust_min=1.85 # Cargo.toml's rust-version
is_root_with_apt() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  echo "setup-system: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
rust_is_new_enough() {
  local version
  version=$(cargo --version 2>/dev/null | awk '{print $2}') || return 1
  [ -n "$version" ] && [ "$(printf '%s\n%s\n' "$rust_min" "$version" | sort -V | head -n1)" = "$rust_min" ]
}

# Rust >= 1.85: Debian bookworm's cargo is 1.65 (its Cargo.lock error is cryptic), but its
# rustc-web/cargo-web (the toolchain of browser builds) is new enough and installs as rustc/cargo.
if ! rust_is_new_enough; then
  if is_root_with_apt && apt-cache show cargo-web >/dev/null 2>&1; then
    apt_install rustc-web cargo-web gcc libc6-dev
  fi
  if ! rust_is_new_enough; then
    echo "setup-system: Rust >= $rust_min is required (found: $(cargo --version 2>/dev/null || echo none)); install it with rustup (https://rustup.rs) or, on Debian bookworm, apt-get install rustc-web cargo-web" >&2
    exit 1
  fi
fi

# ISA-L (the gzip check's inflater, built from source by the isal-sys crate): autotools, make, and
# nasm for its x86-64 assembly. Without them the build fails, so they are required, not optional.
build_need=()
command -v nasm >/dev/null 2>&1 || build_need+=(nasm)
command -v autoreconf >/dev/null 2>&1 || build_need+=(autoconf)
command -v automake >/dev/null 2>&1 || build_need+=(automake)
command -v libtoolize >/dev/null 2>&1 || build_need+=(libtool)
command -v make >/dev/null 2>&1 || build_need+=(make)
if [ ${#build_need[@]} -gt 0 ]; then
  if ! is_root_with_apt; then
    echo "setup-system: building ISA-L needs ${build_need[*]}; install them (Debian: apt-get install ${build_need[*]})" >&2
    exit 1
  fi
  apt_install "${build_need[@]}"
fi

need=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/time ] || need+=(time)  # GNU time: the peak RSS in make bench-e2e
[ -e /usr/share/misc/magic.mgc ] || ldconfig -p 2>/dev/null | grep -q libmagic.so.1 || need+=(libmagic1)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! is_root_with_apt; then
  echo "setup-system: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}); tests that need them will skip" >&2
  exit 0
fi
apt_install "${need[@]}"
