"""Deterministic benchmark data: the sample schema (30 float features + label) at any size.

Rows are a seeded bootstrap of the breast-cancer reference with light jitter, like
``bench/drift_monitor.py``, so models trained on them pass the lifecycle's metric gates and
the data is a realistic shape for every stage. Values are rounded to five significant digits
(about what the reference carries): the CSV a registry would hold stays ~270 bytes a row, not
the ~560 that full float64 round-trip text takes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20250108
JITTER_SD = 0.05  # fraction of each column's spread
SIGNIFICANT_DIGITS = 5


@dataclass(frozen=True)
class DatasetInfo:
    """What was generated, so the results name the exact bytes every figure ran on."""

    rows: int
    path: str
    md5: str
    csv_bytes: int
    memory_bytes: int  # pandas memory_usage(deep=True) of the parsed frame
    seed: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def frame(rows: int, seed: int = SEED, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """``rows`` rows with the sample schema; the same arguments give the same values."""
    from lifecycle_pipeline.sample_data import BREAST_CANCER_FEATURES as FEATURES
    from lifecycle_pipeline.sample_data import BREAST_CANCER_TARGET as TARGET
    from lifecycle_pipeline.sample_data import reference_frame

    reference = reference_frame() if reference is None else reference
    values = reference[list(FEATURES)].to_numpy(dtype="float64")
    labels = reference[TARGET].to_numpy(dtype="int64")
    scale = values.std(axis=0)
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(reference), size=rows)
    data = values[picked]
    data += rng.normal(0.0, JITTER_SD, size=data.shape) * scale
    np.clip(data, 0.0, None, out=data)
    magnitude = np.floor(np.log10(np.maximum(np.median(np.abs(values), axis=0), 1e-12)))
    decimals = (SIGNIFICANT_DIGITS - 1 - magnitude).astype(int)
    for column, places in enumerate(decimals):
        data[:, column] = np.round(data[:, column], int(places))
    out = pd.DataFrame(data, columns=list(FEATURES))
    out[TARGET] = labels[picked]
    return out


def write(rows: int, folder: Path, seed: int = SEED) -> DatasetInfo:
    """Write the CSV once per (rows, seed) and describe it; later calls reuse the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{rows}-{seed}.csv"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return DatasetInfo(**json.loads(meta.read_text(encoding="utf-8")))
    generated = frame(rows, seed)
    memory = int(generated.memory_usage(deep=True).sum())
    partial = path.with_suffix(".partial")
    generated.to_csv(partial, index=False, lineterminator="\n")
    del generated
    digest = hashlib.md5(usedforsecurity=False)
    with partial.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    partial.replace(path)
    info = DatasetInfo(
        rows=rows,
        path=str(path),
        md5=digest.hexdigest(),
        csv_bytes=path.stat().st_size,
        memory_bytes=memory,
        seed=seed,
    )
    meta.write_text(json.dumps(info.to_dict(), indent=1), encoding="utf-8")
    return info


def read(info: DatasetInfo) -> pd.DataFrame:
    """The frame as the plain baseline holds it in memory (parsed exactly like the pipeline)."""
    from lifecycle_pipeline.contract import parse_csv

    return parse_csv(Path(info.path).read_bytes(), source=info.path)
