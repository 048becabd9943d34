"""The lifecycle's stages as DVC stage scripts: read input files, compute, write output files.

Each stage calls the same plain functions as the in-memory baseline (``bench/plain.py``);
what differs is only that every stage is its own process and hands its result on through
files, which is how a DVC pipeline works.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from bench import plain
from lifecycle_pipeline.contract import parse_csv
from lifecycle_pipeline.lineage.fingerprint import ModelFingerprint
from lifecycle_pipeline.lineage.records import (
    DataSnapshot,
    EvaluationReport,
    FeatureSet,
    FileTree,
    GateVerdict,
    ResolvedVersion,
    TrainedModel,
)
from lifecycle_pipeline.resources.codecs import dump_model, load_model
from lifecycle_pipeline.sample_data import BREAST_CANCER_FEATURES as FEATURES
from lifecycle_pipeline.sample_data import BREAST_CANCER_TARGET as TARGET

OUT = Path("out")
INPUT = Path("data/input.csv")


def _settings() -> plain.TrainingSettings:
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))["train"]
    return plain.TrainingSettings(**params)


def _snapshot() -> DataSnapshot:
    version = ResolvedVersion("bench", "dvc", str(INPUT), "0" * 40, "", 0)
    return DataSnapshot(pd.read_parquet(OUT / "snapshot.parquet"), version)


def _features() -> FeatureSet:
    return FeatureSet(
        train=pd.read_parquet(OUT / "train.parquet"),
        test=pd.read_parquet(OUT / "test.parquet"),
        feature_columns=FEATURES,
        target=TARGET,
        seed=0,
        test_size=0.25,
        data_md5="",
    )


def _model() -> TrainedModel:
    printed = json.loads((OUT / "fingerprint.json").read_text(encoding="utf-8"))
    return TrainedModel(
        pipeline=load_model((OUT / "model.skops").read_bytes(), source="out/model.skops"),
        golden_inputs=pd.read_parquet(OUT / "golden.parquet"),
        fingerprint=ModelFingerprint.from_dict(printed["fingerprint"]),
        lineage=printed,
    )


def _evaluation() -> EvaluationReport:
    raw = json.loads((OUT / "evaluation.json").read_text(encoding="utf-8"))
    return EvaluationReport(
        metrics=raw["metrics"],
        slices=raw["slices"],
        gates=tuple(GateVerdict.from_dict(g) for g in raw["gates"]),
        predictions=pd.read_parquet(OUT / "predictions.parquet"),
        model_fingerprint=raw["model_fingerprint"],
        decision_threshold=raw["decision_threshold"],
    )


def _write_tree(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def data_snapshot() -> None:
    frame = parse_csv(INPUT.read_bytes(), source=str(INPUT))
    plain.snapshot(frame, "").frame.to_parquet(OUT / "snapshot.parquet", index=False)


def features() -> None:
    split = plain.features(_snapshot())
    split.train.to_parquet(OUT / "train.parquet", index=False)
    split.test.to_parquet(OUT / "test.parquet", index=False)


def trained_model() -> None:
    model = plain.train(_features(), _settings())
    (OUT / "model.skops").write_bytes(dump_model(model.pipeline))
    model.golden_inputs.to_parquet(OUT / "golden.parquet", index=False)
    (OUT / "fingerprint.json").write_text(json.dumps(model.lineage), encoding="utf-8")


def evaluation() -> None:
    report = plain.evaluate(_model(), _features())
    record = {
        "metrics": report.metrics,
        "slices": report.slices,
        "gates": [g.to_dict() for g in report.gates],
        "model_fingerprint": report.model_fingerprint,
        "decision_threshold": report.decision_threshold,
    }
    (OUT / "evaluation.json").write_text(json.dumps(record), encoding="utf-8")
    report.predictions.to_parquet(OUT / "predictions.parquet", index=False)


def model_card() -> None:
    docs = plain.documentation(_snapshot(), _features(), _model(), _evaluation(), _settings())
    _write_tree(OUT / "docs", docs.files)


def deployment_package() -> None:
    folder = OUT / "docs"
    docs = FileTree("documentation_bundle", {p.name: p.read_bytes() for p in folder.iterdir()})
    _write_tree(OUT / "package", plain.package(_features(), _model(), _evaluation(), docs))


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    {
        "data_snapshot": data_snapshot,
        "features": features,
        "trained_model": trained_model,
        "evaluation": evaluation,
        "model_card": model_card,
        "deployment_package": deployment_package,
    }[sys.argv[1]]()
