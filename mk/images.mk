# The container images and the Docker engine that builds and runs them; included by the main
# Makefile. The tags (OPERATOR_IMAGE, INFERENCE_IMAGE) are the chart's defaults (mk/chart.mk).
#
#   make images                  both images (BuildKit), after making sure their bases exist:
#                                IMAGE_BASES=local (default) makes a local stand-in from Debian
#                                packages for a base the engine lacks; IMAGE_BASES=pull pulls it
#   make images IMAGES=operator  one image
#   make engine-up / engine-down a dockerd owned by scripts/images/engine.sh (stopped by pid)
#   make test-containers         the container tests alone (tests/containers, tests/e2e/test_operator_image.py)

IMAGES ?= operator inference
IMAGE_BASES ?= local

.PHONY: images engine-up engine-down test-containers

images:
	OPERATOR_IMAGE=$(OPERATOR_IMAGE) INFERENCE_IMAGE=$(INFERENCE_IMAGE) IMAGE_BASES=$(IMAGE_BASES) \
		bash scripts/images/build.sh $(IMAGES)

engine-up:
	@bash scripts/images/engine.sh start

engine-down:
	@bash scripts/images/engine.sh stop

test-containers: $(VENV_STAMP) cluster-tools
	OPERATOR_IMAGE=$(OPERATOR_IMAGE) INFERENCE_IMAGE=$(INFERENCE_IMAGE) \
		$(PYTHON) -m pytest tests/containers tests/e2e/test_operator_image.py
