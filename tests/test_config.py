"""Configuration is validated before any stage writes, with errors that name the field."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pytest

from lifecycle_pipeline.lineage.query import latest
from tests.conftest import Pipeline, Registry, tree_digest
from tests.test_bad_versions import failure_text

STAGES = ("data_snapshot", "features", "trained_model", "evaluation")


@pytest.mark.parametrize(
    ("op", "config", "expected"),
    [
        ("trained_model", {"estimator": "xgboost"}, "estimator"),
        ("trained_model", {"n_trees": 10}, "n_trees"),
        ("trained_model", {"n_estimators": "many"}, "n_estimators"),
        ("evaluation", {"min_roc_auc": "high"}, "min_roc_auc"),
    ],
)
def test_unknown_keys_and_wrong_types_are_rejected_at_launch(
    demo_registry: Registry,
    pipeline_factory: Callable[[Registry], Pipeline],
    op: str,
    config: dict[str, object],
    expected: str,
) -> None:
    pipeline = pipeline_factory(demo_registry)
    with pytest.raises(dg.DagsterInvalidConfigError) as error:
        pipeline.run("data-v1", run_config={"ops": {op: {"config": config}}})
    assert expected in str(error.value)
    assert all(latest(pipeline.instance, s, "data-v1") is None for s in STAGES)


@pytest.mark.parametrize(
    ("op", "config", "expected"),
    [
        ("trained_model", {"n_estimators": 0}, "ops.trained_model.config.n_estimators = 0"),
        ("trained_model", {"threads": 0}, "ops.trained_model.config.threads = 0"),
        ("trained_model", {"max_depth": -3}, "ops.trained_model.config.max_depth = -3"),
        ("evaluation", {"min_roc_auc": 1.5}, "ops.evaluation.config.min_roc_auc = 1.5"),
        ("evaluation", {"max_brier": -0.1}, "ops.evaluation.config.max_brier = -0.1"),
        ("features", {"test_size": 0.9}, "ops.features.config.test_size = 0.9"),
    ],
)
def test_out_of_range_values_fail_before_anything_is_written(
    demo_registry: Registry,
    pipeline_factory: Callable[[Registry], Pipeline],
    op: str,
    config: dict[str, object],
    expected: str,
) -> None:
    pipeline = pipeline_factory(demo_registry)
    result = pipeline.run("data-v1", run_config={"ops": {op: {"config": config}}})
    assert not result.success
    assert expected in failure_text(result)
    assert all(latest(pipeline.instance, s, "data-v1") is None for s in STAGES)
    assert tree_digest(pipeline.artifacts) == {}
