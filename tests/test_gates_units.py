"""The metric gates exercised directly (`make mutate`): which thresholds a run applies, how
their checks are named, and the verdicts on held-out metrics. No model is trained and no
Dagster run is made; the end-to-end blocking is `tests/test_gates.py`.
"""

from __future__ import annotations

from typing import Any

import pytest

from lifecycle_pipeline.declaration import Evaluation, Gate
from lifecycle_pipeline.gates import GateConfigError, gate_check_name, gates_for, judge
from lifecycle_pipeline.lineage.records import GateVerdict

DECLARED = Evaluation(gates={"roc_auc": Gate(min=0.8), "log_loss": Gate(max=0.5)})


def test_a_run_applies_the_declared_thresholds_in_declaration_order() -> None:
    resolved = gates_for(DECLARED, {}, "models/m/defs.yaml")
    assert resolved == {"roc_auc": (">=", 0.8), "log_loss": ("<=", 0.5)}
    assert list(resolved) == ["roc_auc", "log_loss"]


def test_an_override_replaces_one_threshold_as_a_float_and_keeps_the_comparison() -> None:
    resolved = gates_for(DECLARED, {"log_loss": 1}, "models/m/defs.yaml")
    assert resolved == {"roc_auc": (">=", 0.8), "log_loss": ("<=", 1.0)}
    assert type(resolved["log_loss"][1]) is float
    assert type(resolved["roc_auc"][1]) is float


def test_overriding_an_undeclared_gate_is_refused_naming_it_the_source_and_the_gates() -> None:
    with pytest.raises(GateConfigError) as raised:
        gates_for(DECLARED, {"recall": 0.9, "f1": 0.5, "roc_auc": 0.7}, "models/m/defs.yaml")
    assert str(raised.value) == (
        "['f1', 'recall'] are not gated in models/m/defs.yaml; declared gates: roc_auc, "
        "log_loss. Add a gate to the declaration instead."
    )
    assert isinstance(raised.value, ValueError)  # run-config validation catches it as such


def test_a_declaration_without_gates_says_none_are_declared() -> None:
    assert gates_for(Evaluation(), {}, "d.yaml") == {}
    with pytest.raises(GateConfigError) as raised:
        gates_for(Evaluation(), {"f1": 0.5}, "d.yaml")
    assert str(raised.value) == (
        "['f1'] are not gated in d.yaml; declared gates: none. Add a gate to the declaration "
        "instead."
    )


@pytest.mark.parametrize(
    ("metric", "name"),
    [
        ("roc_auc", "gate_roc_auc"),
        ("recall/setosa", "gate_recall_setosa"),
        ("r2 score-9", "gate_r2_score_9"),
        ("Ünit", "gate__nit"),
        ("Recall/A", "gate_Recall_A"),
    ],
)
def test_a_gate_check_is_named_by_its_metric_in_dagster_safe_characters(
    metric: str, name: str
) -> None:
    assert gate_check_name(metric) == name


def test_each_gate_is_judged_on_its_metric_with_its_comparison() -> None:
    gates: dict[str, Any] = {"recall/setosa": (">=", 0.9), "log_loss": ("<=", 0.5)}
    verdicts = judge(gates, {"recall/setosa": 0.9, "log_loss": 0.75, "accuracy": 0.1})
    assert verdicts == (
        GateVerdict("gate_recall_setosa", "recall/setosa", 0.9, 0.9, ">="),
        GateVerdict("gate_log_loss", "log_loss", 0.75, 0.5, "<="),
    )
    assert [v.passed for v in verdicts] == [True, False]


def test_a_metric_value_is_recorded_as_a_float() -> None:
    (verdict,) = judge({"rows": (">=", 3.0)}, {"rows": 4})
    assert type(verdict.value) is float and verdict.value == 4.0


def test_no_gates_no_verdicts() -> None:
    assert judge({}, {"roc_auc": None}) == ()


def test_a_gated_metric_undefined_on_the_split_is_refused_not_judged() -> None:
    with pytest.raises(GateConfigError) as raised:
        judge({"f1": (">=", 0.5), "roc_auc": (">=", 0.8)}, {"f1": 0.9, "roc_auc": None})
    assert str(raised.value) == (
        "Gate on 'roc_auc' cannot be judged: the metric is undefined on the held-out split "
        "(e.g. a class absent from it). Use more data or another gate."
    )
