# voice-service: every setup step lives here. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON_BIN ?= python3.11
VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
EXTRAS ?= test,operator

.PHONY: venv demo demo-server test test-unit test-integration bench bench-live clean

venv: $(VENV_STAMP)

# Re-installs whenever pyproject.toml changes.
$(VENV_STAMP): pyproject.toml
	@test -x $(PYTHON) || $(PYTHON_BIN) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

# The whole product on this machine: local control plane, chart, operator, a VoiceService,
# its pod's server run locally, speech over HTTP (scripts/demo_cluster.py). demo-server: the
# inference server alone.
demo: $(VENV_STAMP) cluster-tools
	$(PYTHON) scripts/demo_cluster.py $(DEMO_ARGS)

demo-server: $(VENV_STAMP)
	$(PYTHON) scripts/demo.py

test: $(VENV_STAMP)
	$(PYTHON) -m pytest tests

test-unit: $(VENV_STAMP)
	$(PYTHON) -m pytest tests/unit

test-integration: $(VENV_STAMP)
	$(PYTHON) -m pytest tests/integration

bench: $(VENV_STAMP)
	$(PYTHON) scripts/bench_server.py

bench-live: $(VENV_STAMP)
	$(PYTHON) scripts/bench_live.py

clean:
	rm -rf $(VENV) .pytest_cache out

-include mk/*.mk
