# outwork: the commands a developer and CI use. Needs only python3 (with venv and pip).
PYTHON ?= python3
VENV := .venv
TOOLS_VENV := .venv-tools
PY := $(VENV)/bin/python

.PHONY: install tools debian-packages demo test lint fmt bench lock clean

install: $(VENV)/.installed $(VENV)/.native

# Rebuilt only when the lock or the project metadata change, so `make install` is quick
# when nothing did.
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The request path compiled with mypyc where a C compiler and the Python headers are (else the
# pure-Python modules run: scripts/build-native says so); rebuilt when one of them changes.
NATIVE_SOURCES := $(patsubst %,%.py,$(subst .,/,$(shell \
	sed -n 's/^    "\(outwork\.[a-z0-9_.]*\)",$$/\1/p' outwork/native.py)))

$(VENV)/.native: $(VENV)/.installed $(NATIVE_SOURCES) outwork/native.py scripts/build-native
	$(PY) scripts/build-native
	touch $@

# sslyze pins another cryptography than ours, so it lives in its own venv.
tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: requirements-tools.lock
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q --require-hashes --no-deps -r requirements-tools.lock
	touch $@

debian-packages:
	scripts/install-debian-packages

demo: install
	scripts/run-demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The suite runs on the compiled modules where they are built (debian-packages first: gcc and
# python3-dev for the build); then the tests of the compiled modules run again on their pure-Python
# sources, what a machine without a C compiler runs (outwork/native.py).
PURE_TESTS := tests/test_native.py tests/http tests/tls/test_engine.py \
	tests/proxy/test_pipeline_inproc.py tests/proxy/test_request_filters.py \
	tests/proxy/test_exchange_state.py tests/proxy/test_router.py tests/proxy/test_local_reply.py \
	tests/proxy/test_metrics.py tests/proxy/test_sealed_output.py tests/tls/test_bulk_output.py \
	tests/filters/test_json_whole.py tests/filters/test_json_limits.py tests/filters/test_gcra.py \
	tests/filters/test_node_table.py tests/filters/test_header_lines.py \
	tests/waf/test_transforms.py tests/waf/test_fastpath.py tests/waf/test_patterns.py \
	tests/waf/test_engine.py tests/waf/test_crs_regression.py \
	tests/filters/test_access.py tests/filters/test_authenticate.py \
	tests/filters/test_authorize.py tests/filters/test_client_key.py tests/filters/test_cors.py \
	tests/filters/test_credentials.py tests/filters/test_rate_limit.py \
	tests/filters/test_threat.py tests/proxy/test_filter_runner.py

test: debian-packages install tools lint
	$(VENV)/bin/pytest
	OUTWORK_PURE=1 $(VENV)/bin/pytest $(PURE_TESTS)

# `make bench BENCH_ARGS=--quick` for a short run; bench/README.md lists the options.
BENCH_ARGS ?=
bench: install debian-packages
	$(PY) bench/run.py $(BENCH_ARGS)

# Regenerate the lock files (needs the network; uses uv from a scratch venv).
lock:
	test -x .venv-lock/bin/uv || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install -q uv)
	for name in requirements requirements-dev requirements-tools; do \
		.venv-lock/bin/uv pip compile -q --python-version 3.11 --generate-hashes \
			--custom-compile-command "make lock" $$name.in -o $$name.lock || exit 1; \
	done

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .venv-lock .pytest_cache .mypy_cache .ruff_cache build/native
	find outwork -name '*.so' -delete
