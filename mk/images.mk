# The container images and the Docker engine that builds and runs them; included by the main
# Makefile. The tags (OPERATOR_IMAGE, INFERENCE_IMAGE) are the chart's defaults (mk/chart.mk).
#
#   make images                  both images (BuildKit), after making sure their bases exist:
#                                IMAGE_BASES=local (default) makes a local stand-in from Debian
#                                packages for a base the engine lacks; IMAGE_BASES=pull pulls it
#   make images IMAGES=operator  one image
#   make engine-packages         Debian's docker.io (dockerd, containerd, runc), mmdebstrap and the
#                                real node's CNI plugins, iptables and gcc, when missing
#   make engine-up / engine-down a dockerd owned by scripts/images/engine.sh (stopped by pid)
#   make test-containers         the container tests alone (tests/containers, tests/e2e/test_operator_image.py)
#   make demo-images             both images, only where an engine answers and one is missing (`make demo`)

IMAGES ?= operator inference
IMAGE_BASES ?= local

# The engine and the base stand-ins, then the real test node's containerd networking (CNI
# plugins, iptables, conntrack) and the compiler of its pause binary.
ENGINE_PACKAGES := docker.io mmdebstrap containernetworking-plugins iptables conntrack gcc libc6-dev

.PHONY: images demo-images engine-packages engine-up engine-down test-containers

images:
	OPERATOR_IMAGE=$(OPERATOR_IMAGE) INFERENCE_IMAGE=$(INFERENCE_IMAGE) IMAGE_BASES=$(IMAGE_BASES) \
		bash scripts/images/build.sh $(IMAGES)

# The images `make demo` runs its pods from: built when an engine answers and one is missing
# (cold: tens of minutes; present ones are not rebuilt, `make images` does that). Nothing for
# DEMO_ARGS='--pods local' or without an engine: the demo then runs its local path.
demo-images:
	@case "$(DEMO_ARGS)" in *local*) exit 0;; esac; \
	docker info >/dev/null 2>&1 || exit 0; \
	docker image inspect $(OPERATOR_IMAGE) $(INFERENCE_IMAGE) >/dev/null 2>&1 || $(MAKE) images

# apt-get, as root (CI's machines and these development machines are Debian bookworm).
engine-packages:
	@missing=; for tool in dockerd mmdebstrap iptables conntrack gcc /usr/lib/cni/bridge; do \
		command -v $$tool >/dev/null || missing=1; done; [ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "engine-packages: needs root and apt-get to install $(ENGINE_PACKAGES); install them by hand" >&2; exit 1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(ENGINE_PACKAGES)

engine-up:
	@bash scripts/images/engine.sh start

engine-down:
	@bash scripts/images/engine.sh stop

test-containers: $(VENV_STAMP) cluster-tools
	OPERATOR_IMAGE=$(OPERATOR_IMAGE) INFERENCE_IMAGE=$(INFERENCE_IMAGE) \
		$(PYTHON) -m pytest tests/containers tests/e2e/test_operator_image.py
