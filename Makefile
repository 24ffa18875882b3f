# One entry point for a fresh machine: `make run` and `make test` (see README).
# Everything lands in ./.venv; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)

DEPS_STAMP   := $(VENV)/.deps-stamp
NATIVE_STAMP := $(VENV)/.native-stamp
# pip install -e . (entry points, Cython extensions) and the gRPC stubs are remade only when
# their inputs change, so a second `make run` goes straight to `switch run`
INSTALL_STAMP := $(VENV)/.install-stamp
GEN_STAMP     := switch/gen/.genproto-stamp
PROTO_SRC     := $(shell find proto -name '*.proto')
NATIVE_SRC   := $(shell find native -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock -o -name '*.pyi' | grep -v '/target/')
PYX_SRC      := $(wildcard switch/core/*.pyx switch/core/*.pxd) setup.py

.PHONY: setup system-deps install run test test-py test-dates test-rust lint bench clean

setup: install

# Debian packages the tests need (PostgreSQL for the store tests); skipped when present.
system-deps:
	@bash scripts/system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(DEPS_STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

$(NATIVE_STAMP): $(DEPS_STAMP) $(NATIVE_SRC)
	cd native && $(abspath $(BIN))/maturin develop --release -q
	touch $@

$(INSTALL_STAMP): $(NATIVE_STAMP) $(PYX_SRC) pyproject.toml
	$(BIN)/pip install -q --no-build-isolation --no-deps -e .
	touch $@

# switch/gen/ is build output (git-ignored): deleting it brings the stubs back
$(GEN_STAMP): $(DEPS_STAMP) $(PROTO_SRC) switch/devtools/genproto.py
	$(BIN)/python -m switch.devtools.genproto
	touch $@

install: $(INSTALL_STAMP) $(GEN_STAMP)

# The development run prints one-time codes on the console so the demo's `switch pay verify`
# can be followed end to end; `switch run` itself masks them (README, SMS alerts).
# ARGS go to `switch run`: make run ARGS="--iso-port 9583 --log-level debug"
SWITCH_SMS_SHOW_CODES ?= 1
ARGS ?=
run: install
	SWITCH_SMS_SHOW_CODES=$(SWITCH_SMS_SHOW_CODES) $(BIN)/switch run $(ARGS)

lint: install
	$(BIN)/ruff check switch tests loadtests bench setup.py
	$(BIN)/ruff format --check switch tests loadtests bench setup.py
	$(BIN)/mypy
	cd native && cargo fmt --all --check
	cd native && cargo clippy --workspace --all-targets --release -- -D warnings

test-rust:
	cd native && cargo test --release --workspace --exclude switch-native

test-py: install system-deps
	$(BIN)/pytest -q

# The suite again with the clock moved (month end and leap day, just before the issuer's
# midnight): no test may depend on the day it runs.
test-dates: install system-deps
	bash scripts/test-dates.sh

test: lint test-rust test-py test-dates

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) native/target build *.egg-info switch/core/*.c switch/core/*.so
