"""Configuration is validated before any stage writes, with errors that name the field."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pytest

from lifecycle_pipeline.lineage.query import latest
from tests.conftest import Pipeline, Registry, tree_digest
from tests.reliability.cases import CONFIG_AT_LAUNCH, CONFIG_OUT_OF_RANGE, Fault
from tests.test_bad_versions import failure_text

STAGES = ("data_snapshot", "features", "trained_model", "evaluation")


@pytest.mark.parametrize("fault", CONFIG_AT_LAUNCH, ids=[f.name for f in CONFIG_AT_LAUNCH])
def test_unknown_keys_and_wrong_types_are_rejected_at_launch(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], fault: Fault
) -> None:
    (op, config), expected = fault.value, fault.expected
    pipeline = pipeline_factory(demo_registry)
    with pytest.raises(dg.DagsterInvalidConfigError) as error:
        pipeline.run("data-v1", run_config={"ops": {op: {"config": config}}})
    assert expected in str(error.value)
    assert all(latest(pipeline.instance, s, "data-v1") is None for s in STAGES)


@pytest.mark.parametrize("fault", CONFIG_OUT_OF_RANGE, ids=[f.name for f in CONFIG_OUT_OF_RANGE])
def test_out_of_range_values_fail_before_anything_is_written(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], fault: Fault
) -> None:
    (op, config), expected = fault.value, fault.expected
    pipeline = pipeline_factory(demo_registry)
    result = pipeline.run("data-v1", run_config={"ops": {op: {"config": config}}})
    assert not result.success
    assert expected in failure_text(result)
    assert all(latest(pipeline.instance, s, "data-v1") is None for s in STAGES)
    assert tree_digest(pipeline.artifacts) == {}
