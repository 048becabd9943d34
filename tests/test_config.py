"""Configuration is validated before any stage writes, with errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest

from lifecycle_pipeline.lineage.query import latest
from tests.conftest import SAMPLE_MODEL, Pipeline, Registry, tree_digest
from tests.reliability.cases import CONFIG_AT_LAUNCH, CONFIG_OUT_OF_RANGE, Fault
from tests.test_bad_versions import failure_text

STAGES = ("data_snapshot", "features", "trained_model", "evaluation")


def run_config(fault: Fault) -> dict[str, Any]:
    """The row's config under the sample model's op for the stage the row names
    (``trained_model`` -> ``breast_cancer__trained_model``)."""
    stage, config = fault.value
    return {"ops": {SAMPLE_MODEL.op(stage): {"config": config}}}


@pytest.mark.parametrize("fault", CONFIG_AT_LAUNCH, ids=[f.name for f in CONFIG_AT_LAUNCH])
def test_unknown_keys_and_wrong_types_are_rejected_at_launch(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], fault: Fault
) -> None:
    pipeline = pipeline_factory(demo_registry)
    with pytest.raises(dg.DagsterInvalidConfigError) as error:
        pipeline.run("data-v1", run_config=run_config(fault))
    assert fault.expected in str(error.value)
    assert all(latest(pipeline.instance, pipeline.key(s), "data-v1") is None for s in STAGES)


@pytest.mark.parametrize("fault", CONFIG_OUT_OF_RANGE, ids=[f.name for f in CONFIG_OUT_OF_RANGE])
def test_out_of_range_values_fail_before_anything_is_written(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], fault: Fault
) -> None:
    pipeline = pipeline_factory(demo_registry)
    result = pipeline.run("data-v1", run_config=run_config(fault))
    assert not result.success
    message = failure_text(result)
    assert fault.expected in message
    # The field is named as the user's run config holds it: under the model's op, never an
    # op that does not exist (``ops.trained_model`` of a single-model deployment).
    assert set(re.findall(r"\bops\.(\w+)\.config\.", message)) == {
        SAMPLE_MODEL.op(fault.value[0])
    }, message
    assert all(latest(pipeline.instance, pipeline.key(s), "data-v1") is None for s in STAGES)
    assert tree_digest(pipeline.artifacts) == {}
