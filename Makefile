# The only entry points: demo, test, sanity, lint, galaxy, bench, emulator. Everything installs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
BUILD := $(CURDIR)/.build
COLLECTIONS := $(BUILD)/collections
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL := $(BUILD)/defender-endpoint-$(VERSION).tar.gz
# Two stamps on one venv: the demo's requirements (make demo, make emulator), then the test tools on top (the rest).
DEMO_REQUIREMENTS := tests/requirements-demo.txt tests/emulator/requirements.txt
DEMO_STAMP := $(VENV)/.installed-demo-$(shell cat $(DEMO_REQUIREMENTS) | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(shell cat tests/requirements-dev.txt $(DEMO_REQUIREMENTS) | sha1sum | cut -c1-12)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false

.PHONY: venv demo-venv cores test-tools collection test unit integration sanity lint galaxy demo emulator bench clean

# The demo's and the emulator's venv: ansible-core, the collection's requirements, the emulator's. No test tool,
# no Debian package.
demo-venv: $(DEMO_STAMP)
$(DEMO_STAMP): $(DEMO_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r tests/requirements-demo.txt
	touch $@

# The tests' venv: the demo's plus the test tools.
venv: $(STAMP)
$(STAMP): tests/requirements-dev.txt $(DEMO_REQUIREMENTS)
	@# ansible-rulebook (the Event-Driven Ansible tests) needs a Java 17 runtime.
	command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq default-jre-headless; } || \
	  { echo "Java 17 is needed for ansible-rulebook: install default-jre-headless" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r tests/requirements-dev.txt
	touch $@ $(DEMO_STAMP)

# Build the collection tarball and install it into a local collections path, as a user would (ansible-galaxy:
# ansible-core, in the demo's venv).
collection: demo-venv
	mkdir -p $(BUILD)
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD) . >/dev/null
	$(BIN)/ansible-galaxy collection install --force --no-deps -p $(COLLECTIONS) $(TARBALL) >/dev/null
	@echo "installed defender.endpoint $(VERSION) into $(COLLECTIONS)"

# Unit tests, the emulator's own tests and the integration tests (real ansible-playbook runs), in one pytest run.
unit: venv
	$(BIN)/python -m pytest -q tests/unit tests/emulator/tests

integration: venv collection
	$(BIN)/python -m pytest -q tests/integration

sanity: venv
	bash tests/sanity/run.sh

lint: venv collection
	cd $(CURDIR) && $(BIN)/ansible-lint --profile production --offline

# Galaxy's gates on the built collection: galaxy-importer (as Galaxy and Automation Hub run it on upload) and
# antsibull-docs lint-collection-docs, each in its own venv under .build/galaxy (tests/galaxy/run.sh).
galaxy: venv collection
	bash tests/galaxy/run.sh $(TARBALL)

# The ansible-core versions of the matrix (tests/cores.py), each in its own venv that installs itself.
cores: venv
	$(BIN)/python tests/cores.py

# What only the tests need from Debian: the mdatp role runs in a disposable Debian root (debootstrap), and the
# coverage report's HTML page is checked in a headless Chromium.
test-tools:
	command -v debootstrap >/dev/null && command -v chromium >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap chromium; } || \
	  { echo "debootstrap and chromium are needed by the tests: install them (Debian packages)" >&2; exit 1; }

test: venv collection cores test-tools
	@# Two workers (a test file stays on one: its tests may share set-up); each worker has its own emulators.
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/unit tests/emulator/tests tests/integration
	$(BIN)/python -m tests.matrix
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory galaxy

demo: collection
	$(BIN)/python demo/run.py

emulator: demo-venv
	$(BIN)/python -m tests.emulator --port $${PORT:-8443} --machines $${MACHINES:-200} --tenants "$${TENANTS:-}" --state-dir .emulator

bench: venv collection
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(BUILD) .emulator .venvs tests/emulator/build tests/emulator/*.egg-info
