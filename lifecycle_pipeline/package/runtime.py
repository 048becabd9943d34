"""Standalone loader and predictor shipped inside every deployment package as ``predict.py``.

It imports nothing from lifecycle_pipeline: production runs it with only the package's own
files and the libraries pinned by the package's ``requirements.txt`` (``DISTRIBUTIONS`` and
their dependencies, as the project's uv.lock resolves them). The pipeline's parity check and
``lifecycle predict`` run this very file, so development and production share one code path.

Everything model-specific comes from the package's files: the features, their declared types,
domains and training ranges from ``input_schema.json``; the task and its output columns from
``output_schema.json``; the reviewed types the model may contain from ``manifest.json``.

    python predict.py INPUT OUTPUT [--out-of-range flag|reject]
    python predict.py --verify

Values outside a feature's declared domain (or not among its declared categories) are always
refused. Values inside the domain but outside what the model saw in training are scored and
counted in the ``out_of_training_range`` output column under the ``flag`` policy, or refused
under ``reject``; the package's declared policy applies unless ``--out-of-range`` overrides it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import re
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

POLICIES = ("flag", "reject")
# What this file imports, directly or by loading the model (skops.io imports scikit-learn,
# pandas' Parquet engine is pyarrow): the roots of the package's requirements.txt.
DISTRIBUTIONS = ("numpy", "pandas", "pyarrow", "scikit-learn", "skops", "threadpoolctl")
REQUIREMENTS_FILE = "requirements.txt"
FLAG_COLUMN = "out_of_training_range"
# How many offending rows a message names per column; the count says how many there are.
SHOWN = 5
_BOOLEAN_TEXT = {
    True: True, False: False, "true": True, "false": False, "True": True, "False": False,
    "TRUE": True, "FALSE": False,
}  # fmt: skip


class PackageError(RuntimeError):
    """The package is incomplete, a file differs from its manifest, or its model is unsafe."""


class InputError(ValueError):
    """Input rows that violate the package's input schema."""


class OutOfRangeWarning(UserWarning):
    """Values outside the training range (inside the declared domain), scored and flagged."""


class CheckedInput(NamedTuple):
    """Rows in the types the model was trained on, and per row the count of flagged features."""

    features: pd.DataFrame
    flags: np.ndarray
    notes: list[str]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_file(package: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """Read one package file and check it against the manifest digest."""
    path = package / name
    if not path.is_file():
        raise PackageError(f"{path}: file listed in manifest.json is missing.")
    data = path.read_bytes()
    expected = manifest["files"].get(name)
    if expected is None:
        raise PackageError(f"{path}: not listed in manifest.json.")
    if _sha256(data) != expected:
        raise PackageError(
            f"{path}: sha256 {_sha256(data)} differs from manifest.json ({expected})."
        )
    return data


def load_manifest(package: Path) -> dict[str, Any]:
    path = package / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackageError(f"{path}: missing; {package} is not a deployment package.") from exc
    except ValueError as exc:
        raise PackageError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(manifest, dict) or "files" not in manifest:
        raise PackageError(f"{path}: has no 'files' listing.")
    return manifest


def read_json(package: Path, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """A JSON file of the package, checked against its manifest digest."""
    try:
        value = json.loads(read_file(package, name, manifest))
    except ValueError as exc:
        raise PackageError(f"{package / name}: not valid JSON ({exc}).") from exc
    if not isinstance(value, dict):
        raise PackageError(f"{package / name}: expected a JSON object.")
    return value


def trusted_types(manifest: dict[str, Any]) -> list[str]:
    """The reviewed types the model may contain beyond skops' defaults, as the build recorded.

    The list was checked against the fitted model when it was trained; loading with exactly
    this list (never trust-all) means a swapped model with any other type is refused.
    """
    recorded = (manifest.get("model") or {}).get("trusted_types")
    if not isinstance(recorded, list) or not all(isinstance(t, str) for t in recorded):
        raise PackageError(
            "manifest.json records no model.trusted_types list, so nothing says which types "
            "the model may contain; refusing to load it. Rebuild the package with this version "
            "of the pipeline."
        )
    return list(recorded)


def load_model(package: Path, manifest: dict[str, Any]) -> Any:
    """Load the skops model with the manifest's trusted-type list; never trust everything.

    ``loads`` audits every type against that list before it constructs anything; only a
    refusal walks the file again (``get_untrusted_types``) to name the types it holds.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = package / "model.skops"
    data = read_file(package, "model.skops", manifest)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        # A pickle (or anything else) is refused before any loader sees it.
        raise PackageError(f"{path}: not a skops file; refusing to load.")
    trusted = trusted_types(manifest)
    try:
        return sio.loads(data, trusted=trusted)
    except UntrustedTypesFoundException as exc:
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in trusted]
        raise PackageError(
            f"{path}: untrusted type(s) {untrusted}; refusing to load. The package's reviewed "
            f"list (manifest.json model.trusted_types) is {trusted}; a model holding any other "
            "type was not the one trained and reviewed."
        ) from exc


# -- input validation -----------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return repr(value.item() if isinstance(value, np.generic) else value)


def _bound(value: float | None, open_as: str) -> str:
    return open_as if value is None else f"{value:.6g}"


def _interval(low: float | None, high: float | None) -> str:
    return (
        f"{'(' if low is None else '['}{_bound(low, '-inf')}, "
        f"{_bound(high, '+inf')}{')' if high is None else ']'}"
    )


def _listing(values: list[Any], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _joined(messages: list[str], limit: int = 20) -> str:
    """Messages for one error or warning: the first ``limit``, then how many more there are."""
    more = f"; and {len(messages) - limit} more problem(s)" if len(messages) > limit else ""
    return "; ".join(messages[:limit]) + more


def _name_rows(
    index: pd.Index,
    mask: np.ndarray,
    describe: Callable[[int], str],
    column: str,
    problems: list[str],
) -> None:
    """Append one message per offending row (the first few), then how many more there are."""
    rows = np.flatnonzero(mask)
    for position in rows[:SHOWN]:
        problems.append(f"row {index[position]}, column {column!r}: {describe(position)}")
    if len(rows) > SHOWN:
        problems.append(f"column {column!r}: {len(rows) - SHOWN} more row(s) like these")


def _numbers(
    name: str, spec: dict[str, Any], raw: pd.Series, problems: list[str]
) -> pd.Series | None:
    """A numeric or integer column as float64 (int64 when integer and complete), or None."""
    index = raw.index
    if pd.api.types.is_bool_dtype(raw):
        problems.append(f"column {name!r}: holds true/false values; declared {spec['type']}")
        return None
    values = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
    as_float = values.to_numpy(dtype="float64", na_value=np.nan)
    present = raw.notna().to_numpy()
    text = np.isnan(as_float) & present
    _name_rows(index, text, lambda i: f"{str(raw.iloc[i])!r} is not a number", name, problems)
    if not spec["nullable"]:
        _name_rows(index, ~present, lambda i: "missing value", name, problems)
    infinite = np.isinf(as_float)
    _name_rows(index, infinite, lambda i: f"{as_float[i]} is not finite", name, problems)
    if spec["type"] == "integer":
        finite = np.isfinite(as_float)
        fractional = np.zeros(len(as_float), dtype=bool)
        fractional[finite] = as_float[finite] != np.round(as_float[finite])
        _name_rows(
            index,
            fractional,
            lambda i: f"{as_float[i]:.6g} is not a whole number (declared integer)",
            name,
            problems,
        )
        if not np.isnan(as_float).any() and not infinite.any() and not fractional.any():
            return pd.Series(values, index=index).astype("int64")
    return pd.Series(as_float, index=index)


def _as_boolean(value: Any) -> bool | None:
    """true/false in the spellings CSV writers use, and the numbers 1 and 0; else None."""
    if isinstance(value, bool | np.bool_ | str):
        return _BOOLEAN_TEXT.get(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    return None


def _booleans(
    name: str, spec: dict[str, Any], raw: pd.Series, problems: list[str]
) -> pd.Series | None:
    if raw.dtype == np.bool_:  # complete; a nullable `boolean` column (Parquet) holds pd.NA,
        return raw  # which scikit-learn refuses: it is mapped below, as training reads it
    mapped = raw.map(_as_boolean)
    present = raw.notna().to_numpy()
    bad = mapped.isna().to_numpy() & present
    _name_rows(
        raw.index,
        bad,
        lambda i: f"{_value(raw.iloc[i])} is not a boolean (use true or false)",
        name,
        problems,
    )
    if not spec["nullable"]:
        _name_rows(raw.index, ~present, lambda i: "missing value", name, problems)
    if not mapped.isna().any():
        return mapped.astype("bool")
    return mapped.astype("float64")  # 1.0 / 0.0 / NaN, as the training data holds it


def _categories(
    name: str, spec: dict[str, Any], raw: pd.Series, problems: list[str]
) -> pd.Series | None:
    """Categories as text, as the model was trained on them (codes 1, 2 become '1', '2')."""
    if pd.api.types.is_bool_dtype(raw):
        problems.append(f"column {name!r}: holds true/false values; declared categorical")
        return None
    present = raw.notna().to_numpy()
    if not spec["nullable"]:
        _name_rows(raw.index, ~present, lambda i: "missing value", name, problems)
    if pd.api.types.is_float_dtype(raw):
        # A column of whole-number codes with a gap reads as floats: 1.0 is the code '1'.
        as_float = raw.to_numpy(dtype="float64", na_value=np.nan)
        fractional = present & ~(np.isfinite(as_float) & (as_float == np.round(as_float)))
        _name_rows(
            raw.index,
            fractional,
            lambda i: f"{as_float[i]:.6g} is not a category (categories are text)",
            name,
            problems,
        )
        if fractional.any():
            return None
        text = [str(int(v)) if ok else None for v, ok in zip(as_float, present, strict=True)]
        return pd.Series(text, index=raw.index, dtype="object")
    # Missing is None, as the training data gives it back from Parquet: a one-hot encoder
    # would take NaN for another, unseen category.
    labels = raw.astype(str).astype("object")
    labels[~present] = None
    return labels


_COERCE = {"numeric": _numbers, "integer": _numbers, "boolean": _booleans,
           "categorical": _categories}  # fmt: skip


def _domain_problems(name: str, spec: dict[str, Any], values: pd.Series) -> list[str]:
    """Declared domain bounds and category sets: values outside them are never scored."""
    problems: list[str] = []
    if spec["type"] in ("numeric", "integer"):
        low, high = spec.get("domain_min"), spec.get("domain_max")
        if low is None and high is None:
            return problems
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        outside = np.zeros(len(numbers), dtype=bool)
        if low is not None:
            outside |= numbers < low
        if high is not None:
            outside |= numbers > high
        _name_rows(
            values.index,
            outside,
            lambda i: f"{numbers[i]:.6g} outside the declared domain {_interval(low, high)}",
            name,
            problems,
        )
    elif spec["type"] == "categorical" and spec.get("categories") is not None:
        declared = spec["categories"]
        undeclared = (values.notna() & ~values.isin(declared)).to_numpy()
        _name_rows(
            values.index,
            undeclared,
            lambda i: f"{values.iloc[i]!r} is not a declared category ({_listing(declared)})",
            name,
            problems,
        )
    return problems


def _training_flags(
    name: str, spec: dict[str, Any], values: pd.Series, unseen: str, refused: list[str]
) -> tuple[np.ndarray, list[str]]:
    """Rows outside the training range or with a category unseen in training, and messages.

    An unseen category is refused outright (into ``refused``) when the model was built to
    refuse them (``unseen_categories: error``): the encoder would fail on it anyway.
    """
    notes: list[str] = []
    flagged = np.zeros(len(values), dtype=bool)
    if spec["type"] in ("numeric", "integer"):
        low, high = spec.get("train_min"), spec.get("train_max")
        if low is None or high is None:
            return flagged, notes
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        flagged = (numbers < low) | (numbers > high)
        _name_rows(
            values.index,
            flagged,
            lambda i: f"{numbers[i]:.6g} outside the training range {_interval(low, high)}",
            name,
            notes,
        )
    elif spec["type"] == "categorical" and spec.get("train_categories") is not None:
        seen = spec["train_categories"]
        flagged = (values.notna() & ~values.isin(seen)).to_numpy()
        # A gap is a category of its own to the encoder: one training never saw is unseen
        # too (schemas written before train_missing was recorded are judged as they were).
        if not spec.get("train_missing", True):
            flagged |= values.isna().to_numpy()

        def shown(i: int) -> str:
            return "a missing value" if pd.isna(values.iloc[i]) else repr(values.iloc[i])

        if unseen == "error":
            _name_rows(
                values.index,
                flagged,
                lambda i: (
                    f"{shown(i)} was never seen in training and this model "
                    "refuses unseen categories (estimator.unseen_categories: error)"
                ),
                name,
                refused,
            )
            return np.zeros(len(values), dtype=bool), notes
        _name_rows(
            values.index,
            flagged,
            lambda i: f"{shown(i)} was never seen in training (seen: {_listing(seen)})",
            name,
            notes,
        )
    return flagged, notes


def validate_input(
    frame: pd.DataFrame, schema: dict[str, Any], out_of_range: str | None = None
) -> CheckedInput:
    """Check columns, declared types, nulls, domains and training ranges; name every row.

    Returns the features in schema order and training dtypes, and per row how many of its
    features lie outside the training range (or hold an unseen category). Under the ``reject``
    policy such rows are refused instead; outside the declared domain they always are.
    """
    policy = out_of_range or schema["out_of_range"]
    if policy not in POLICIES:
        raise InputError(f"out-of-range policy {policy!r} is not one of {', '.join(POLICIES)}")
    columns = schema["columns"]
    if frame.empty:
        raise InputError("no rows to score (the input has a header and nothing else)")
    missing = [f"column {c['name']!r}: missing" for c in columns if c["name"] not in frame.columns]
    if missing:
        raise InputError(_joined(missing, limit=len(missing)))
    problems: list[str] = []
    clean: dict[str, pd.Series] = {}
    for spec in columns:
        name = spec["name"]
        coerce = _COERCE.get(spec["type"])
        if coerce is None:
            raise PackageError(
                f"input_schema.json: column {name!r} has unknown type {spec['type']!r}"
            )
        values = coerce(name, spec, frame[name], problems)
        if values is not None:
            clean[name] = values
    if problems:
        raise InputError(_joined(problems))
    for spec in columns:
        problems += _domain_problems(spec["name"], spec, clean[spec["name"]])
    if problems:
        raise InputError(
            _joined(problems) + ". The model's contract declares these bounds; values outside "
            "them are never scored. Correct the rows or, if the bounds are wrong, the contract."
        )
    counts = np.zeros(len(frame), dtype="int64")
    notes: list[str] = []
    unseen = schema.get("unseen_categories", "ignore")
    for spec in columns:
        flagged, found = _training_flags(spec["name"], spec, clean[spec["name"]], unseen, problems)
        counts += flagged
        notes += found
    if problems:
        raise InputError(_joined(problems))
    if notes and policy == "reject":
        raise InputError(
            _joined(notes) + ". These values lie inside the declared domain but outside what "
            "the model saw in training, and the out-of-range policy is 'reject'. Use "
            f"--out-of-range flag to score them, counted in column {FLAG_COLUMN!r}."
        )
    features = pd.DataFrame(clean, index=frame.index)[[c["name"] for c in columns]]
    return CheckedInput(features, counts, notes)


# -- outputs --------------------------------------------------------------------------------


def raw_outputs(model: Any, features: pd.DataFrame, task: str) -> np.ndarray:
    """The model's raw outputs as the task defines them: class probabilities, or values.

    One thread, so reductions run in one order and the output is bit-identical to the
    pipeline's evaluation and fingerprint.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        if task == "regression":
            return np.asarray(model.predict(features), dtype="float64")
        if task in ("binary", "multiclass"):
            return np.asarray(model.predict_proba(features))
    raise PackageError(f"output_schema.json: unknown task {task!r}")


def prediction_frame(raw: np.ndarray, output: dict[str, Any]) -> pd.DataFrame:
    """The task's prediction columns from raw outputs, as ``output_schema.json`` lists them.

    Mirrors the pipeline's task definitions (which this file cannot import) operation for
    operation, so evaluation, golden outputs and production agree bit for bit; a column list
    that differs from the schema's is a broken package, not a guess.
    """
    task, classes = output["task"], list(output.get("classes") or [])
    if task == "binary":
        positive = output["positive_class"]
        proba = np.ascontiguousarray(raw[:, classes.index(positive)], "float64")
        negative = next(c for c in classes if c != positive)
        labels = np.where(proba >= float(output["threshold"]), positive, negative)
        frame = pd.DataFrame({"probability": proba, "label": labels})
    elif task == "multiclass":
        frame = pd.DataFrame(
            {
                f"probability_{c}": np.ascontiguousarray(raw[:, i], "float64")
                for i, c in enumerate(classes)
            }
        )
        frame.insert(0, "label", np.asarray(classes)[np.argmax(raw, axis=1)])
    elif task == "regression":
        frame = pd.DataFrame({"prediction": np.ascontiguousarray(raw, "float64")})
    else:
        raise PackageError(f"output_schema.json: unknown task {task!r}")
    expected = [c["name"] for c in output["columns"] if c["name"] != FLAG_COLUMN]
    if list(frame.columns) != expected:
        raise PackageError(
            f"output_schema.json lists columns {expected}, but a {task} task produces "
            f"{list(frame.columns)}; the package is inconsistent, rebuild it."
        )
    return frame


def _check_classes(model: Any, output: dict[str, Any]) -> None:
    if output["task"] == "regression":
        return
    found = np.asarray(getattr(model, "classes_", [])).tolist()
    if found != list(output.get("classes") or []):
        raise PackageError(
            f"model.skops predicts classes {found}, but output_schema.json lists "
            f"{output.get('classes')}; the package is inconsistent, rebuild it."
        )


def score(
    model: Any,
    schema: dict[str, Any],
    output: dict[str, Any],
    frame: pd.DataFrame,
    out_of_range: str | None = None,
) -> pd.DataFrame:
    """Validate ``frame`` against the schemas and score it with an already loaded ``model``."""
    _check_classes(model, output)
    checked = validate_input(frame, schema, out_of_range)
    if checked.notes:
        rows = int((checked.flags > 0).sum())
        warnings.warn(
            f"{rows} row(s) scored with values outside the training range, counted in column "
            f"{FLAG_COLUMN!r}: " + _joined(checked.notes, limit=10),
            OutOfRangeWarning,
            stacklevel=3,
        )
    result = prediction_frame(raw_outputs(model, checked.features, output["task"]), output)
    result[FLAG_COLUMN] = checked.flags
    result.index = frame.index
    return result


def predict(package: Path, frame: pd.DataFrame, out_of_range: str | None = None) -> pd.DataFrame:
    """Validate ``frame`` and score it: one row out per row in, in the input's order.

    The columns are the task's (``output_schema.json``) and ``out_of_training_range``.
    ``out_of_range`` overrides the package's declared policy ('flag' or 'reject').
    """
    package = Path(package)
    manifest = load_manifest(package)
    schema = read_json(package, "input_schema.json", manifest)
    output = read_json(package, "output_schema.json", manifest)
    return score(load_model(package, manifest), schema, output, frame, out_of_range)


def golden_digest(
    package: Path, manifest: dict[str, Any] | None = None, model: Any = None
) -> tuple[str, str]:
    """(recorded, recomputed) digest of the model's raw outputs on the golden inputs.

    Raw outputs as the manifest's task defines them (probabilities, or predicted values),
    hashed as the pipeline's fingerprint hashes them, so the digest equals the training
    record's.
    """
    manifest = manifest or load_manifest(package)
    golden = pd.read_parquet(io.BytesIO(read_file(package, "golden_inputs.parquet", manifest)))
    model = model if model is not None else load_model(package, manifest)
    canonical = np.ascontiguousarray(raw_outputs(model, golden, manifest["task"]), dtype="<f8")
    digest = hashlib.sha256(f"{canonical.shape}".encode() + canonical.tobytes()).hexdigest()
    return manifest["golden"]["prediction_digest"], digest


# -- files ----------------------------------------------------------------------------------


def missing_markers(schema: dict[str, Any] | None) -> list[str] | None:
    """The field values the model's declaration reads as missing (``input_schema.json``
    ``missing_values``: the empty field and the declared markers), or None for a schema
    written before packages carried the rule, whose rows pandas' defaults read."""
    markers = (schema or {}).get("missing_values")
    if markers is None:
        return None
    if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
        raise PackageError(
            f"input_schema.json: missing_values is {markers!r}, not a list of text markers; "
            "the package is damaged, rebuild it."
        )
    return markers


def _blank_text(frame: pd.DataFrame, markers: list[str]) -> pd.DataFrame:
    """Parquet: text values that are missing markers become None (nulls already are)."""
    chosen = set(markers)
    for name in frame.columns:
        values = frame[name]
        if values.dtype != object:
            continue
        hit = values.map(lambda v: isinstance(v, str) and v in chosen).to_numpy(dtype=bool)
        if hit.any():
            out = values.copy()
            out[hit] = None
            frame[name] = out
    return frame


def read_table(path: Path, schema: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read input rows, turning every way a file can be unreadable into a named InputError.

    With the input schema, a CSV's categorical columns are read as text, so codes such as
    '007' keep their leading zeros instead of becoming the number 7, and a field is missing
    exactly when training's reader took it for missing: empty, or one of the declared
    markers (``missing_values``), never pandas' own list ('None', 'NA', 'null', ...) unless
    the declaration lists it.
    """
    markers = missing_markers(schema)
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})") from exc
        return frame if markers is None else _blank_text(frame, markers)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise InputError("the file is empty (0 data bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not valid UTF-8 at byte {exc.start}; re-export the file as UTF-8"
        ) from exc
    as_text = {
        c["name"]: "str" for c in (schema or {}).get("columns", []) if c["type"] == "categorical"
    }
    rule: dict[str, Any] = (
        {} if markers is None else {"keep_default_na": False, "na_values": markers}
    )
    try:
        return pd.read_csv(
            io.StringIO(text), float_precision="round_trip", dtype=as_text or None, **rule
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot be parsed as CSV ({exc})") from exc


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write next to the target and rename, so a reader never sees half of the predictions."""
    temporary = path.with_name(f".tmp-{path.name}")
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(temporary)
        else:
            frame.to_csv(temporary, float_format="%.17g", index_label="row")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


# -- standalone verification ---------------------------------------------------------------


def parse_requirements(text: str) -> dict[str, str]:
    """Distribution -> pinned version of every ``name==version`` line of a requirements file."""
    pinned: dict[str, str] = {}
    for line in text.replace("\\\n", " ").splitlines():
        requirement = re.split(r"\s+--|#", line, maxsplit=1)[0].strip()
        if not requirement:
            continue
        name, pinned_to, version = requirement.partition("==")
        if not pinned_to:
            raise PackageError(
                f"{REQUIREMENTS_FILE}: {requirement!r} is not pinned as name==version."
            )
        pinned[name.strip().lower()] = version.strip()
    return pinned


def _same(left: pd.Series, right: pd.Series) -> bool:
    """Equal values, floats compared bit for bit (a one-ulp difference is a difference)."""
    a, b = left.to_numpy(), right.to_numpy()
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return a.dtype.kind == b.dtype.kind and (
            np.ascontiguousarray(a, "<f8").tobytes() == np.ascontiguousarray(b, "<f8").tobytes()
        )
    return bool(a.tolist() == b.tolist())


def _environment(package: Path, manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(passed, problems): this interpreter and its distributions against requirements.txt."""
    from importlib import metadata

    passed: list[str] = []
    problems: list[str] = []
    recorded = manifest.get("environment") or {}
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    wanted = str(recorded.get("python_requires", f"=={running}.*"))
    if wanted != f"=={running}.*":
        problems.append(
            f"this is Python {platform.python_version()}, but the package's golden outputs were "
            f"reproduced on Python {recorded.get('python')} and {REQUIREMENTS_FILE} pins that "
            f"Python's versions; create the environment with python{wanted[2:-2]}"
        )
    pinned = parse_requirements(read_file(package, REQUIREMENTS_FILE, manifest).decode("utf-8"))
    differing = []
    for name, version in sorted(pinned.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            differing.append(f"{name} {installed} ({REQUIREMENTS_FILE}: {version})")
    if differing:
        problems.append(
            f"this environment holds {', '.join(differing)}; create a fresh one and install "
            f"the package's own: pip install --require-hashes -r {REQUIREMENTS_FILE}"
        )
    elif not problems:
        passed.append(
            f"Python {platform.python_version()} and all {len(pinned)} distributions match "
            f"{REQUIREMENTS_FILE}"
        )
    return passed, problems


def verify(package: Path) -> tuple[list[str], list[str]]:
    """(passed, problems): what a package proves about itself where the project is absent.

    Every file against manifest.json, the running environment against requirements.txt, the
    model loaded with its reviewed types only, and the golden inputs scored to the recorded
    prediction digest and to golden_outputs.parquet bit for bit. The signature (model.sig)
    needs the signer's public key and model-signing: README.md says how to check it.
    """
    package = Path(package)
    manifest = load_manifest(package)
    listed = manifest["files"]
    passed: list[str] = []
    problems = [
        f"{package / name}: not listed in manifest.json (the signature covers every file in "
        "this folder: keep environments and predictions outside it)"
        for name in sorted({p.name for p in package.iterdir() if p.is_file()} - set(listed))
        if name not in ("manifest.json", "model.sig")
    ]
    for name in sorted(listed):
        try:
            read_file(package, name, manifest)
        except PackageError as exc:
            problems.append(str(exc))
    if problems:
        return passed, problems
    passed.append(f"{len(listed)} file digests match manifest.json")
    found, wrong = _environment(package, manifest)
    passed += found
    problems += wrong
    try:
        model = load_model(package, manifest)
    except PackageError as exc:
        return passed, [*problems, str(exc)]
    passed.append(f"model.skops loads with exactly the reviewed types {trusted_types(manifest)}")
    recorded, recomputed = golden_digest(package, manifest, model)
    if recorded != recomputed:
        problems.append(
            f"golden inputs give prediction digest {recomputed[:16]}, not the recorded "
            f"{recorded[:16]}: this environment does not reproduce training"
        )
    else:
        passed.append(f"golden inputs reproduce prediction digest {recorded[:16]}")
    golden = pd.read_parquet(io.BytesIO(read_file(package, "golden_inputs.parquet", manifest)))
    expected = pd.read_parquet(io.BytesIO(read_file(package, "golden_outputs.parquet", manifest)))
    schema = read_json(package, "input_schema.json", manifest)
    output = read_json(package, "output_schema.json", manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfRangeWarning)
        scored = score(model, schema, output, golden, "flag")
    differing = [
        c for c in expected.columns if c not in scored or not _same(expected[c], scored[c])
    ]
    if differing:
        problems.append(
            f"golden_outputs.parquet: {differing} differ from what this package computes"
        )
    else:
        passed.append(f"all {len(golden)} golden rows reproduce golden_outputs.parquet bit for bit")
    return passed, problems


def _verify_main(package: Path) -> int:
    try:
        passed, problems = verify(package)
    except (PackageError, InputError) as exc:
        print(f"{package}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for line in passed:
        print(f"  ok    {line}")
    for line in problems:
        print(f"  FAIL  {line}")
    print("verified" if not problems else f"NOT VERIFIED: {len(problems)} problem(s)")
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score rows with this deployment package.")
    parser.add_argument(
        "input", type=Path, nargs="?", help="CSV or Parquet with the input schema's columns"
    )
    parser.add_argument(
        "output", type=Path, nargs="?", help="CSV or Parquet to write predictions to"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check the package's files, this environment against requirements.txt, and that "
        "the golden inputs reproduce the recorded outputs bit for bit; score nothing",
    )
    parser.add_argument(
        "--out-of-range",
        choices=POLICIES,
        default=None,
        help="values inside the declared domain but outside the training range: 'flag' "
        f"(score them, counted in column {FLAG_COLUMN}) or 'reject' (refuse the input); "
        "default: the package's declared policy (input_schema.json out_of_range)",
    )
    parser.add_argument("--package", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    if args.verify:
        return _verify_main(args.package)
    if args.input is None or args.output is None:
        parser.error("INPUT and OUTPUT are required (or --verify, to check the package)")
    try:
        manifest = load_manifest(args.package)
        schema = read_json(args.package, "input_schema.json", manifest)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OutOfRangeWarning)
            predictions = predict(args.package, read_table(args.input, schema), args.out_of_range)
    except (PackageError, InputError) as exc:
        print(f"{args.input}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"{args.input}: warning: {warning.message}", file=sys.stderr)
    write_table(predictions, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
