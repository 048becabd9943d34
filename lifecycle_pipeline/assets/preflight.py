"""Validate every stage's configuration before the first stage of a run writes anything.

Dagster's config schema checks keys and types when a run is launched, but not value ranges
(pydantic validates those when a stage starts). Without this check, an out-of-range
hyperparameter would surface only after the data and feature stages had already
materialized. The first stage therefore validates the whole run's config up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import ValidationError

from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.gates import GateConfigError, gates_for


class ConfigurationError(LifecycleError, ValueError):
    """Run configuration that names a valid field with an invalid value."""


def _config_classes() -> dict[str, type[dg.Config]]:
    from lifecycle_pipeline.assets.data import DataSnapshotConfig
    from lifecycle_pipeline.assets.documentation import ModelCardConfig
    from lifecycle_pipeline.assets.evaluation import EvaluationConfig
    from lifecycle_pipeline.assets.features import FeaturesConfig
    from lifecycle_pipeline.assets.training import TrainingConfig

    return {
        "data_snapshot": DataSnapshotConfig,
        "features": FeaturesConfig,
        "trained_model": TrainingConfig,
        "evaluation": EvaluationConfig,
        "model_card": ModelCardConfig,
    }


def _declared_overrides(ops: Mapping[str, Any], model: LoadedDeclaration) -> list[str]:
    from lifecycle_pipeline.assets.training import EstimatorError, estimator_params

    problems: list[str] = []
    training = (ops.get(model.op("trained_model")) or {}).get("config") or {}
    declared = model.model.estimator
    try:
        declared.build(estimator_params(declared, training.get("params") or {}, 0))
    except (EstimatorError, TypeError, ValueError) as exc:
        problems.append(f"ops.{model.op('trained_model')}.config.params: {exc}")
    gates = (ops.get(model.op("evaluation")) or {}).get("config", {}).get("gates") or {}
    try:
        gates_for(model.model.evaluation, gates, str(model.path))
    except GateConfigError as exc:
        problems.append(f"ops.{model.op('evaluation')}.config.gates: {exc}")
    return problems


def validate_run_config(run_config: Mapping[str, Any], model: LoadedDeclaration) -> None:
    """Every stage's config, and the overrides that only the declaration can judge (estimator
    parameters, gate names), before anything is written."""
    problems: list[str] = []
    ops = run_config.get("ops") or {}
    for stage, cls in _config_classes().items():
        op = model.op(stage)
        values = (ops.get(op) or {}).get("config") or {}
        try:
            cls(**values)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                problems.append(f"ops.{op}.config.{field} = {error.get('input')!r}: {error['msg']}")
    problems += _declared_overrides(ops, model)
    if problems:
        raise ConfigurationError(
            f"Invalid run configuration ({len(problems)} problem(s)); nothing was materialized: "
            + "; ".join(problems)
        )
