# pxed — see README.md.  The two commands for a fresh Debian 12 machine:
#   make demo    network-boot a VM through pxed in a lab namespace
#   make check   install what the tests need, then run them all
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
PYTEST_ARGS ?=

.PHONY: all check deps deps-apt deps-pip test test-unit test-integration lint typecheck demo bench clean

all:
	$(PYTHON) -m pip wheel --no-deps --no-build-isolation -w dist .

## Install everything the tests, demo and benchmarks need (apt-get + pip).
deps:
	tools/install-deps all

deps-apt:
	tools/install-deps apt

deps-pip:
	tools/install-deps pip

## make check: dependencies, then linters, type checks and every test.
check: deps
	$(MAKE) lint typecheck
	$(PYTEST) $(PYTEST_ARGS)

test:
	$(PYTEST) $(PYTEST_ARGS)

test-unit:
	$(PYTEST) -m "not integration and not qemu and not system" $(PYTEST_ARGS)

test-integration:
	$(PYTEST) -m "integration or qemu or system" $(PYTEST_ARGS)

lint:
	$(PYTHON) -m ruff check pxed tests tools

typecheck:
	$(PYTHON) -m mypy

## make demo: a VM boots from pxed in a lab network namespace (serial console shown).
demo: deps
	$(PYTHON) -m tests.lab.demo

## make bench: ratios against dnsmasq and cp, measured in the same run.
bench: deps
	$(PYTHON) -m tests.bench

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .lab
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
