"""A failing metric gate is recorded on the evaluation and blocks every downstream stage."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pytest

from lifecycle_pipeline.declaration import Contract, Evaluation
from lifecycle_pipeline.definitions import model_assets
from lifecycle_pipeline.lineage.query import check_results, latest
from tests.conftest import FAST_TRAINING, SAMPLE, SAMPLE_MODEL, Pipeline, Registry

RELEASE_CANDIDATE = SAMPLE_MODEL.key("release_candidate")
EVALUATION = SAMPLE_MODEL.asset("evaluation")


@dg.asset(
    key=RELEASE_CANDIDATE, partitions_def=SAMPLE_MODEL.data_versions, deps=[SAMPLE["evaluation"]]
)
def release_candidate() -> None:
    """Stands in for the packaging stage: it must never run after a failed gate."""


@pytest.fixture
def gated(pipeline_factory: Callable[[Registry], Pipeline], demo_registry: Registry) -> Pipeline:
    pipeline = pipeline_factory(demo_registry)
    pipeline.defs = dg.Definitions(
        assets=[*model_assets(SAMPLE_MODEL).assets, release_candidate],
        resources=pipeline.defs.resources,
        jobs=[
            dg.define_asset_job(
                SAMPLE_MODEL.scoped("lifecycle"),
                selection=dg.AssetSelection.all()
                - dg.AssetSelection.assets(SAMPLE["drift_monitor"]),
            )
        ],
        executor=dg.in_process_executor,
    )
    return pipeline


def test_failing_gate_blocks_downstream_and_names_gate_and_value(gated: Pipeline) -> None:
    strict = {
        "ops": {
            **FAST_TRAINING["ops"],
            gated.op("evaluation"): {"config": {"gates": {"roc_auc": 0.99999}}},
        }
    }
    result = gated.run("data-v1", run_config=strict)

    assert not result.success
    checks = check_results(gated.instance, result.run_id)
    gate = checks[f"{EVALUATION}:gate_roc_auc"]
    assert not gate.passed
    assert gate.metadata["threshold"] == 0.99999
    assert gate.metadata["value"] < 0.99999
    assert f"roc_auc = {gate.metadata['value']:.6g}" in gate.description
    assert "required >= 0.99999" in gate.description
    assert checks[f"{EVALUATION}:gate_f1"].passed

    # The evaluation itself is on record (the evidence), the downstream stage is not.
    assert latest(gated.instance, SAMPLE["evaluation"], "data-v1") is not None
    assert latest(gated.instance, RELEASE_CANDIDATE, "data-v1") is None
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "gate_roc_auc" in str(failure.event_specific_data.error)  # type: ignore[union-attr]
    logs = [r.user_message for r in gated.instance.all_logs(result.run_id)]
    assert any(gate.description in m and "downstream blocked" in m for m in logs)


def test_passing_gates_let_downstream_run(gated: Pipeline) -> None:
    result = gated.run("data-v1")
    assert result.success
    assert latest(gated.instance, RELEASE_CANDIDATE, "data-v1") is not None


def test_a_slice_with_one_class_has_an_undefined_roc_auc_not_a_missing_field() -> None:
    """Found by the 200-version benchmark: one such slice made evaluation fail outright."""
    import numpy as np

    from lifecycle_pipeline.assets.evaluation import slice_table
    from lifecycle_pipeline.tasks.binary import Binary

    proba = np.array([0.1, 0.8, 0.3, 0.9])
    raw = np.column_stack([1 - proba, proba])
    contract, evaluation = SAMPLE_MODEL.model.contract, SAMPLE_MODEL.model.evaluation

    def score(labels: list[int]) -> dict[str, object]:
        return Binary().score(np.array(labels), raw, [0, 1], contract, evaluation)

    slices = {"both classes": score([0, 1, 0, 1]), "one class only": score([0, 0, 0, 0])}
    table = slice_table(slices)
    records = [r.data for r in table.records]
    assert set(records[0]) == set(records[1])  # Dagster requires equal fields
    assert records[1]["roc_auc"] is None and records[1]["rows"] == 4
    assert records[0]["roc_auc"] == 1.0


def _multiclass_contract() -> tuple[Contract, Evaluation]:
    contract = Contract.model_validate(
        {
            "target": "kind",
            "task": "multiclass",
            "row": "one thing",
            "classes": [{"value": v, "name": v} for v in ("a", "b", "c")],
            "features": {"x": {"type": "numeric"}},
        }
    )
    return contract, Evaluation.model_validate({"gates": {}})


@pytest.mark.parametrize(
    ("task", "truth", "undefined", "defined"),
    [
        # No positives: recall and F1 of the positive class are 0/0; precision is defined
        # (0: every predicted positive is wrong), and so is accuracy.
        ("binary", [0, 0, 0, 0], {"recall", "f1", "roc_auc"}, {"precision": 0.0, "accuracy": 0.5}),
        # Positives, none predicted: precision is 0/0; recall and F1 are a true 0 (all missed).
        ("binary-none-predicted", [1, 1, 0, 0], {"precision"}, {"recall": 0.0, "f1": 0.0}),
        # One class present: recall of the absent classes and balanced accuracy are undefined.
        ("multiclass", ["a", "a", "a", "a"], {"recall/b", "recall/c", "balanced_accuracy"}, {}),
    ],
)
def test_a_metric_undefined_on_a_slice_is_none_in_every_task(
    task: str, truth: list[object], undefined: set[str], defined: dict[str, float]
) -> None:
    """`Task.score` promises None where a metric is undefined, never a 0 that reads as a
    measured failure in a slice table or a card."""
    import numpy as np

    from lifecycle_pipeline.tasks import task_for

    if task.startswith("binary"):
        contract, evaluation = SAMPLE_MODEL.model.contract, SAMPLE_MODEL.model.evaluation
        proba = np.array([0.9, 0.2, 0.7, 0.1]) if task == "binary" else np.full(4, 0.1)
        raw, classes = np.column_stack([1 - proba, proba]), [0, 1]
        scores = task_for("binary").score(np.array(truth), raw, classes, contract, evaluation)
    else:
        contract, evaluation = _multiclass_contract()
        raw = np.tile([0.2, 0.5, 0.3], (4, 1))
        scores = task_for("multiclass").score(
            np.array(truth), raw, ["a", "b", "c"], contract, evaluation
        )
    assert {name for name, value in scores.items() if value is None} == undefined
    for name, value in defined.items():
        assert scores[name] == pytest.approx(value)
