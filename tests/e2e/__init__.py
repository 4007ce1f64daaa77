"""End-to-end tests against a real Kubernetes API (see conftest.py for which cluster)."""
