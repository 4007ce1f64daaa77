# Local Kubernetes control plane for the e2e tests; see tests/cluster/README.md.
# Included by the main Makefile, which defines PYTHON and VENV_STAMP.

CLUSTER_TOOLS_SCRIPT := scripts/build-cluster-tools.sh
# Evaluated only when used (=, not :=): asks the build script where the cache is.
CLUSTER_BIN_DIR = $(shell bash $(CLUSTER_TOOLS_SCRIPT) --print-bin-dir)

# kind for contributors with Docker: the node image is the one this kind release was
# built and tested with (same Kubernetes minor as the local control plane).
KIND_VERSION := v0.32.0
KIND_NODE_IMAGE := kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5
KIND_CLUSTER := voice-e2e
KIND_DIR := .cluster/kind

.PHONY: cluster-tools cluster-up cluster-down cluster-status test-e2e e2e-kind

# Builds kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok and helm
# from Go modules into ~/.cache/voice-service/k8s-<version>/bin; a no-op once built.
cluster-tools:
	@bash $(CLUSTER_TOOLS_SCRIPT)

# `make test` builds the tools first: the e2e session fixture needs them, and a cold
# build inside a test would run into the per-test timeout.
test: cluster-tools

# A cluster that stays up until `make cluster-down`; tests run meanwhile reuse it.
cluster-up: $(VENV_STAMP) cluster-tools
	$(PYTHON) -m tests.cluster up

cluster-down: $(VENV_STAMP)
	$(PYTHON) -m tests.cluster down

cluster-status: $(VENV_STAMP)
	@$(PYTHON) -m tests.cluster status

test-e2e: $(VENV_STAMP) cluster-tools
	$(PYTHON) -m pytest tests/e2e -m e2e

# The e2e suite on a kind cluster (needs Docker). kwok runs beside it, from the local
# build, and adds the simulated GPU nodes. KIND_KEEP=1 leaves the cluster up.
e2e-kind: $(VENV_STAMP) cluster-tools
	GOFLAGS= GOBIN=$(CLUSTER_BIN_DIR) go install sigs.k8s.io/kind@$(KIND_VERSION)
	@mkdir -p $(KIND_DIR)
	@$(CLUSTER_BIN_DIR)/kind get clusters | grep -qx $(KIND_CLUSTER) || \
		$(CLUSTER_BIN_DIR)/kind create cluster --name $(KIND_CLUSTER) --image $(KIND_NODE_IMAGE) --wait 180s
	$(CLUSTER_BIN_DIR)/kind get kubeconfig --name $(KIND_CLUSTER) > $(KIND_DIR)/kubeconfig
	$(PYTHON) -m tests.cluster --dir $(KIND_DIR) attach-kwok --kubeconfig $(KIND_DIR)/kubeconfig
	VOICE_E2E_CLUSTER=existing KUBECONFIG=$(CURDIR)/$(KIND_DIR)/kubeconfig $(PYTHON) -m pytest tests/e2e -m e2e; \
		rc=$$?; \
		$(PYTHON) -m tests.cluster --dir $(KIND_DIR) down; \
		if [ -z "$(KIND_KEEP)" ]; then $(CLUSTER_BIN_DIR)/kind delete cluster --name $(KIND_CLUSTER); fi; \
		exit $$rc
