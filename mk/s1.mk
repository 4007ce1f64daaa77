# The S1 Mini engine's dependencies; included by the main Makefile (PYTHON, VENV, VENV_STAMP, EXTRAS).
#
# `pip install '.[s1]'` brings torch and the runtime dependencies of fish-speech's model code
# (pinned in pyproject.toml). fish-speech and the two DAC packages are then installed with
# --no-deps (pyproject's [tool.voice-service.no-deps]): their declared requirements would
# break our pins. The last step imports the engine, so a missing runtime dependency fails the
# install, not the first request.

S1_STAMP := $(VENV)/.s1-installed
S1_NO_DEPS = $(PYTHON) scripts/pinned_requirements.py --no-deps s1 | $(PYTHON) -m pip install --quiet --no-deps -r /dev/stdin
S1_IMPORT_CHECK = $(PYTHON) -c 'import voice_inference.engines.s1_mini'

.PHONY: s1 venv-s1 s1-install bench-engine bench-batch bench-batch-engine

# Any interpreter: make s1-install PYTHON=/path/to/python. The requirements first, then the
# project without them, as Dockerfile.inference installs them in two layers.
s1-install:
	$(PYTHON) scripts/pinned_requirements.py s1 | $(PYTHON) -m pip install --quiet -r /dev/stdin
	$(S1_NO_DEPS)
	$(PYTHON) -m pip install --quiet --no-deps .
	$(S1_IMPORT_CHECK)

# The development venv: editable, with the other extras, redone when the pins change.
$(S1_STAMP): $(VENV_STAMP) pyproject.toml mk/s1.mk
	$(PYTHON) -m pip install --quiet -e '.[$(EXTRAS),s1]'
	$(S1_NO_DEPS)
	$(S1_IMPORT_CHECK)
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
