"""Deterministic sample data for the two sample models, and the table of what the demo publishes.

Run by the project's ``dvc.yaml`` stage ``sample_data``; parameters come from ``params.yaml``
(``sample_data`` for the breast-cancer model, ``diabetes_sample_data`` for the diabetes model).
Both reference datasets are scikit-learn's shipped copies, so nothing is downloaded. Later
versions and batches are derived with seeded generators, which makes their DVC md5s stable
across machines with the same lock.

This is the one module that knows the samples' column names: the framework learns them from
each model's declaration (``models/*/model.yaml``). The manifest written next to the files
lists, in order, every file to publish with its registry tag and path, so the registry builder
needs no knowledge of the samples either.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

BREAST_CANCER_FILE = "breast_cancer.csv"
BREAST_CANCER_TARGET = "malignant"
"""1 = malignant, 0 = benign: the positive class is the one a missed diagnosis hurts."""
BREAST_CANCER_FEATURES: tuple[str, ...] = tuple(
    f"{stat}_{measure}"
    for stat in ("mean", "se", "worst")
    for measure in (
        "radius",
        "texture",
        "perimeter",
        "area",
        "smoothness",
        "compactness",
        "concavity",
        "concave_points",
        "symmetry",
        "fractal_dimension",
    )
)

DIABETES_FILE = "diabetes.parquet"
DIABETES_TARGET = "disease_progression"
"""Efron et al.'s response: a quantitative measure of disease progression one year later."""
DIABETES_FEATURES: tuple[str, ...] = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
DIABETES_NUMERIC: tuple[str, ...] = tuple(c for c in DIABETES_FEATURES if c != "sex")
DIABETES_DECIMALS: dict[str, int] = {
    "age": 0,
    "bmi": 1,
    "bp": 2,
    "s1": 0,
    "s2": 1,
    "s3": 1,
    "s4": 2,
    "s5": 4,
    "s6": 0,
}
"""The precision each measurement has in the source, kept by jittered rows."""
SEX_CODES: dict[float, str] = {1.0: "sex_1", 2.0: "sex_2"}
"""The source codes sex as 1 and 2 without saying which is female (neither scikit-learn's
description nor Efron et al. 2004 does), so the categories carry the code, not a guess."""

# Where the demo registry stores each sample (the models' declarations name the same paths;
# tests/test_registry.py checks that they agree).
BREAST_CANCER_TARGETS = ("data/breast_cancer.csv", "batches/{key}.csv")
DIABETES_TARGETS = ("data/diabetes.parquet", "batches/{key}.parquet")


@dataclass(frozen=True)
class BatchSpec:
    name: str
    rows: int
    shift_columns: tuple[str, ...] = ()
    shift_sd: float = 0.0


@dataclass(frozen=True)
class DiabetesBatchSpec(BatchSpec):
    sex_2_share: float | None = None
    """Share of rows recorded as ``sex_2`` after sampling (None: as sampled)."""


@dataclass(frozen=True)
class DiabetesParams:
    seed: int = 20261123
    added_rows: int = 150
    noise_sd: float = 0.02
    batches: tuple[DiabetesBatchSpec, ...] = field(
        default_factory=lambda: (
            DiabetesBatchSpec("diabetes-batch-001", 500),
            DiabetesBatchSpec("diabetes-batch-002", 500, ("bmi", "s5"), 1.0, 0.8),
        )
    )

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str) -> DiabetesParams:
        batches = tuple(
            DiabetesBatchSpec(
                name=b["name"],
                rows=int(b["rows"]),
                shift_columns=tuple(b.get("shift_columns", ())),
                shift_sd=float(b.get("shift_sd", 0.0)),
                sex_2_share=None if b.get("sex_2_share") is None else float(b["sex_2_share"]),
            )
            for b in raw["batches"]
        )
        unknown = [c for b in batches for c in b.shift_columns if c not in DIABETES_NUMERIC]
        if unknown:
            raise ValueError(
                f"{source}: diabetes_sample_data.batches shifts unknown or non-numeric "
                f"column(s) {unknown}"
            )
        shares = [b.sex_2_share for b in batches if b.sex_2_share is not None]
        if any(not 0.0 <= s <= 1.0 for s in shares):
            raise ValueError(f"{source}: diabetes_sample_data.batches: sex_2_share is a share")
        return cls(
            seed=int(raw["seed"]),
            added_rows=int(raw["added_rows"]),
            noise_sd=float(raw["noise_sd"]),
            batches=batches,
        )


@dataclass(frozen=True)
class SampleParams:
    seed: int = 20261122
    added_rows: int = 200
    noise_sd: float = 0.02
    batches: tuple[BatchSpec, ...] = field(
        default_factory=lambda: (
            BatchSpec("batch-001", 300),
            BatchSpec("batch-002", 300, ("mean_texture", "worst_texture", "mean_smoothness"), 1.5),
        )
    )
    diabetes: DiabetesParams = field(default_factory=DiabetesParams)

    @classmethod
    def from_yaml(cls, path: Path) -> SampleParams:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw = document["sample_data"]
        batches = tuple(
            BatchSpec(
                name=b["name"],
                rows=int(b["rows"]),
                shift_columns=tuple(b.get("shift_columns", ())),
                shift_sd=float(b.get("shift_sd", 0.0)),
            )
            for b in raw["batches"]
        )
        unknown = [c for b in batches for c in b.shift_columns if c not in BREAST_CANCER_FEATURES]
        if unknown:
            raise ValueError(f"{path}: sample_data.batches shifts unknown column(s) {unknown}")
        diabetes = document.get("diabetes_sample_data")
        return cls(
            seed=int(raw["seed"]),
            added_rows=int(raw["added_rows"]),
            noise_sd=float(raw["noise_sd"]),
            batches=batches,
            diabetes=DiabetesParams()
            if diabetes is None
            else DiabetesParams.from_mapping(diabetes, str(path)),
        )


# -- breast cancer (CSV) ----------------------------------------------------------------------
# Every function here writes the bytes that the demo's published fingerprints depend on:
# change none of them without publishing the result under new tags.


def _snake_case(name: str) -> str:
    """'mean concave points' -> 'mean_concave_points'; 'radius error' -> 'se_radius'."""
    if name.endswith(" error"):
        name = "se " + name.removesuffix(" error")
    return name.replace(" ", "_")


def reference_frame() -> pd.DataFrame:
    """The shipped breast-cancer data with snake_case names and malignant as the positive class."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.copy()
    features.columns = [_snake_case(c) for c in features.columns]
    if tuple(features.columns) != BREAST_CANCER_FEATURES:
        raise RuntimeError(
            "scikit-learn's breast-cancer columns changed; update BREAST_CANCER_FEATURES"
        )
    frame = features.astype("float64")
    frame[BREAST_CANCER_TARGET] = (bunch.target == 0).astype("int64")
    return frame


def _jitter(rows: pd.DataFrame, rng: np.random.Generator, noise_sd: float) -> pd.DataFrame:
    """Perturb resampled rows by a fraction of each column's spread, keeping values physical."""
    columns = list(BREAST_CANCER_FEATURES)
    out = rows.copy()
    spread = rows[columns].std(ddof=0).to_numpy()
    noise = rng.normal(0.0, noise_sd, size=(len(rows), len(columns))) * spread
    values = np.clip(rows[columns].to_numpy() + noise, 0.0, None)
    out[columns] = np.round(values, 6)
    return out


def later_version(reference: pd.DataFrame, params: SampleParams) -> pd.DataFrame:
    """The reference plus newly collected cases (stratified resample with measurement noise)."""
    rng = np.random.default_rng(params.seed)
    picks = rng.choice(len(reference), size=params.added_rows, replace=True)
    added = _jitter(reference.iloc[picks].reset_index(drop=True), rng, params.noise_sd)
    return pd.concat([reference, added], ignore_index=True)


def _batch_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per batch, keyed by the batch number, so batches are independent."""
    return np.random.default_rng([seed, int(name.rsplit("-", 1)[-1])])


def production_batch(reference: pd.DataFrame, spec: BatchSpec, seed: int) -> pd.DataFrame:
    """Unlabelled production rows; a spec with shift columns moves them by ``shift_sd`` SDs."""
    rng = _batch_rng(seed, spec.name)
    picks = rng.choice(len(reference), size=spec.rows, replace=True)
    batch = _jitter(reference.iloc[picks].reset_index(drop=True), rng, 0.02)[
        list(BREAST_CANCER_FEATURES)
    ]
    for column in spec.shift_columns:
        batch[column] = np.round(batch[column] + spec.shift_sd * reference[column].std(ddof=0), 6)
    return batch


# -- diabetes (Parquet) -----------------------------------------------------------------------


def diabetes_frame() -> pd.DataFrame:
    """scikit-learn's diabetes data in original units (``scaled=False``), sex as text.

    Age is whole years (int64); the other measurements stay float64; the target is float64.
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False, as_frame=True)
    data = bunch.data
    if tuple(data.columns) != DIABETES_FEATURES:
        raise RuntimeError("scikit-learn's diabetes columns changed; update DIABETES_FEATURES")
    sex = data["sex"].map(SEX_CODES)
    if sex.isna().any():
        raise RuntimeError(f"unexpected sex codes {sorted(set(data['sex']) - set(SEX_CODES))}")
    frame = pd.DataFrame(
        {name: data[name].astype("float64") for name in DIABETES_FEATURES}, copy=True
    )
    frame["age"] = data["age"].round().astype("int64")
    frame["sex"] = sex.astype("object")
    frame[DIABETES_TARGET] = bunch.target.astype("float64")
    return frame


def _jitter_diabetes(rows: pd.DataFrame, rng: np.random.Generator, noise_sd: float) -> pd.DataFrame:
    """Measurement noise on the numeric columns, at each column's source precision."""
    columns = list(DIABETES_NUMERIC)
    out = rows.copy()
    spread = rows[columns].std(ddof=0).to_numpy()
    noise = rng.normal(0.0, noise_sd, size=(len(rows), len(columns))) * spread
    values = np.clip(rows[columns].to_numpy(dtype="float64") + noise, 0.0, None)
    for index, name in enumerate(columns):
        rounded = np.round(values[:, index], DIABETES_DECIMALS[name])
        out[name] = rounded.astype("int64") if name == "age" else rounded
    return out


def diabetes_later_version(reference: pd.DataFrame, params: DiabetesParams) -> pd.DataFrame:
    """The reference plus newly recruited patients (a resample with measurement noise; each
    added row keeps the outcome of the patient it was drawn from)."""
    rng = np.random.default_rng(params.seed)
    picks = rng.choice(len(reference), size=params.added_rows, replace=True)
    added = _jitter_diabetes(reference.iloc[picks].reset_index(drop=True), rng, params.noise_sd)
    return pd.concat([reference, added], ignore_index=True)


def diabetes_batch(reference: pd.DataFrame, spec: DiabetesBatchSpec, seed: int) -> pd.DataFrame:
    """Unlabelled production rows. Shift columns move by ``shift_sd`` SDs; ``sex_2_share``
    re-records sex alone (a changed case mix), leaving the other columns as sampled, so that
    only the declared columns drift."""
    rng = _batch_rng(seed, spec.name)
    picks = rng.choice(len(reference), size=spec.rows, replace=True)
    batch = _jitter_diabetes(reference.iloc[picks].reset_index(drop=True), rng, 0.02)[
        list(DIABETES_FEATURES)
    ]
    for column in spec.shift_columns:
        moved = batch[column] + spec.shift_sd * reference[column].std(ddof=0)
        batch[column] = moved.round(DIABETES_DECIMALS[column]).astype(batch[column].dtype)
    if spec.sex_2_share is not None:
        order = rng.permutation(spec.rows)
        second = np.zeros(spec.rows, dtype=bool)
        second[order[: round(spec.sex_2_share * spec.rows)]] = True
        batch["sex"] = np.where(second, SEX_CODES[2.0], SEX_CODES[1.0]).astype("object")
    return batch


# -- files and manifest -----------------------------------------------------------------------


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Parquet without pandas' metadata block: it records the pandas version, which would
    change the file's md5 (and so its DVC identity) on a pandas upgrade with equal data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp, compression="snappy")
    tmp.replace(path)


def _publication(tag: str, file: Path, target: str, kind: str) -> dict[str, str]:
    return {
        "tag": tag,
        "file": file.as_posix(),
        "target": target,
        "message": f"{kind} {tag}",
    }


def generate(out_dir: Path, params: SampleParams) -> dict[str, object]:
    """Write every sample file under ``out_dir`` and return a manifest describing them.

    ``publish`` lists the registry publications in the order the demo commits them: the
    breast-cancer tags first, as they were before the diabetes sample existed, so their
    commits (hence every fingerprint recorded against them) stay the same.
    """
    publish: list[dict[str, str]] = []
    versions: dict[str, dict[str, object]] = {}
    batches: dict[str, dict[str, object]] = {}

    reference = reference_frame()
    dataset_path, batch_path = BREAST_CANCER_TARGETS
    for tag, frame in (("data-v1", reference), ("data-v2", later_version(reference, params))):
        file = Path("versions") / tag / BREAST_CANCER_FILE
        write_csv(frame, out_dir / file)
        versions[tag] = {"model": "breast_cancer", "file": file.as_posix(), "rows": len(frame)}
        publish.append(_publication(tag, file, dataset_path, "Data version"))
    for spec in params.batches:
        file = Path("batches") / f"{spec.name}.csv"
        write_csv(production_batch(reference, spec, params.seed), out_dir / file)
        batches[spec.name] = {
            "model": "breast_cancer",
            "file": file.as_posix(),
            "rows": spec.rows,
            "shifted_columns": list(spec.shift_columns),
            "shift_sd": spec.shift_sd,
        }
        publish.append(
            _publication(spec.name, file, batch_path.format(key=spec.name), "Production batch")
        )

    diabetes = params.diabetes
    reference = diabetes_frame()
    dataset_path, batch_path = DIABETES_TARGETS
    later = diabetes_later_version(reference, diabetes)
    for tag, frame in (("diabetes-v1", reference), ("diabetes-v2", later)):
        file = Path("versions") / tag / DIABETES_FILE
        write_parquet(frame, out_dir / file)
        versions[tag] = {"model": "diabetes", "file": file.as_posix(), "rows": len(frame)}
        publish.append(_publication(tag, file, dataset_path, "Data version"))
    for dspec in diabetes.batches:
        file = Path("batches") / f"{dspec.name}.parquet"
        write_parquet(diabetes_batch(reference, dspec, diabetes.seed), out_dir / file)
        batches[dspec.name] = {
            "model": "diabetes",
            "file": file.as_posix(),
            "rows": dspec.rows,
            "shifted_columns": [
                *dspec.shift_columns,
                *(["sex"] if dspec.sex_2_share is not None else []),
            ],
            "shift_sd": dspec.shift_sd,
            "sex_2_share": dspec.sex_2_share,
        }
        publish.append(
            _publication(dspec.name, file, batch_path.format(key=dspec.name), "Production batch")
        )

    manifest: dict[str, object] = {
        "seeds": {"breast_cancer": params.seed, "diabetes": diabetes.seed},
        "versions": versions,
        "batches": batches,
        "publish": publish,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = SampleParams.from_yaml(args.params) if args.params.exists() else SampleParams()
    generate(args.out_dir, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
