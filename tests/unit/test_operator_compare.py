"""Drift detection: what the API server adds is ignored, what someone changed is found."""

from __future__ import annotations

from voice_operator import compare


def test_server_added_fields_are_ignored() -> None:
    desired = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}}
    live = {"spec": {"replicas": 2, "revisionHistoryLimit": 10,
                     "template": {"spec": {"containers": [{"name": "c", "image": "a", "terminationMessagePath": "/dev/x"}]}}},
            "status": {"replicas": 2}}
    assert compare.is_subset(desired, live)


def test_changes_and_removals_are_found() -> None:
    desired = {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2, "items": [1, 2]}}
    assert compare.differences(desired, {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 5, "items": [1, 2]}}) == ["spec.replicas"]
    assert compare.differences(desired, {"metadata": {"labels": {}}, "spec": {"replicas": 2, "items": [1, 2]}}) == ["metadata.labels.a"]
    assert compare.differences(desired, {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2, "items": [1]}}) == ["spec.items"]


def test_omitted_empty_values_and_canonical_quantities_match() -> None:
    assert compare.is_subset({"a": {}, "b": [], "c": False, "d": "", "e": 0, "f": None}, {})
    assert compare.is_subset({"cpu": "1000m", "memory": "1Gi"}, {"cpu": "1", "memory": "1024Mi"})
    assert not compare.is_subset({"cpu": "2"}, {"cpu": "1"})
    assert not compare.is_subset({"flag": True}, {"flag": "True"})
