"""Standalone loader and predictor shipped inside every deployment package as ``predict.py``.

It imports nothing from lifecycle_pipeline: production runs it with only the package's own
files and the libraries pinned by the package's ``uv.lock`` (numpy, pandas, pyarrow,
scikit-learn, skops, threadpoolctl). The pipeline's parity check and ``lifecycle predict``
run this very file, so development and production share one code path.

    python predict.py INPUT.csv OUTPUT.csv [--out-of-range reject|warn]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Types a package's model may contain beyond skops' defaults; anything else is refused.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


class PackageError(RuntimeError):
    """The package is incomplete or a file differs from its manifest."""


class InputError(ValueError):
    """Input rows that violate the package's input schema."""


class OutOfRangeWarning(UserWarning):
    """Input values far outside the training range, accepted under the 'warn' policy."""


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


def load_model(package: Path, manifest: dict[str, Any]) -> Any:
    """Load the skops model with an explicit trusted-type list; never trust everything."""
    import skops.io as sio

    data = read_file(package, "model.skops", manifest)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        # A pickle (or anything else) is refused before any loader sees it.
        raise PackageError(f"{package / 'model.skops'}: not a skops file; refusing to load.")
    untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    if untrusted:
        raise PackageError(
            f"{package / 'model.skops'}: untrusted type(s) {untrusted}; refusing to load."
        )
    return sio.loads(data, trusted=TRUSTED_TYPES)


def validate_input(
    frame: pd.DataFrame, schema: dict[str, Any], out_of_range: str = "reject"
) -> pd.DataFrame:
    """Check columns, types and ranges; name the row and column of every violation."""
    problems: list[str] = []
    columns = schema["columns"]
    if frame.empty:
        raise InputError("no rows to score (the input has a header and nothing else)")
    for column in columns:
        name = column["name"]
        if name not in frame.columns:
            problems.append(f"column {name!r}: missing")
    if problems:
        raise InputError("; ".join(problems))
    clean = pd.DataFrame(index=frame.index)
    for column in columns:
        name = column["name"]
        values = pd.to_numeric(frame[name], errors="coerce")
        bad = values.isna() & frame[name].notna()
        for row in frame.index[bad][:5]:
            problems.append(
                f"row {row}, column {name!r}: {str(frame.at[row, name])!r} is not a number"
            )
        for row in frame.index[frame[name].isna()][:5]:
            problems.append(f"row {row}, column {name!r}: missing value")
        finite = values[values.notna()]
        for row in finite.index[~np.isfinite(finite.to_numpy())][:5]:
            problems.append(f"row {row}, column {name!r}: {float(finite[row])} is not finite")
        clean[name] = values.astype("float64")
    if problems:
        raise InputError("; ".join(problems))
    violations = []
    for column in columns:
        name, low, high = column["name"], column["allowed_min"], column["allowed_max"]
        outside = clean.index[(clean[name] < low) | (clean[name] > high)]
        violations += [
            f"row {row}, column {name!r}: {clean[name].loc[row]:.6g} outside "
            f"[{low:.6g}, {high:.6g}] (training range "
            f"[{column['train_min']:.6g}, {column['train_max']:.6g}])"
            for row in outside[:5]
        ]
    if violations and out_of_range == "reject":
        raise InputError("; ".join(violations) + ". Use --out-of-range warn to score them anyway.")
    for message in violations:
        warnings.warn(message, OutOfRangeWarning, stacklevel=2)
    return clean[[c["name"] for c in columns]]


def predict(package: Path, frame: pd.DataFrame, out_of_range: str = "reject") -> pd.DataFrame:
    """Validate ``frame`` and score it: one row out per row in, probability and label."""
    from threadpoolctl import threadpool_limits

    package = Path(package)
    manifest = load_manifest(package)
    schema = json.loads(read_file(package, "input_schema.json", manifest))
    output = json.loads(read_file(package, "output_schema.json", manifest))
    model = load_model(package, manifest)
    features = validate_input(frame, schema, out_of_range)
    with threadpool_limits(limits=1):  # one thread: reductions in one order, bit-stable output
        probability = np.asarray(model.predict_proba(features))[:, 1].astype("float64")
    return pd.DataFrame(
        {
            "probability": probability,
            "label": (probability >= float(output["threshold"])).astype("int64"),
        },
        index=frame.index,
    )


def golden_digest(package: Path) -> tuple[str, str]:
    """(recorded, recomputed) prediction digest on the package's golden inputs."""
    from threadpoolctl import threadpool_limits

    manifest = load_manifest(package)
    golden = pd.read_parquet(io.BytesIO(read_file(package, "golden_inputs.parquet", manifest)))
    model = load_model(package, manifest)
    with threadpool_limits(limits=1):
        proba = np.ascontiguousarray(model.predict_proba(golden), dtype="<f8")
    digest = hashlib.sha256(f"{proba.shape}".encode() + proba.tobytes()).hexdigest()
    return manifest["golden"]["prediction_digest"], digest


def read_table(path: Path) -> pd.DataFrame:
    """Read input rows, turning every way a file can be unreadable into a named InputError."""
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})") from exc
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
    try:
        return pd.read_csv(io.StringIO(text), float_precision="round_trip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot be parsed as CSV ({exc})") from exc


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write next to the target and rename, so a reader never sees half of the predictions."""
    temporary = path.with_name(f".tmp-{path.name}")
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(temporary)
        else:
            frame.to_csv(temporary, float_format="%.17g")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score rows with this deployment package.")
    parser.add_argument("input", type=Path, help="CSV or Parquet with the input schema's columns")
    parser.add_argument("output", type=Path, help="CSV or Parquet to write predictions to")
    parser.add_argument("--out-of-range", choices=["reject", "warn"], default="reject")
    parser.add_argument("--package", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    try:
        predictions = predict(args.package, read_table(args.input), args.out_of_range)
    except (PackageError, InputError) as exc:
        print(f"{args.input}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    write_table(predictions, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
