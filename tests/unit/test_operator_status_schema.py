"""What ``status.compute`` writes fits the CRD's status schema.

The API server prunes fields its structural schema does not name, silently, and refuses a
status patch whose values have the wrong type. So every computed status is validated with a
JSON-schema validator against the generated CRD's own status schema, tightened the way
pruning is: an object may hold only the properties its schema lists.
"""

from __future__ import annotations

import pytest

from tests import operator_statuses


@pytest.mark.parametrize("name", operator_statuses.SCENARIOS)
def test_computed_status_fits_the_crd_schema(name: str) -> None:
    value = operator_statuses.scenario(name)
    assert operator_statuses.schema_errors(value) == []


def test_the_check_catches_what_the_api_server_would_drop_or_refuse() -> None:
    value = operator_statuses.scenario("fetched")
    assert operator_statuses.schema_errors(value) == []
    value["checkpoint"]["commit"] = "0123abcd"  # a field the schema does not name: pruned
    value["conditions"][0]["since"] = "now"
    value["readyReplicas"] = "2"  # wrong type: the patch is refused
    assert sorted(operator_statuses.schema_errors(value)) == [
        "checkpoint: Additional properties are not allowed ('commit' was unexpected)",
        "conditions.0: Additional properties are not allowed ('since' was unexpected)",
        "readyReplicas: '2' is not of type 'integer'",
    ]
