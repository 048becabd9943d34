"""Assemble a deployment package: every file production needs, and a manifest of their digests."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.fingerprint import predict_proba
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.records import EvaluationReport, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.package import runtime
from lifecycle_pipeline.resources.codecs import dump_model

FORMAT = "lifecycle-package/1"
PACKAGE_KIND = "deployment_package"
ENTRY_POINT = "predict.py"


class PackageBuildError(LifecycleError, RuntimeError):
    """A package cannot be assembled from what the pipeline recorded."""


@dataclass(frozen=True)
class PackageInputs:
    partition: str
    model: TrainedModel
    features: FeatureSet
    evaluation: EvaluationReport
    documentation: FileTree
    lock: bytes
    range_tolerance: float
    public_key_id: str


def input_schema(features: FeatureSet, tolerance: float) -> dict[str, Any]:
    """Columns with dtypes and the allowed range: the training range widened by ``tolerance``."""
    train = features.train[list(features.feature_columns)]
    columns = []
    for name in features.feature_columns:
        low, high = float(train[name].min()), float(train[name].max())
        margin = tolerance * (high - low)
        columns.append(
            {
                "name": name,
                "dtype": "float64",
                "train_min": low,
                "train_max": high,
                "allowed_min": low - margin,
                "allowed_max": high + margin,
            }
        )
    return {"columns": columns, "range_tolerance": tolerance, "row_key": "input row order"}


def output_schema(threshold: float) -> dict[str, Any]:
    return {
        "columns": [
            {"name": "probability", "dtype": "float64", "meaning": "P(malignant)"},
            {"name": "label", "dtype": "int64", "meaning": "1 = malignant, 0 = benign"},
        ],
        "threshold": threshold,
        "positive_class": "malignant",
    }


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")


def build_files(inputs: PackageInputs) -> dict[str, bytes]:
    """Every package file except the signature, manifest last (it lists the others)."""
    documentation = inputs.documentation.files
    missing_docs = [n for n in ("model_card.md", "documentation.html") if n not in documentation]
    if missing_docs:
        raise PackageBuildError(f"The documentation bundle lacks {missing_docs}; cannot package.")
    golden = inputs.model.golden_inputs
    golden_proba = predict_proba(inputs.model.pipeline, golden)
    files = {
        "model.skops": dump_model(inputs.model.pipeline),
        "input_schema.json": _json(input_schema(inputs.features, inputs.range_tolerance)),
        "output_schema.json": _json(output_schema(inputs.evaluation.decision_threshold)),
        "golden_inputs.parquet": _parquet(golden),
        "golden_outputs.parquet": _parquet(
            pd.DataFrame({"probability": golden_proba[:, 1].astype("float64")})
        ),
        "uv.lock": inputs.lock,
        "model_card.md": documentation["model_card.md"],
        "documentation.html": documentation["documentation.html"],
        ENTRY_POINT: Path(runtime.__file__).read_bytes(),
    }
    lineage = inputs.model.lineage
    manifest = {
        "format": FORMAT,
        "partition": inputs.partition,
        "model": {
            "fingerprint": inputs.model.fingerprint.combined,
            "state_digest": inputs.model.fingerprint.state,
            "estimator": type(inputs.model.pipeline[-1]).__name__,
        },
        "lineage": {
            "data_md5": lineage["data_md5"],
            "code": lineage["code"],
            "config_hash": lineage["config_hash"],
            "fingerprint": lineage["fingerprint"],
        },
        "environment": {"lock_sha256": sha256_bytes(inputs.lock)},
        "golden": {
            "rows": len(golden),
            "prediction_digest": inputs.model.fingerprint.predictions,
        },
        "evaluation": {
            "metrics": inputs.evaluation.metrics,
            "gates": [g.to_dict() for g in inputs.evaluation.gates],
            "decision_threshold": inputs.evaluation.decision_threshold,
        },
        "signing": {
            "scheme": "model-signing (OpenSSF), elliptic-curve key",
            "public_key_id": inputs.public_key_id,
        },
        "entry_point": f"python {ENTRY_POINT} INPUT OUTPUT",
        "files": {name: sha256_bytes(data) for name, data in sorted(files.items())},
    }
    return {**files, "manifest.json": _json(manifest)}


def write_folder(files: dict[str, bytes], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
