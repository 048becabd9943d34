"""`lifecycle drift calibrate`: drift thresholds measured at the team's batch size.

The reference is the one the drift monitor would use: a materialized data version's training
split and model (``--version``, default the newest with a trained model, as the monitor
chooses), or, before anything is materialized, a local data file (``--data``) split and fitted
exactly as the ``features`` and ``trained_model`` stages would with their default
configuration. Calm batches come from the held-out split (see ``monitoring.calibration``).
The proposal is printed as YAML to paste into the declaration, never written into it: a
declaration is the team's reviewed file, comments included.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lifecycle_pipeline.errors import ExitCode, LifecycleError

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd

    from lifecycle_pipeline.declaration import Drift, LoadedDeclaration
    from lifecycle_pipeline.monitoring.calibration import Calibration, CalmScores
    from lifecycle_pipeline.resources.artifact_store import ArtifactStore
    from lifecycle_pipeline.resources.registry import DataRegistry


class CalibrateError(LifecycleError, ValueError):
    """The calibration was asked for without what it needs (a batch size, a target rate)."""


@dataclass(frozen=True)
class CalibrationInputs:
    """The monitor's reference (training split and its model) and the held-out calm rows."""

    reference: pd.DataFrame
    pool: pd.DataFrame
    estimator: Any
    description: str


def inputs_from_data(declaration: LoadedDeclaration, path: Path) -> CalibrationInputs:
    """A local data file, validated against the contract, split and fitted as the lifecycle's
    ``features`` and ``trained_model`` stages do with their default configuration."""
    from lifecycle_pipeline.assets.features import FeaturesConfig, split
    from lifecycle_pipeline.assets.training import TrainingConfig, fit
    from lifecycle_pipeline.contract import read_local, validate
    from lifecycle_pipeline.lineage.records import DataSnapshot, ResolvedVersion

    model = declaration.model
    raw = path.read_bytes()
    frame = validate(
        read_local(path, model.data.format, model.contract, model.data.missing),
        model.contract,
        source=str(path),
        declaration=str(declaration.path),
    )
    md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    version = ResolvedVersion(
        key="local", registry=str(path), path=str(path), commit="", md5=md5, size=len(raw)
    )
    features = split(DataSnapshot(frame=frame, version=version), FeaturesConfig(), model.contract)
    pipeline, _ = fit(features, TrainingConfig(), model)
    return CalibrationInputs(
        reference=features.train,
        pool=features.test,
        estimator=pipeline,
        description=(
            f"{path.name} (md5 {md5[:12]}), split and fitted as the lifecycle does by default: "
            f"reference its training split ({len(features.train)} rows), calm batches "
            f"resampled from its held-out split ({len(features.test)} rows)"
        ),
    )


def inputs_from_instance(
    instance: dg.DagsterInstance,
    store: ArtifactStore,
    declaration: LoadedDeclaration,
    registry: DataRegistry,
    version: str | None,
) -> CalibrationInputs:
    """A materialized data version's training split and model, chosen and loaded as
    ``drift_monitor`` does (``version`` None: the newest data version with a trained model)."""
    from lifecycle_pipeline.assets.monitoring import load_stage, reference_version

    chosen = reference_version(instance, declaration, registry, version)
    features, _ = load_stage(instance, store, declaration.key("features"), chosen)
    trained, _ = load_stage(instance, store, declaration.key("trained_model"), chosen)
    return CalibrationInputs(
        reference=features.train,
        pool=features.test,
        estimator=trained.pipeline,
        description=(
            f"{chosen}: reference its training split ({len(features.train)} rows), calm "
            f"batches resampled from its held-out split ({len(features.test)} rows)"
        ),
    )


def inputs_from_version(declaration: LoadedDeclaration, version: str | None) -> CalibrationInputs:
    """``inputs_from_instance`` on this process's instance, artifact store and registry."""
    import dagster as dg

    from lifecycle_pipeline.demo import prepare_environment
    from lifecycle_pipeline.resources.artifact_store import ArtifactStore
    from lifecycle_pipeline.resources.registry import DataRegistry
    from lifecycle_pipeline.settings import Settings

    prepare_environment(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        registry = DataRegistry.for_model(declaration)
        return inputs_from_instance(instance, ArtifactStore(), declaration, registry, version)


def measure(
    declaration: LoadedDeclaration,
    inputs: CalibrationInputs,
    *,
    batch_size: int,
    draws: int,
    seed: int,
    settings: Drift | None = None,
) -> CalmScores:
    """Calm batches of ``batch_size`` scored by the declared tests (or ``settings``')."""
    from lifecycle_pipeline.monitoring.calibration import calm_scores

    return calm_scores(
        inputs.reference,
        inputs.pool,
        declaration.model,
        inputs.estimator,
        settings or declaration.model.drift,
        batch_size=batch_size,
        draws=draws,
        seed=seed,
    )


SHIFT_BATCHES = 20
WEAK_DETECTION = 0.8


def with_methods(drift: Drift, methods: dict[str, str | None]) -> Drift:
    """``drift`` with other tests (``--numeric``, ...) to calibrate; their thresholds are
    placeholders until calibrated. A test that does not apply to its kind is refused."""
    from lifecycle_pipeline.monitoring.drift import check_applies

    values = drift.model_dump()
    for kind, method in methods.items():
        if method is None:
            continue
        if kind != "prediction":  # the output's kind is the task's; the scorer checks it
            check_applies(method, kind, f"--{kind}")  # type: ignore[arg-type]
        values[kind] = {"method": method, "threshold": 0.5}
    return type(drift).model_validate(values)


def _rate(value: float) -> str:
    return f"{value:.3f}"


def proposal_text(declaration: LoadedDeclaration, result: Calibration, description: str) -> str:
    """The YAML to paste under the declaration's ``drift:``, with the measured rates beside it
    (as comments) for the thresholds declared now and for the proposed ones."""
    calm = result.calm
    # Declared tests other than those calibrated (--numeric ...) cannot be judged on these draws.
    declared = (
        calm.rates(declaration.model.drift) if calm.scored_with(declaration.model.drift) else None
    )
    proposed = result.rates
    lines = [
        f"# {declaration.name}: {calm.draws} calm batches of {calm.batch_size} rows "
        f"(seed {calm.seed}) from {description}.",
        f"# Target: at most {result.false_alarm_rate:g} of calm batches raise the verdict "
        f"(drift when {result.min_drifted} or more of {calm.features} features drift).",
        "# False-alarm rate on these calm batches   declared now   proposed",
        f"#   batch verdict                         "
        f"{_rate(declared.verdict) if declared else 'other test':>12}"
        f"   {_rate(proposed.verdict):>8}",
    ]
    for kind in proposed.per_kind:
        lines.append(
            f"#   one {kind} column{' ' * (29 - len(kind))}"
            f"{_rate(declared.per_kind[kind]) if declared else 'other test':>12}"
            f"   {_rate(proposed.per_kind[kind]):>8}"
        )
    if result.detected:
        weakest = min(result.detected, key=result.detected.__getitem__)
        caught = result.detected[weakest]
        lines.append(
            f"# One numeric feature moved by 1 SD: flagged in {_rate(caught)} of "
            f"{result.shift_batches} held-out batches for the weakest ({weakest}), "
            f"{_rate(statistics.median(result.detected.values()))} for the median."
        )
        if caught < WEAK_DETECTION:
            method = result.thresholds["numeric"][0]
            lines.append(
                f"# At {calm.batch_size} rows, {method} misses such shifts: compare another "
                "test, e.g. --numeric wasserstein or --numeric ks, and keep the one that "
                "catches more at the same false-alarm rate."
            )
    lines.append(
        "# Paste these keys under `drift:` in "
        f"{declaration.path} (methods and other keys unchanged):"
    )
    body = yaml.safe_dump({"drift": result.declaration(description)}, sort_keys=False, width=100)
    return "\n".join(lines) + "\n" + body


def _calibrate(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.declaration import current_declaration
    from lifecycle_pipeline.monitoring.calibration import (
        BatchScorer,
        calibrate,
        check_request,
        shift_detection,
    )

    declaration = current_declaration()
    drift = declaration.model.drift
    batch_size = drift.batch_size if args.batch_size is None else args.batch_size
    rate = drift.false_alarm_rate if args.false_alarm_rate is None else args.false_alarm_rate
    if batch_size is None or rate is None:
        missing = [
            f"{option} (or drift.{key} in {declaration.path})"
            for option, key, value in (
                ("--batch-size", "batch_size", batch_size),
                ("--false-alarm-rate", "false_alarm_rate", rate),
            )
            if value is None
        ]
        raise CalibrateError(
            "calibration needs the batch size production sends and the false-alarm rate the "
            f"team accepts: give {' and '.join(missing)}."
        )
    check_request(batch_size, rate, args.draws)
    inputs = (
        inputs_from_data(declaration, Path(args.data))
        if args.data
        else inputs_from_version(declaration, args.version)
    )
    settings = with_methods(
        drift,
        {"numeric": args.numeric, "categorical": args.categorical, "prediction": args.prediction},
    )
    scorer = BatchScorer(inputs.reference, declaration.model, inputs.estimator, settings)
    calm = scorer.calm(inputs.pool, batch_size=batch_size, draws=args.draws, seed=args.seed)
    result = calibrate(calm, settings, false_alarm_rate=rate, min_drifted=args.min_drifted)
    if any(t.kind == "numeric" for t in calm.tests[: calm.features]):
        detected = shift_detection(
            scorer,
            inputs.pool,
            result.settings,
            batch_size=batch_size,
            batches=SHIFT_BATCHES,
            seed=args.seed + 1,
        )
        result = result.with_detection(detected, SHIFT_BATCHES)
    print(proposal_text(declaration, result, inputs.description), end="")
    return ExitCode.OK


def register(drift: argparse.ArgumentParser) -> None:
    """``calibrate`` as an action of ``lifecycle drift``, beside its ``--batch`` check."""
    from lifecycle_pipeline.monitoring.calibration import DEFAULT_DRAWS, DEFAULT_SEED

    actions = drift.add_subparsers(dest="action", metavar="{calibrate}")
    calibrate = actions.add_parser(
        "calibrate",
        prog="lifecycle [--model NAME] drift calibrate",
        help="Propose drift thresholds for the team's batch size and false-alarm rate.",
        description="Draw calm batches of the declared batch size from a reference's held-out "
        "rows, score them with the declared tests as the monitor does, and print thresholds "
        "(and the calibration record) to paste under `drift:`.",
    )
    source = calibrate.add_mutually_exclusive_group()
    source.add_argument(
        "--version", help="reference data version (default: newest with a trained model)"
    )
    source.add_argument(
        "--data", help="a local data file instead (before any data version is materialized)"
    )
    calibrate.add_argument(
        "--batch-size", type=int, help="rows per production batch (default: drift.batch_size)"
    )
    calibrate.add_argument(
        "--false-alarm-rate",
        type=float,
        help="share of calm batches that may be flagged (default: drift.false_alarm_rate)",
    )
    calibrate.add_argument(
        "--draws", type=int, default=DEFAULT_DRAWS, help=f"calm batches (default {DEFAULT_DRAWS})"
    )
    calibrate.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of the draws (default {DEFAULT_SEED})"
    )
    calibrate.add_argument(
        "--min-drifted",
        type=int,
        default=1,
        help="drifted features that make a batch drift (default 1: one shifted feature alarms)",
    )
    for kind, examples in (
        ("numeric", "wasserstein, ks"),
        ("categorical", "psi, chisquare"),
        ("prediction", "ks, wasserstein"),
    ):
        calibrate.add_argument(
            f"--{kind}",
            metavar="METHOD",
            help=f"calibrate another test than drift.{kind}'s (e.g. {examples})",
        )
    calibrate.set_defaults(handler=_calibrate)
