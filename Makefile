# The conventional entry points. Each installs what it needs on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
BUILT  := $(VENV)/.built
READY  := $(VENV)/.ready
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test lint bench fuzz image deploy-check system-deps build clean

## demo: the main job on a generated local mirror (download, then unchanged, then the manifest)
demo: build
	scripts/demo.sh

## test: build everything and run the whole test suite
test: build
	$(PY) -m pytest

## lint: ruff, ruff format, mypy --strict, stub check, cargo fmt, cargo clippy
lint: build
	$(VENV)/bin/ruff check python tests benches scripts
	$(VENV)/bin/ruff format --check python tests benches scripts
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest ed_extractor._native
	cargo fmt --check
	cargo clippy --all-targets --release -- -D warnings

## bench: the benchmarks, with figures
bench: build
	$(PY) -m pytest benches --benchmark-enable --benchmark-only --benchmark-columns=min,mean,max,rounds -p no:randomly

## fuzz: the property tests of the gzip and zstd checks with many more examples (default 5000)
fuzz: build
	ED_EXTRACTOR_FUZZ_EXAMPLES=$${ED_EXTRACTOR_FUZZ_EXAMPLES:-5000} $(PY) -m pytest tests/test_compressed_properties.py -p no:randomly --timeout=0

## image: the container image localhost/ed-extractor:dev with podman (local Debian bases without a registry)
image:
	scripts/build-image.sh

## deploy-check: the Kubernetes manifests (kubernetes-validate --strict, offline) and the Containerfile (hadolint)
deploy-check: build
	$(PY) scripts/validate-k8s.py deploy/k8s
	$(VENV)/bin/hadolint Containerfile

system-deps:
	scripts/setup-system.sh

# The set-up's target is the last thing it makes: a set-up that failed half-way (no python3-venv,
# a proxy breaking pip) is done again by the next make, over what it left.
$(READY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "maturin>=1.7,<2"
	touch $@

build: system-deps $(BUILT)

$(BUILT): $(READY) pyproject.toml Cargo.toml Cargo.lock $(shell find rust -name '*.rs')
	$(VENV)/bin/maturin develop --release --extras dev
	touch $@

clean:
	rm -rf $(VENV) target demo-data
