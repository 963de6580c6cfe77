#!/usr/bin/env bash
# Build the container image with podman (make image): localhost/ed-extractor:dev by default.
#
# Bases: BASE_IMAGE / BUILDER_BASE_IMAGE when given; else the public python:3.11-slim-bookworm when it
# is present or can be pulled; else (no registry reachable) the local Debian bases that
# scripts/build-base-image.sh builds with mmdebstrap (once; kept afterwards).
# CA bundle: CA_BUNDLE (default: the host's /etc/ssl/certs/ca-certificates.crt when it exists; empty
# to pass none) goes to the build as the secret "cacert", for pip and cargo behind a TLS-inspecting
# proxy; it is never stored in a layer.
# Environment: IMAGE (tag), BASE_IMAGE, BUILDER_BASE_IMAGE, CA_BUNDLE, PODMAN_BUILD_ARGS (extra args).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-localhost/ed-extractor:dev}
public=docker.io/library/python:3.11-slim-bookworm
ca_bundle=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}

say() { echo "build-image: $*" >&2; }

scripts/setup-podman.sh

if [ -n "${BASE_IMAGE:-}" ]; then
  base=$BASE_IMAGE
  builder=${BUILDER_BASE_IMAGE:-$BASE_IMAGE}
elif podman image exists "$public" || timeout 300 podman pull --quiet "$public" >/dev/null 2>&1; then
  base=$public
  builder=$public
else
  say "cannot pull $public (no registry reachable): using local Debian bases"
  scripts/build-base-image.sh
  base=localhost/ed-extractor-base:runtime
  builder=localhost/ed-extractor-base:builder
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain -- Containerfile pyproject.toml \
  Cargo.toml Cargo.lock rust python 2>/dev/null)" ]; then
  revision=$revision-dirty
fi
source_url=$(git remote get-url origin 2>/dev/null || true)

args=(
  --file Containerfile
  --tag "$image"
  --build-arg "BASE_IMAGE=$base"
  --build-arg "BUILDER_BASE_IMAGE=$builder"
  --build-arg "VERSION=$version"
  --build-arg "REVISION=$revision"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  --build-arg "SOURCE_URL=$source_url"
)
if [ -n "$ca_bundle" ]; then
  if [ -s "$ca_bundle" ]; then
    args+=(--secret "id=cacert,src=$ca_bundle")
  else
    say "CA bundle $ca_bundle not found: building without one"
  fi
fi
# shellcheck disable=SC2206  # PODMAN_BUILD_ARGS is a list of words on purpose
args+=(${PODMAN_BUILD_ARGS:-})

say "podman build $image (runtime base $base, builder base $builder)"
started=$SECONDS
podman build "${args[@]}" .
say "built $image in $((SECONDS - started)) s: $(podman image inspect --format '{{.Size}}' "$image" |
  awk '{printf "%.0f MB", $1 / 1e6}')"
