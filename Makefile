# voice-service: every setup step lives here. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON_BIN ?= python3.11
VENV := .venv
PYTHON := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
EXTRAS ?= test,operator

.PHONY: venv demo demo-run demo-server test test-unit test-integration bench bench-live clean

venv: $(VENV_STAMP)

# Re-installs whenever pyproject.toml changes.
$(VENV_STAMP): pyproject.toml
	@test -x $(PYTHON) || $(PYTHON_BIN) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

# The whole product on this machine (scripts/demo_cluster.py): local control plane, chart,
# operator, a VoiceService, speech through its Service. Where a Docker engine can run (as root
# with apt-get: scripts/images/with_engine.sh installs Debian's packages and starts a dockerd
# for the run, then stops it) and the real node can, the pods run from the images (demo-images
# builds them when missing); elsewhere kwok plays the pods and the server runs here
# (DEMO_ARGS='--pods local' forces that, and needs no engine). demo-server: the server alone.
demo: $(VENV_STAMP) cluster-tools
	@case "$(DEMO_ARGS)" in \
		*local*|*--keep*) $(MAKE) --no-print-directory demo-run ;; \
		*) bash scripts/images/with_engine.sh $(MAKE) --no-print-directory demo-images demo-run ;; \
	esac

demo-run:
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
