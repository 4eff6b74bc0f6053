# certfleet's two commands: `make sandbox` (the main job on a local test bed) and `make test`.
# Both set up what they need on a fresh machine: Debian packages, the Python venv and the
# test bed's Go-built servers (cached outside the work tree, so only the first run builds).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup image test lint unit sandbox bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# Debian's packages first (apt wants to be alone); then the Go builds beside the Python
# installs, the two slow steps of a first run (about 5 and 1 minutes).
setup:
	tests/testbed/install-system-packages.sh
	tests/testbed/build-binaries.sh >/dev/null & go=$$!; \
	$(MAKE) --no-print-directory $(STAMP); venv=$$?; \
	wait $$go && exit $$venv

# certfleet's image in podman's local storage (localhost/certfleet:dev); the Debian base is made
# once and kept there, so a second build takes seconds. The image tests run it.
image: $(STAMP)
	$(VENV)/bin/hadolint Containerfile
	deploy/image/build-image.sh

lint: $(STAMP)
	$(VENV)/bin/hadolint Containerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint image
	$(VENV)/bin/pytest

sandbox: setup
	PYTHONPATH=tests $(VENV)/bin/python -m testbed.sandbox $(SANDBOX_ARGS)

# The benchmarks on the test bed's real servers (bench/__main__.py): about 4 minutes on 2
# cores at the default size; BENCH_N=1000 (or 5000) for a larger cold start, BENCH_FLEET=30.
bench: setup
	PYTHONPATH=tests:. $(VENV)/bin/python -m bench

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
