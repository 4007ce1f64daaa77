"""A local Kubernetes control plane for the e2e tests, built from Go modules.

Modules, lowest first: `pki` (certificates), `nodes` (simulated nodes and the pod
behaviour annotation), `launcher` (starts and stops the processes), `client` (the
handle tests use). The pytest fixture in `tests/e2e/conftest.py` and the command line
(`python -m tests.cluster`, run by `make cluster-up` / `make cluster-down`) use them.
See README.md beside this file.
"""
