# The VoiceService operator: CRD generation, a local run, the scaling benchmark.
# Included by the main Makefile, which defines PYTHON and VENV_STAMP; cluster-tools
# comes from mk/cluster.mk.

OPERATOR_NAMESPACES ?= default

.PHONY: crd operator-run bench-operator

# Regenerates the CRD from operator/voice_operator/spec.py (a unit test fails when the
# committed file, or the Helm chart's copy, differs from what this writes).
crd: $(VENV_STAMP)
	$(PYTHON) -m voice_operator crd --output crds/voiceservices.yaml
	@if [ -d charts/voice-operator/crds ]; then cp crds/voiceservices.yaml charts/voice-operator/crds/voiceservices.yaml; fi

# Runs the operator against the current kubeconfig (e.g. `make cluster-up` and its
# KUBECONFIG), after installing the CRD. OPERATOR_NAMESPACES="a b" or OPERATOR_NAMESPACES=all.
operator-run: $(VENV_STAMP)
	kubectl apply --server-side --force-conflicts -f crds/voiceservices.yaml
	$(PYTHON) -m voice_operator run $(if $(filter all,$(OPERATOR_NAMESPACES)),--all-namespaces,$(foreach ns,$(OPERATOR_NAMESPACES),--namespace $(ns))) \
		--liveness http://127.0.0.1:8080/healthz --metrics-port 9090

# Time for 1, 50 and 200 VoiceServices to reach Ready (kwok pods), API requests per
# reconcile, operator peak memory. Reuses `make cluster-up`'s cluster, else starts one.
bench-operator: $(VENV_STAMP) cluster-tools
	$(PYTHON) scripts/bench_operator.py
