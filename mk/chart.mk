# The Helm chart and the cluster demo; see charts/voice-operator. The image tags below are
# the chart's defaults, which mk/images.mk builds.
# Included by the main Makefile (PYTHON, VENV_STAMP); helm comes from `make cluster-tools`
# (mk/cluster.mk, which defines CLUSTER_BIN_DIR).

CHART_DIR := charts/voice-operator
HELM = $(CLUSTER_BIN_DIR)/helm
# The Kubernetes release the tools were built for (their cache folder is k8s-<version>).
KUBE_VERSION = $(patsubst k8s-%,%,$(notdir $(patsubst %/,%,$(dir $(CLUSTER_BIN_DIR)))))
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REGISTRY ?= ghcr.io/voice-service
OPERATOR_IMAGE ?= $(IMAGE_REGISTRY)/voice-operator:$(VERSION)
INFERENCE_IMAGE ?= $(IMAGE_REGISTRY)/voice-inference:$(VERSION)
# Extra flags: make chart-template HELM_ARGS='--set watchNamespaces={team-a}'
HELM_ARGS ?=
# Extra flags of the demo: make demo-cluster DEMO_ARGS='--keep --engine mock'
DEMO_ARGS ?=

.PHONY: chart-lint chart-template chart-package test-chart demo-cluster

# (The chart's crds/ copy of the generated CRD is rewritten by `make crd`, mk/operator.mk.)

chart-lint: cluster-tools
	$(HELM) lint --strict $(CHART_DIR)

# What `helm install` would create, printed (offline).
chart-template: cluster-tools
	@$(HELM) template voice-operator $(CHART_DIR) --namespace voice-system --kube-version $(KUBE_VERSION) $(HELM_ARGS)

chart-package: cluster-tools
	@mkdir -p dist
	$(HELM) package $(CHART_DIR) --destination dist

# The chart's and images' tests alone: lint, render, schema, Dockerfiles, then install (e2e).
test-chart: $(VENV_STAMP) cluster-tools
	$(PYTHON) -m pytest tests/unit/test_chart.py tests/unit/test_dockerfiles.py tests/e2e/test_chart.py

# The whole product on this machine (scripts/demo_cluster.py).
demo-cluster: demo

# The images themselves: `make images` (mk/images.mk).
