"""The physical limit: the lifecycle's computations called as plain functions, in order.

No Dagster run, no DVC read, no IO manager, no lineage bookkeeping: the frame is already in
memory, and each stage hands its Python value straight to the next. The functions are the
ones the assets call (``contract.validate``, ``features.split``, ``training.fit``,
``fingerprint``, ``evaluation.evaluate``, the documentation builders, ``package.build`` with
signing, verification and the out-of-process parity check), so the difference to a Dagster
materialization of the same data is what orchestration, persistence and lineage cost.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pandas as pd

from lifecycle_pipeline.declaration import LoadedDeclaration, load_declaration
from lifecycle_pipeline.lineage.records import (
    DataSnapshot,
    EvaluationReport,
    FeatureSet,
    FileTree,
    ResolvedVersion,
    TrainedModel,
)

STAGES = ("data_snapshot", "features", "trained_model", "evaluation", "model_card", "package")
T = TypeVar("T")

# The benchmarks measure the sample model, declared like any other.
SAMPLE_MODEL = load_declaration(Path(__file__).resolve().parents[1] / "models" / "breast_cancer")


@dataclass(frozen=True)
class TrainingSettings:
    """The bounded training both sides use (recorded in the results)."""

    n_estimators: int = 10
    max_depth: int = 8

    def run_config(self) -> dict[str, Any]:
        """The same settings as Dagster run config for the sample model's ``trained_model`` op
        (``breast_cancer__trained_model``)."""
        config = {"n_estimators": self.n_estimators, "max_depth": self.max_depth}
        return {"ops": {SAMPLE_MODEL.op("trained_model"): {"config": {"params": config}}}}


@dataclass
class StageClock:
    """Wall time per stage, in the order the stages ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    def time(self, stage: str, work: Callable[[], T]) -> T:
        started = time.perf_counter()
        value = work()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
        return value


def snapshot(frame: pd.DataFrame, md5: str) -> DataSnapshot:
    from lifecycle_pipeline import contract

    version = ResolvedVersion("bench", "in-memory", "data.csv", "0" * 40, md5, 0)
    clean = contract.validate(
        frame, SAMPLE_MODEL.model.contract, source="bench", declaration=str(SAMPLE_MODEL.path)
    )
    return DataSnapshot(frame=clean, version=version)


def features(data: DataSnapshot) -> FeatureSet:
    from lifecycle_pipeline.assets.features import FeaturesConfig, split

    return split(data, FeaturesConfig(), SAMPLE_MODEL.model.contract)


def train(feature_set: FeatureSet, settings: TrainingSettings) -> TrainedModel:
    from lifecycle_pipeline.assets.training import TrainingConfig, fit, golden_inputs
    from lifecycle_pipeline.lineage.fingerprint import fingerprint

    config = TrainingConfig(
        params={"n_estimators": settings.n_estimators, "max_depth": settings.max_depth}
    )
    pipeline, _ = fit(feature_set, config, SAMPLE_MODEL.model)
    golden = golden_inputs(feature_set, config.golden_rows)
    model_fingerprint = fingerprint(pipeline, golden)
    lineage = {
        "data_md5": feature_set.data_md5,
        "code": {"commit": "plain", "dirty": False, "lock_hash": "", "source_digest": ""},
        "config_hash": "",
        "declaration": {"name": SAMPLE_MODEL.name, "sha256": SAMPLE_MODEL.sha256},
        "estimator": {
            "class": SAMPLE_MODEL.model.estimator.class_,
            "trusted_types": list(SAMPLE_MODEL.model.estimator.trusted_types),
        },
        "fingerprint": model_fingerprint.to_dict(),
    }
    return TrainedModel(pipeline, golden, model_fingerprint, lineage)


def evaluate(model: TrainedModel, feature_set: FeatureSet) -> EvaluationReport:
    from lifecycle_pipeline.assets.evaluation import evaluate as evaluate_model
    from lifecycle_pipeline.gates import gates_for

    declared = SAMPLE_MODEL.model
    gates = gates_for(declared.evaluation, {}, str(SAMPLE_MODEL.path))
    return evaluate_model(model, feature_set, declared, gates)


def _materialization(asset: str, metadata: dict[str, Any]) -> Any:
    from lifecycle_pipeline.lineage.trace import Materialization

    return Materialization(asset, "bench", "plain", 0, time.time(), metadata)


def documentation(
    data: DataSnapshot,
    feature_set: FeatureSet,
    model: TrainedModel,
    report: EvaluationReport,
    settings: TrainingSettings,
    declared: LoadedDeclaration = SAMPLE_MODEL,
) -> FileTree:
    """The three documents from the values in hand (what the asset reads back from lineage),
    worded from ``declared``, as the asset words them from its declaration."""
    from lifecycle_pipeline.assets.documentation import (
        BUNDLE_KIND,
        ModelCardConfig,
        bundle_files,
        documents_for,
    )
    from lifecycle_pipeline.documentation.bundle import Lineage, changes_since
    from lifecycle_pipeline.documentation.spec import load_spec

    contract = declared.model.contract
    spec = load_spec(*ModelCardConfig().resolved_spec_path(declared))
    frame = data.frame
    slices = SimpleNamespace(
        records=[SimpleNamespace(data={"slice": k, **v}) for k, v in report.slices.items()]
    )
    counts = (
        {str(k): int(v) for k, v in frame[contract.target].value_counts().sort_index().items()}
        if contract.classes
        else None
    )
    lineage = Lineage(
        snapshot=_materialization(
            "data_snapshot",
            {
                "dvc/md5": data.version.md5,
                "dagster/row_count": len(frame),
                **({"class_counts": counts} if counts is not None else {}),
                "null_counts": {str(c): int(n) for c, n in frame.isna().sum().items()},
            },
        ),
        features=_materialization(
            "features",
            {
                "feature_columns": list(feature_set.feature_columns),
                "train/rows": len(feature_set.train),
                "test/rows": len(feature_set.test),
            },
        ),
        model=_materialization(
            "trained_model",
            {
                "model/fingerprint": model.fingerprint.combined,
                "estimator": repr(model.pipeline),
                "hyperparameters": {"estimator": declared.model.estimator.class_, **vars(settings)},
                "declaration/sha256": declared.sha256,
            },
        ),
        evaluation=_materialization(
            "evaluation",
            {
                **{f"metric/{k}": v for k, v in report.metrics.items() if v is not None},
                "slices": slices,
                "slice_factor": ", ".join(s.title for s in declared.model.evaluation.slices),
                "task": contract.task,
                "gates": [g.to_dict() for g in report.gates],
                **(
                    {"decision_threshold": report.decision_threshold}
                    if report.decision_threshold is not None
                    else {}
                ),
            },
        ),
    )
    documents = documents_for(lineage, spec, changes_since(lineage, None, None), declared)
    files = bundle_files(documents, "bench", spec, {}, declared)
    return FileTree(kind=BUNDLE_KIND, files=files, entry="documentation.html")


def package(
    feature_set: FeatureSet, model: TrainedModel, report: EvaluationReport, docs: FileTree
) -> dict[str, bytes]:
    """Build, sign, verify and parity-check the package of the sample model, as the asset
    does (lock included). The model's lineage must name that declaration, as training's does."""
    from lifecycle_pipeline.assets.packaging import ParityInterpreter, parity
    from lifecycle_pipeline.package import build as build_module
    from lifecycle_pipeline.package.verify import verify_package
    from lifecycle_pipeline.resources.signing import PackageSigner, public_key_id
    from lifecycle_pipeline.settings import Settings

    signer = PackageSigner()
    _, public = signer.key_pair()
    inputs = build_module.PackageInputs(
        partition="bench",
        declaration=SAMPLE_MODEL,
        model=model,
        features=feature_set,
        evaluation=report,
        documentation=docs,
        lock=(Settings.from_env().project_root / "uv.lock").read_bytes(),
        public_key_id=public_key_id(public),
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-package-") as scratch,
        ParityInterpreter(Path(scratch)) as interpreter,  # started first, as the asset does
    ):
        folder = Path(scratch) / "package"
        build_module.write_folder(build_module.build_files(inputs), folder)
        signer.sign(folder)
        verified = verify_package(folder, public)
        checked = parity(folder, feature_set, report, Path(scratch), interpreter)
        if not (verified.ok and checked.passed):
            raise RuntimeError(f"plain package failed: {verified.render()} {checked.description}")
        return build_module.read_folder(folder)


def lifecycle(
    frame: pd.DataFrame, md5: str, settings: TrainingSettings, clock: StageClock
) -> dict[str, Any]:
    """Run every stage on ``frame``; return what identifies the result (for cross-checks)."""
    data = clock.time("data_snapshot", lambda: snapshot(frame, md5))
    feature_set = clock.time("features", lambda: features(data))
    model = clock.time("trained_model", lambda: train(feature_set, settings))
    report = clock.time("evaluation", lambda: evaluate(model, feature_set))
    docs = clock.time(
        "model_card", lambda: documentation(data, feature_set, model, report, settings)
    )
    files = clock.time("package", lambda: package(feature_set, model, report, docs))
    return {
        "fingerprint": model.fingerprint.combined,
        "metrics": report.metrics,
        "package_files": len(files),
    }


def warm_imports() -> None:
    """Import every module the stages use, so the clock measures computation, not imports.

    The Dagster side imports them all when it loads the definitions, before its clock starts.
    """
    import model_signing.signing  # noqa: F401
    import sklearn.ensemble
    import sklearn.metrics
    import sklearn.model_selection  # noqa: F401
    import skops.io  # noqa: F401

    import lifecycle_pipeline.assets.documentation
    import lifecycle_pipeline.assets.evaluation
    import lifecycle_pipeline.assets.features
    import lifecycle_pipeline.assets.packaging
    import lifecycle_pipeline.assets.training
    import lifecycle_pipeline.documentation.render
    import lifecycle_pipeline.package.verify  # noqa: F401
