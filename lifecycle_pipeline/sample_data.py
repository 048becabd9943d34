"""Deterministic sample data: the reference version, a later version and production batches.

Run by the project's ``dvc.yaml`` stage ``sample_data``; parameters come from ``params.yaml``.
The reference data is scikit-learn's shipped copy of the breast-cancer dataset, so nothing is
downloaded. Later versions and batches are derived with a seeded generator, which makes their
DVC md5s stable across machines with the same lock.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lifecycle_pipeline.schema import FEATURES, TARGET

DATASET_FILE = "breast_cancer.csv"


@dataclass(frozen=True)
class BatchSpec:
    name: str
    rows: int
    shift_columns: tuple[str, ...] = ()
    shift_sd: float = 0.0


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

    @classmethod
    def from_yaml(cls, path: Path) -> SampleParams:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))["sample_data"]
        batches = tuple(
            BatchSpec(
                name=b["name"],
                rows=int(b["rows"]),
                shift_columns=tuple(b.get("shift_columns", ())),
                shift_sd=float(b.get("shift_sd", 0.0)),
            )
            for b in raw["batches"]
        )
        unknown = [c for b in batches for c in b.shift_columns if c not in FEATURES]
        if unknown:
            raise ValueError(f"{path}: sample_data.batches shifts unknown column(s) {unknown}")
        return cls(
            seed=int(raw["seed"]),
            added_rows=int(raw["added_rows"]),
            noise_sd=float(raw["noise_sd"]),
            batches=batches,
        )


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
    if tuple(features.columns) != FEATURES:
        raise RuntimeError("scikit-learn's breast-cancer columns changed; update schema.FEATURES")
    frame = features.astype("float64")
    frame[TARGET] = (bunch.target == 0).astype("int64")
    return frame


def _jitter(rows: pd.DataFrame, rng: np.random.Generator, noise_sd: float) -> pd.DataFrame:
    """Perturb resampled rows by a fraction of each column's spread, keeping values physical."""
    out = rows.copy()
    spread = rows[list(FEATURES)].std(ddof=0).to_numpy()
    noise = rng.normal(0.0, noise_sd, size=(len(rows), len(FEATURES))) * spread
    values = np.clip(rows[list(FEATURES)].to_numpy() + noise, 0.0, None)
    out[list(FEATURES)] = np.round(values, 6)
    return out


def later_version(reference: pd.DataFrame, params: SampleParams) -> pd.DataFrame:
    """The reference plus newly collected cases (stratified resample with measurement noise)."""
    rng = np.random.default_rng(params.seed)
    picks = rng.choice(len(reference), size=params.added_rows, replace=True)
    added = _jitter(reference.iloc[picks].reset_index(drop=True), rng, params.noise_sd)
    return pd.concat([reference, added], ignore_index=True)


def production_batch(reference: pd.DataFrame, spec: BatchSpec, seed: int) -> pd.DataFrame:
    """Unlabelled production rows; a spec with shift columns moves them by ``shift_sd`` SDs."""
    rng = np.random.default_rng([seed, int(spec.name.rsplit("-", 1)[-1])])
    picks = rng.choice(len(reference), size=spec.rows, replace=True)
    batch = _jitter(reference.iloc[picks].reset_index(drop=True), rng, 0.02)[list(FEATURES)]
    for column in spec.shift_columns:
        batch[column] = np.round(batch[column] + spec.shift_sd * reference[column].std(ddof=0), 6)
    return batch


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(path)


def generate(out_dir: Path, params: SampleParams) -> dict[str, object]:
    """Write every sample file under ``out_dir`` and return a manifest describing them."""
    reference = reference_frame()
    write_csv(reference, out_dir / "versions" / "data-v1" / DATASET_FILE)
    write_csv(later_version(reference, params), out_dir / "versions" / "data-v2" / DATASET_FILE)
    for spec in params.batches:
        write_csv(
            production_batch(reference, spec, params.seed), out_dir / "batches" / f"{spec.name}.csv"
        )
    manifest: dict[str, object] = {
        "dataset_file": DATASET_FILE,
        "versions": ["data-v1", "data-v2"],
        "batches": {
            b.name: {
                "rows": b.rows,
                "shifted_columns": list(b.shift_columns),
                "shift_sd": b.shift_sd,
            }
            for b in params.batches
        },
        "seed": params.seed,
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
