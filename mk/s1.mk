# The S1 Mini engine's dependencies; included by the main Makefile (PYTHON, VENV, VENV_STAMP, EXTRAS).
#
# `pip install '.[s1]'` brings torch and the runtime dependencies of fish-speech's model code
# (pinned in pyproject.toml). fish-speech and the two DAC packages are then installed with
# --no-deps: their declared requirements pin far more than inference needs (gradio, wandb,
# pydantic==2.9.2, protobuf<3.20, ...) and would break our pins. The last step imports the
# engine, so a missing runtime dependency fails the install, not the first request.

S1_NO_DEPS := fish-speech==0.1.0 descript-audio-codec==1.0.0 descript-audiotools==0.7.2
S1_STAMP := $(VENV)/.s1-installed
S1_PIP_ARGS ?= '.[s1]'

define S1_INSTALL
	$(PYTHON) -m pip install --quiet $(S1_PIP_ARGS)
	$(PYTHON) -m pip install --quiet --no-deps $(S1_NO_DEPS)
	$(PYTHON) -c 'import voice_inference.engines.s1_mini'
endef

.PHONY: s1 venv-s1 s1-install bench-engine bench-batch bench-batch-engine

# Any interpreter, e.g. the image's: make s1-install PYTHON=/opt/venv/bin/python
s1-install:
	$(S1_INSTALL)

# The development venv: editable, with the other extras, redone when the pins change.
$(S1_STAMP): S1_PIP_ARGS = -e '.[$(EXTRAS),s1]'
$(S1_STAMP): $(VENV_STAMP) pyproject.toml mk/s1.mk
	$(S1_INSTALL)
	@touch $@

s1 venv-s1: $(S1_STAMP)

# The S1 tests (tests/*/test_s1_*.py) run in `make test`, so it installs the engine first;
# VOICE_TEST_S1=required makes a missing engine fail them rather than skip (tests/s1_support.py).
test test-unit test-integration demo: $(S1_STAMP)
test test-unit test-integration: export VOICE_TEST_S1 := required

# Our engine against fish-speech's own generation path on the tiny checkpoint (CPU).
bench-engine: $(S1_STAMP)
	$(PYTHON) scripts/bench_engine.py

# Continuous batching vs the batch-1 path, over HTTP, S1 engine on the tiny checkpoint (CPU).
# BENCH_BATCH_ARGS='--engine mock --cost-ms 50' proves the script without the model;
# on a GPU: BENCH_BATCH_ARGS='--size s1-mini --device cuda --compile --levels 1,8,32,64,128,256'.
bench-batch: $(S1_STAMP)
	$(PYTHON) scripts/bench_batch.py $(BENCH_BATCH_ARGS)

# The batched engine against its batch-1 path at 1-32 concurrent requests, the prefill stall and
# batched codec decode, on the tiny checkpoint (CPU); scripts/bench_batch_engine.py --help for GPUs.
bench-batch-engine: $(S1_STAMP)
	$(PYTHON) scripts/bench_batch_engine.py $(BENCH_ARGS)
