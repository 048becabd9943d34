"""Assemble a deployment package: every file production needs, and a manifest of their digests.

Everything domain-specific in the package (feature names, types, domains, class names, the
task's output columns, the out-of-range policy) comes from the model's declaration and what
training recorded, never from this module.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lifecycle_pipeline.contract import PANDAS_DTYPE
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.fingerprint import prediction_digest
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.records import EvaluationReport, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.package import environment, readme, runtime
from lifecycle_pipeline.resources.codecs import trusted_types
from lifecycle_pipeline.tasks import task_for

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import LoadedDeclaration

# 2: schemas from the declaration, per-task outputs, trusted types in the manifest.
# 3: requirements.txt (the runtime's pins from uv.lock, hashed), README.md, the Python and
#    platform in the manifest, predict.py --verify; input_schema.json carries the reading
#    rule for missing values (missing_values).
FORMAT = "lifecycle-package/3"
PACKAGE_KIND = "deployment_package"
ENTRY_POINT = "predict.py"
ENTRY_USAGE = f"python {ENTRY_POINT} INPUT OUTPUT [--out-of-range flag|reject]"
ROW_KEY = "input row order"


class PackageBuildError(LifecycleError, RuntimeError):
    """A package cannot be assembled from what the pipeline recorded."""


@dataclass(frozen=True)
class PackageInputs:
    partition: str
    declaration: LoadedDeclaration
    model: TrainedModel
    features: FeatureSet
    evaluation: EvaluationReport
    documentation: FileTree
    lock: bytes
    public_key_id: str


def _plain(value: Any) -> Any:
    """A JSON-ready Python scalar (numpy scalars are not serializable)."""
    return value.item() if isinstance(value, np.generic) else value


def input_schema(features: FeatureSet, model: LoadedDeclaration) -> dict[str, Any]:
    """Per feature: the declared type, nullability, domain and categories, and what training saw.

    The declared domain is what production refuses; the training range (numbers) and the
    training categories are what production flags or, under the 'reject' policy, refuses:
    the model has no evidence there, though the value is possible.
    """
    contract = model.model.contract
    if tuple(features.feature_columns) != contract.feature_names:
        raise PackageBuildError(
            f"features holds columns {list(features.feature_columns)}, but {model.path} declares "
            f"{list(contract.feature_names)}; re-run features and training for this declaration."
        )
    train = features.train
    columns = []
    for name, feature in contract.features.items():
        low, high = feature.range if feature.range is not None else (None, None)
        entry: dict[str, Any] = {
            "name": name,
            "type": feature.type,
            "dtype": PANDAS_DTYPE[feature.type],
            "nullable": feature.nullable,
            "domain_min": low,
            "domain_max": high,
            "categories": list(feature.categories) if feature.categories is not None else None,
            "unit": feature.unit,
            "description": feature.description,
        }
        values = train[name].dropna()
        if feature.type in ("numeric", "integer"):
            entry["train_min"] = _plain(values.min()) if len(values) else None
            entry["train_max"] = _plain(values.max()) if len(values) else None
        elif feature.type == "categorical":
            entry["train_categories"] = sorted({str(v) for v in values.unique()})
            # The encoder learns a gap as a category only if training had one.
            entry["train_missing"] = bool(train[name].isna().any())
        columns.append(entry)
    return {
        "columns": columns,
        # predict.py reads a field as missing exactly when training's reader did.
        **model.model.data.missing.to_schema(),
        "row": contract.row,
        "row_key": ROW_KEY,
        "out_of_range": model.model.out_of_range,
        "unseen_categories": model.model.estimator.unseen_categories,
    }


def output_schema(classes: list[Any], model: LoadedDeclaration) -> dict[str, Any]:
    """The task's output columns (its own wording from the declaration) plus the range flag."""
    declared = model.model
    schema = task_for(declared.contract.task).output_schema(
        [_plain(c) for c in classes], declared.contract, declared.evaluation
    )
    flag = {
        "name": runtime.FLAG_COLUMN,
        "dtype": "int64",
        "meaning": "how many of the row's features lie outside the range seen in training or "
        "hold a category not seen in training (0: none). Such rows are scored and counted "
        "under the 'flag' out-of-range policy and refused under 'reject'; this package's "
        f"declared policy is {declared.out_of_range!r}. Values outside a feature's declared "
        "domain are always refused.",
    }
    return {**schema, "columns": [*schema["columns"], flag], "row_key": ROW_KEY}


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")


def differing_columns(left: pd.DataFrame, right: pd.DataFrame) -> list[str]:
    """Columns whose values differ (floats compared bit for bit); [] when identical."""
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return [f"columns {list(left.columns)} x {len(left)} rows vs "
                f"{list(right.columns)} x {len(right)} rows"]  # fmt: skip
    differing = []
    for name in left.columns:
        a, b = left[name].to_numpy(), right[name].to_numpy()
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            same = (
                a.dtype.kind == b.dtype.kind
                and np.ascontiguousarray(a, "<f8").tobytes()
                == np.ascontiguousarray(b, "<f8").tobytes()
            )
        else:
            same = a.tolist() == b.tolist()
        if not same:
            differing.append(str(name))
    return differing


def _check_declaration(inputs: PackageInputs) -> None:
    """The model must have been trained under the declaration whose contract is packaged."""
    recorded = inputs.model.lineage.get("declaration") or {}
    model = inputs.declaration
    if not recorded.get("sha256"):
        raise PackageBuildError(
            "trained_model's lineage names no model declaration (trained before declarations "
            f"existed, or by code that records none); re-run training with {model.path} before "
            "packaging."
        )
    if recorded["sha256"] != model.sha256:
        raise PackageBuildError(
            f"trained_model was trained under declaration {recorded.get('name')!r} "
            f"(sha256 {str(recorded.get('sha256'))[:16]}), but {model.path} is now sha256 "
            f"{model.sha256[:16]}; re-run training and evaluation with this declaration "
            "before packaging."
        )


def build_files(inputs: PackageInputs) -> dict[str, bytes]:
    """Every package file except the signature, manifest last (it lists the others)."""
    documentation = inputs.documentation.files
    missing_docs = [n for n in ("model_card.md", "documentation.html") if n not in documentation]
    if missing_docs:
        raise PackageBuildError(f"The documentation bundle lacks {missing_docs}; cannot package.")
    _check_declaration(inputs)
    declared = inputs.declaration.model
    task = task_for(declared.contract.task)
    pipeline = inputs.model.pipeline
    classes = list(getattr(pipeline, "classes_", []))
    golden = inputs.model.golden_inputs
    raw = task.raw_outputs(pipeline, golden)
    if prediction_digest(raw) != inputs.model.fingerprint.predictions:
        raise PackageBuildError(
            "The trained model no longer reproduces its recorded prediction digest on its golden "
            f"inputs ({prediction_digest(raw)[:16]} vs {inputs.model.fingerprint.predictions[:16]})"
            "; the environment differs from training's. Re-run training here."
        )
    golden_outputs = task.predictions(raw, classes, declared.contract, declared.evaluation)
    outputs = output_schema(classes, inputs.declaration)
    # The runtime re-implements the task's columns (it cannot import them): prove it agrees.
    mirrored = runtime.prediction_frame(raw, json.loads(_json(outputs)))
    differing = differing_columns(golden_outputs, mirrored)
    if differing:
        raise PackageBuildError(
            f"predict.py computes {differing} differently from the {task.name} task on the golden "
            "inputs; package/runtime.py must mirror tasks/ exactly."
        )
    trusted = trusted_types(inputs.model.lineage)
    estimator_class = (inputs.model.lineage.get("estimator") or {}).get("class")
    model_roots, outside = environment.model_distributions(
        [*trusted, *([estimator_class] if estimator_class else [])]
    )
    try:
        pins = environment.pins(inputs.lock, [*runtime.DISTRIBUTIONS, *model_roots])
        environment.check_installed(pins)
    except environment.LockError as exc:
        raise PackageBuildError(f"The package's requirements: {exc}") from exc
    python = environment.interpreter()
    lock_sha256 = sha256_bytes(inputs.lock)
    files = {
        "model.skops": inputs.model.skops_bytes(),
        "input_schema.json": _json(input_schema(inputs.features, inputs.declaration)),
        "output_schema.json": _json(outputs),
        "golden_inputs.parquet": _parquet(golden),
        "golden_outputs.parquet": _parquet(golden_outputs),
        "uv.lock": inputs.lock,
        "model_card.md": documentation["model_card.md"],
        "documentation.html": documentation["documentation.html"],
        ENTRY_POINT: Path(runtime.__file__).read_bytes(),
        runtime.REQUIREMENTS_FILE: environment.requirements_text(pins, lock_sha256, python),
    }
    lineage = inputs.model.lineage
    manifest = {
        "format": FORMAT,
        "partition": inputs.partition,
        "declaration": {"name": inputs.declaration.name, "sha256": inputs.declaration.sha256},
        "task": declared.contract.task,
        "model": {
            "fingerprint": inputs.model.fingerprint.combined,
            "state_digest": inputs.model.fingerprint.state,
            "estimator": type(pipeline[-1]).__name__,
            "trusted_types": trusted,
        },
        "lineage": {
            "data_md5": lineage["data_md5"],
            "code": lineage["code"],
            "config_hash": lineage["config_hash"],
            "fingerprint": lineage["fingerprint"],
        },
        "environment": {
            "lock_sha256": lock_sha256,
            **python,
            "wheel_platforms": environment.wheel_platforms(pins),
            "requirements": {pin.name: pin.version for pin in pins},
            "wheels": {pin.name: pin.wheel for pin in pins},
            "modules_outside_requirements": outside,
        },
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
            "tool": f"model-signing=={metadata.version('model-signing')}",
        },
        "entry_point": ENTRY_USAGE,
        "files": {},
    }
    files[readme.README_FILE] = readme.render(manifest, files)
    manifest["files"] = {name: sha256_bytes(data) for name, data in sorted(files.items())}
    return {**files, "manifest.json": _json(manifest)}


def write_folder(files: dict[str, bytes], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
