"""The blocking metric gates of a declared model: the thresholds a run applies, and the
verdict of each on the held-out metrics.

Apart from the evaluation asset so that run-config validation (``preflight``) resolves gates
without importing the asset's scoring modules, and so that the gate logic is one small unit
(``make mutate`` mutates it whole). The verdict itself (a gate passes at exactly its
threshold) is ``GateVerdict`` in ``lineage/records.py``.
"""

from __future__ import annotations

import re
from typing import Any

from lifecycle_pipeline.declaration import Evaluation
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.records import GateVerdict


class GateConfigError(LifecycleError, ValueError):
    """A run asks to override a gate the declaration does not have, or a gate cannot be
    judged."""


def gate_check_name(metric: str) -> str:
    """A Dagster check name for a gate on ``metric`` (names allow letters, digits and '_')."""
    return "gate_" + re.sub(r"[^A-Za-z0-9_]", "_", metric)


def gates_for(declared: Evaluation, overrides: dict[str, float], source: str) -> dict[str, Any]:
    """metric -> (comparison, threshold): the declared gates, with the run's overrides of
    their thresholds; an override of a gate ``source`` does not declare is refused."""
    unknown = sorted(set(overrides) - set(declared.gates))
    if unknown:
        raise GateConfigError(
            f"{unknown} are not gated in {source}; declared gates: "
            f"{', '.join(declared.gates) or 'none'}. Add a gate to the declaration instead."
        )
    return {
        metric: (gate.comparison, float(overrides.get(metric, gate.threshold)))
        for metric, gate in declared.gates.items()
    }


def judge(gates: dict[str, Any], metrics: dict[str, Any]) -> tuple[GateVerdict, ...]:
    """One verdict per gate on the held-out ``metrics``; a gated metric the split leaves
    undefined is refused, never judged as passed or failed."""
    verdicts = []
    for metric, (comparison, threshold) in gates.items():
        value = metrics[metric]
        if value is None:
            raise GateConfigError(
                f"Gate on {metric!r} cannot be judged: the metric is undefined on the held-out "
                "split (e.g. a class absent from it). Use more data or another gate."
            )
        verdicts.append(
            GateVerdict(gate_check_name(metric), metric, float(value), threshold, comparison)
        )
    return tuple(verdicts)
