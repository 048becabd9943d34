"""The dataset contract at work: strict parsing, validation against a declaration, inference.

Parsing is ours (Arrow, with messages that name the byte or the row); the rules a contract
declares (types, nulls, domain ranges, category sets) are checked by pandera with lazy
validation, so one run tells the data owner every broken rule at once, each with its column,
its rule, its first failing row and the declaration that states it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from lifecycle_pipeline.arrow_memory import use_system_allocator
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.missing import EMPTY_ONLY, MissingValues

use_system_allocator()

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Feature

PANDAS_DTYPE = {
    "numeric": "float64",
    "integer": "int64",
    "categorical": "object",
    "boolean": "bool",
}


class DataValidationError(LifecycleError, ValueError):
    """A data version does not satisfy its model's declared contract."""


@dataclass(frozen=True)
class ColumnProblem:
    column: str
    problem: str

    def __str__(self) -> str:
        return f"column {self.column!r}: {self.problem}"


BLOCK = 16 << 20  # Arrow's CSV block: at 1M rows, 15 blocks and the least memory measured


class _CsvScan:
    """The bytes on their way into Arrow's CSV reader, watched for what Arrow would report less
    clearly or not at all: an empty file, the first byte that is not UTF-8, and an odd number
    of double quotes (a quoted field never closed). Nothing is kept but counts."""

    def __init__(self, stream: Any) -> None:
        import codecs

        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.offset = 0
        self.quotes = 0
        self.data = False  # anything but whitespace seen
        self.bad_utf8: int | None = None  # offset of the first invalid byte
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self._stream.read(size)
        self.quotes += chunk.count(b'"')
        self.data = self.data or bool(chunk.strip())
        if self.bad_utf8 is None and not (chunk.isascii() and not self._decoder.getstate()[0]):
            pending = len(self._decoder.getstate()[0])
            try:
                self._decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                self.bad_utf8 = self.offset - pending + exc.start
        self.offset += len(chunk)
        return chunk

    def drain(self) -> None:
        while self.read(1 << 22):
            pass

    def problem(self, source: str) -> DataValidationError | None:
        """What is wrong with the whole file, in the order a reader should hear it."""
        if not self.data:
            return DataValidationError(f"{source}: the file is empty (0 data bytes).")
        if self.bad_utf8 is not None:
            return DataValidationError(
                f"{source}: not valid UTF-8 at byte {self.bad_utf8}; re-export the file as "
                "UTF-8, or declare `data.format: parquet` if it is a Parquet file."
            )
        if self.quotes % 2:  # valid CSV doubles quotes inside quoted fields: always even
            return DataValidationError(
                f"{source}: cannot be parsed as CSV (a quoted field is never closed); the file "
                "is truncated or was edited by hand."
            )
        return None


class DeclaredTypeMismatchError(DataValidationError):
    """A column declared numeric holds a value that is not a number. Read the file again
    without declared types (``typed=False``): validation then reports every problem at once,
    each with its column, its first row and its declaration."""


def parse_csv_stream(
    stream: Any,
    *,
    source: str,
    text_columns: tuple[str, ...] = (),
    number_columns: tuple[str, ...] = (),
    missing: MissingValues = EMPTY_ONLY,
) -> pd.DataFrame:
    """Parse CSV strictly as it is read, so that encoding and shape errors name the source.

    Arrow's streaming reader takes the file block by block: the raw file is never held whole,
    and the parsed blocks are the only copy until the frame is made from them column by column
    (at 1M rows the stage's peak fell from 3.1x the data to 1.6x against reading the bytes
    first; Arrow's multi-threaded reader holds every block of every thread as well). Arrow
    parses floats with correct rounding, so every value is bit-identical to what was written
    (as pandas' slower ``round_trip`` gives). ``text_columns`` (declared categoricals) are read
    as text, never guessed: a code such as "007" stays "007", as the package's predict.py reads
    it in production. ``number_columns`` (declared numeric) are read as float64, not guessed:
    inferring each column's type made Arrow's reader 2.5x slower (1M rows: 2.0 s against
    0.8 s); a value there that is not a number raises ``DeclaredTypeMismatchError``. The stream
    is read to its end whatever happens, so a caller that verifies its digest sees every
    byte. A field is missing exactly when ``missing`` (the model's reading rule) says so, in
    every column: Arrow's own defaults would keep an empty text field as ``''`` and take
    ``NA`` or ``null`` in a number column for missing, which predict.py would not.
    """
    import pyarrow as pa
    import pyarrow.csv as arrow_csv

    scan = _CsvScan(stream)
    table = failure = None
    try:
        reader = arrow_csv.open_csv(
            scan,
            read_options=arrow_csv.ReadOptions(block_size=BLOCK),
            parse_options=arrow_csv.ParseOptions(newlines_in_values=False),
            convert_options=arrow_csv.ConvertOptions(
                column_types=dict.fromkeys(number_columns, pa.float64())
                | dict.fromkeys(text_columns, pa.string()),
                **missing.arrow_csv_options(),
            ),
        )
        table = reader.read_all()
    except pa.ArrowInvalid as exc:
        failure = exc
    scan.drain()
    problem = scan.problem(source)
    if problem is not None:
        raise problem from failure
    if number_columns and "conversion error to double" in str(failure):
        raise DeclaredTypeMismatchError(f"{source}: {failure}") from failure
    if failure is not None or table is None:
        detail = str(failure) if len(str(failure)) < 200 else str(failure)[:200] + "..."
        raise DataValidationError(
            f"{source}: cannot be parsed as CSV ({detail}); a row with fewer or more fields "
            "than the header usually means a truncated or hand-edited file."
        ) from failure
    return _to_pandas(_nan_text_as_text(table), source)


def _nan_text_as_text(table: Any) -> Any:
    """Number columns in which Arrow parsed a field such as ``nan`` or ``NaN`` as a float NaN,
    as text: such a field is not a number, and it is missing only when the declaration lists
    it (then it is already null here). predict.py's reader keeps it as text too, so both
    refuse it by name instead of one scoring it as a gap."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if not pa.types.is_floating(field.type):
            continue
        column = table.column(i)
        nan = pc.is_nan(column)
        if not pc.any(nan).as_py():
            continue
        text = pc.if_else(nan, pa.scalar("nan"), pc.cast(column, pa.string()))
        table = table.set_column(i, pa.field(field.name, pa.string()), text)
    return table


def parse_csv(
    raw: bytes,
    *,
    source: str,
    text_columns: tuple[str, ...] = (),
    number_columns: tuple[str, ...] = (),
    missing: MissingValues = EMPTY_ONLY,
) -> pd.DataFrame:
    """``parse_csv_stream`` over bytes already in memory (a local file, a production batch),
    read again without declared types when a numeric column holds a non-number."""
    try:
        return parse_csv_stream(
            io.BytesIO(raw),
            source=source,
            text_columns=text_columns,
            number_columns=number_columns,
            missing=missing,
        )
    except DeclaredTypeMismatchError:
        return parse_csv_stream(
            io.BytesIO(raw), source=source, text_columns=text_columns, missing=missing
        )


def parse_parquet(raw: bytes, *, source: str, missing: MissingValues = EMPTY_ONLY) -> pd.DataFrame:
    """Read Parquet bytes straight into Arrow (no CSV detour); a damaged file is named.

    Nulls are missing, and so is a text value that is empty or a declared marker: the same
    rule as CSV, so converting a file between the formats changes nothing it means."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not raw:
        raise DataValidationError(f"{source}: the file is empty (0 bytes).")
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(
            f"{source}: not a readable Parquet file ({exc}); declare `data.format: csv` if it "
            "is CSV."
        ) from exc
    frame = _to_pandas(table, source)
    missing.blank_text(frame)
    return frame


def parse(
    raw: bytes,
    *,
    source: str,
    fmt: str,
    contract: Contract | None = None,
    missing: MissingValues = EMPTY_ONLY,
) -> pd.DataFrame:
    """A data file in its declared format; with ``contract``, categoricals are read as text.

    ``missing``: the model's reading rule (``DataSource.missing``); the default, for a file
    no declaration describes yet, reads only the empty field as missing."""
    if fmt == "parquet":
        return parse_parquet(raw, source=source, missing=missing)
    text = contract.of_type("categorical") if contract is not None else ()
    numbers = contract.of_type("numeric") if contract is not None else ()
    return parse_csv(raw, source=source, text_columns=text, number_columns=numbers, missing=missing)


def parse_stream(
    stream: Any,
    *,
    source: str,
    fmt: str,
    contract: Contract | None = None,
    typed: bool = True,
    missing: MissingValues = EMPTY_ONLY,
) -> pd.DataFrame:
    """``parse`` for a file read as a stream (a registry version): CSV is parsed as it is
    read; Parquet, compressed and read by its footer, is read whole first. A stream cannot
    be read twice: on ``DeclaredTypeMismatchError`` the caller opens it again and passes
    ``typed=False``."""
    if fmt == "parquet":
        return parse_parquet(stream.read(), source=source, missing=missing)
    text = contract.of_type("categorical") if contract is not None else ()
    numbers = contract.of_type("numeric") if contract is not None and typed else ()
    return parse_csv_stream(
        stream, source=source, text_columns=text, number_columns=numbers, missing=missing
    )


def _to_pandas(table: Any, source: str) -> pd.DataFrame:
    import pyarrow as pa

    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataValidationError(f"{source}: duplicated column header(s) {repeated}.")
    # Column by column, each Arrow buffer freed as soon as pandas owns its copy: the file
    # is never held twice in full.
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    _numpy_dtypes(frame)
    # A header that pandas once wrote from duplicated columns carries them as "x", "x.1".
    duplicated = [
        c
        for c in frame.columns
        if isinstance(c, str)
        and c.rpartition(".")[2].isdigit()
        and c.rpartition(".")[0] in frame.columns
    ]
    if duplicated:
        raise DataValidationError(f"{source}: duplicated column header(s) {duplicated}.")
    return frame


def _numpy_dtypes(frame: pd.DataFrame) -> None:
    """Plain numpy dtypes in place of pandas' nullable ones (a Parquet file written by pandas
    restores ``Int64``/``boolean``/``string``), so a missing value is NaN or None as in a CSV,
    never ``pd.NA``, which scikit-learn's encoders and imputers do not accept."""
    for name in frame.columns:
        dtype = frame[name].dtype
        if not isinstance(dtype, pd.api.extensions.ExtensionDtype) or isinstance(
            dtype, pd.CategoricalDtype | pd.DatetimeTZDtype
        ):
            continue
        values = frame[name]
        if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
            has_na = bool(values.isna().any())
            plain = "float64" if has_na else getattr(dtype, "numpy_dtype", "float64")
            frame[name] = values.astype(cast(Any, plain))
        else:  # boolean, string
            frame[name] = _none_where_missing(values.astype(object), values.isna())


def _none_where_missing(values: pd.Series, missing: pd.Series) -> pd.Series:
    out = values.copy()
    out[missing.to_numpy()] = None
    return out


def _first(values: pd.Series, mask: np.ndarray) -> str:
    row = values.index[mask][0]
    value = values.loc[row]
    return f"first at row {row}: {value.item() if isinstance(value, np.generic) else value!r}"


def _coerce(name: str, feature: Feature, values: pd.Series) -> tuple[pd.Series, str | None]:
    """The column in its declared type, or the reason it cannot be (naming a row)."""
    kind = feature.type
    if kind in ("numeric", "integer"):
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
            detail = _first(values, bad) if bad.any() else f"dtype {values.dtype}"
            return values, f"declared {kind} but holds non-numbers ({detail})"
        as_float = values.to_numpy(dtype="float64", na_value=np.nan)
        infinite = np.isinf(as_float)
        if infinite.any():
            return values, f"{int(infinite.sum())} infinite value(s) ({_first(values, infinite)})"
        if kind == "numeric":
            return (values if values.dtype == "float64" else values.astype("float64")), None
        fractional = ~np.isnan(as_float) & (as_float != np.round(as_float))
        if fractional.any():
            return values, (
                f"declared integer but holds fractions ({_first(values, fractional)}); "
                "declare it numeric"
            )
        if np.isnan(as_float).any():  # nulls are judged below; keep them as NaN
            return pd.Series(as_float, index=values.index), None
        return values.astype("int64"), None
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(values):
            return values, None
        mapped = values.map(
            {
                True: True,
                False: False,
                "true": True,
                "false": False,
                "True": True,
                "False": False,
            }
        )
        bad = (mapped.isna() & values.notna()).to_numpy()
        if bad.any():
            return values, f"declared boolean but holds {_first(values, bad)} (use true/false)"
        if mapped.isna().any():  # 1.0 / 0.0 / NaN: what estimators and imputers take
            return mapped.astype("float64"), None
        return mapped.astype("bool"), None
    # categorical: strings (or whole numbers used as codes), never floating-point measurements
    if pd.api.types.is_float_dtype(values):
        as_float = values.to_numpy(dtype="float64", na_value=np.nan)
        fractional = ~np.isnan(as_float) & (as_float != np.round(as_float))
        detail = _first(values, fractional) if fractional.any() else f"dtype {values.dtype}"
        return values, (
            f"declared categorical but holds floating-point numbers ({detail}); declare it "
            "numeric, or store the categories as text"
        )
    if pd.api.types.is_bool_dtype(values):
        return values, "declared categorical but holds booleans; declare it boolean"
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():  # read as text (as declared), yet all numbers
        as_float = numbers.to_numpy(dtype="float64")
        fractional = as_float != np.round(as_float)
        if fractional.any():
            row = present.index[fractional][0]
            return values, (
                f"declared categorical but holds floating-point numbers (first at row {row}: "
                f"{present.loc[row]}); declare it numeric, or store the categories as text"
            )
    # Missing is None, as Parquet gives it back and as predict.py passes it to the model:
    # NaN and None would be two different categories to a one-hot encoder.
    return _none_where_missing(values.astype(str).astype(object), values.isna()), None


def _pandera_schema(contract: Contract, columns: list[str]) -> Any:
    import pandera.pandas as pa

    spec: dict[str, Any] = {}
    for name in columns:
        feature = contract.features[name]
        checks = []
        if feature.range is not None:
            low, high = feature.range
            if low is not None:
                checks.append(pa.Check.ge(low, error=f"declared range: >= {low:g}"))
            if high is not None:
                checks.append(pa.Check.le(high, error=f"declared range: <= {high:g}"))
        if feature.categories is not None:
            checks.append(
                pa.Check.isin(
                    list(feature.categories),
                    error=f"declared categories {list(feature.categories)}",
                )
            )
        spec[name] = pa.Column(checks=checks, nullable=feature.nullable)
    return pa.DataFrameSchema(spec)


def _rule_problems(
    frame: pd.DataFrame, contract: Contract, columns: list[str]
) -> list[ColumnProblem]:
    """Nulls, ranges and category sets, all of them at once (pandera's lazy validation)."""
    import pandera.errors

    if not columns:
        return []
    try:
        # The frame as given (the typed columns alone), checked in place: the schema coerces
        # nothing, and selecting columns or pandera's default copy would each duplicate it.
        _pandera_schema(contract, columns).validate(frame, lazy=True, inplace=True)
    except pandera.errors.SchemaErrors as exc:
        _drop_pandera_accessor(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pandera's own concat of cases
            cases = exc.failure_cases
        problems = []
        for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
            rows = group["index"].dropna()
            case = group["failure_case"].iloc[0]
            case = case.item() if isinstance(case, np.generic) else case  # -1.0, not np.float64
            first = f", first at row {int(rows.iloc[0])}: {case!r}" if len(rows) else ""
            if check == "not_nullable":
                found = f"{len(group)} missing value(s) but not declared nullable"
            else:
                found = f"{len(group)} value(s) violate the {check}"
            problems.append(ColumnProblem(str(column), f"{found}{first}"))
        return problems
    _drop_pandera_accessor(frame)
    return []


def _drop_pandera_accessor(frame: pd.DataFrame) -> None:
    """Break the cycle pandera leaves: the frame caches its ``.pandera`` accessor, which
    points back at the frame, so the frame outlived the step until Python's cyclic collector
    happened to run (at 1M rows, 228 MiB held into the next stage)."""
    frame.__dict__.pop("pandera", None)


def validate(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    source: str,
    declaration: str,
    require_target: bool = True,
    allow_extra: bool = False,
    task: Any = None,
) -> pd.DataFrame:
    """Check a frame against ``contract``; return it in canonical column order and dtypes.

    A training version may not carry columns outside the contract (an identifier or a leaked
    outcome would otherwise ride along unrecorded) unless the contract drops them; production
    batches may (``allow_extra``: request ids, timestamps), and only the features are kept.
    Every problem is collected before raising, and the message names the declaration that
    states the rules.
    """
    from lifecycle_pipeline.tasks import task_for

    if frame.empty:
        raise DataValidationError(f"{source}: the data has no rows.")
    task = task or task_for(contract.task)
    features = list(contract.feature_names)
    required = [*features, contract.target] if require_target else features
    problems = [
        ColumnProblem(c, "required column is missing") for c in required if c not in frame.columns
    ]
    if not allow_extra:
        known = {*required, *contract.drop}
        problems += [
            ColumnProblem(
                str(c),
                "not part of the dataset contract; remove it from the file, or declare it "
                "under contract.features or contract.drop",
            )
            for c in frame.columns
            if c not in known
        ]
    clean: dict[str, pd.Series] = {}
    typed: list[str] = []
    for name in features:
        if name not in frame.columns:
            continue
        values, problem = _coerce(name, contract.features[name], frame[name])
        if problem:
            problems.append(ColumnProblem(name, problem))
        else:
            clean[name] = values
            typed.append(name)
    problems += _rule_problems(pd.DataFrame(clean, copy=False), contract, typed)
    if require_target and contract.target in frame.columns:
        target = frame[contract.target]
        if target.isna().any():
            first = int(target.index[target.isna().to_numpy()][0])
            problems.append(
                ColumnProblem(
                    contract.target,
                    f"{int(target.isna().sum())} missing label(s), first at row {first} (an "
                    "empty field or a data.missing_values marker); a row without its label "
                    "can be neither trained nor evaluated: label it, or remove it from the "
                    "data version",
                )
            )
        else:
            problems += [
                ColumnProblem(contract.target, p) for p in task.target_problems(target, contract)
            ]
    if problems:
        listing = "; ".join(str(p) for p in problems)
        raise DataValidationError(
            f"{source}: {len(problems)} problem(s) against the contract in {declaration}: "
            f"{listing}."
        )
    if require_target:
        target = frame[contract.target]
        dtype = task.target_dtype(contract) or _label_dtype(contract, target)
        clean[contract.target] = (
            target.astype(cast(Any, dtype)) if dtype and target.dtype != dtype else target
        )
    # In contract order without a copy (selecting columns would take one of every column).
    result = pd.DataFrame({name: clean[name] for name in required}, copy=False)
    result.index = pd.RangeIndex(len(result))
    return result


def _label_dtype(contract: Contract, target: pd.Series) -> str | None:
    """Whole-number class values read as floats (1.0) become the declared integers (1)."""
    values = [c.value for c in contract.classes or ()]
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return "int64" if whole and values and pd.api.types.is_float_dtype(target) else None


def infer_contract(frame: pd.DataFrame, *, target: str | None = None) -> dict[str, Any]:
    """A proposed ``contract:`` section for a data file, to be reviewed before use.

    Types come from the parsed columns; observed ranges are NOT proposed as domain bounds
    (the data shows what occurred, not what is possible: a reviewer adds bounds they know).
    Categories are listed when a text column has at most 50 distinct values. A column with a
    missing value, as the frame was read (``read_local`` with the rule the declaration will
    state), is proposed nullable; a missing value is never proposed as a category.
    """
    columns = list(frame.columns)
    if target is None:
        target = columns[-1]
    if target not in frame.columns:
        raise DataValidationError(f"target {target!r} is not a column; columns are {columns}.")
    features: dict[str, Any] = {}
    for name in columns:
        if name == target:
            continue
        values = frame[name]
        present = values.dropna()
        entry: dict[str, Any]
        if pd.api.types.is_bool_dtype(values) or (
            # true/false with gaps: Arrow gives objects (True, False, None), not a bool dtype
            len(present) and all(isinstance(v, bool | np.bool_) for v in present)
        ):
            entry = {"type": "boolean"}
        elif pd.api.types.is_integer_dtype(values):
            entry = {"type": "integer"}
        elif pd.api.types.is_numeric_dtype(values):
            entry = {"type": "numeric"}
        else:
            distinct = sorted(str(v) for v in values.dropna().unique())
            entry = {"type": "categorical"}
            if len(distinct) <= 50:
                entry["categories"] = distinct
        if values.isna().any():
            entry["nullable"] = True
        features[str(name)] = entry
    labels = frame[target]
    contract: dict[str, Any] = {"target": target}
    distinct_labels = pd.unique(labels.dropna())
    if pd.api.types.is_float_dtype(labels) or (
        pd.api.types.is_integer_dtype(labels) and len(distinct_labels) > 20
    ):
        contract["task"] = "regression"
    else:
        label_values = sorted(distinct_labels.tolist(), key=repr)
        contract["task"] = "binary" if len(label_values) == 2 else "multiclass"
        contract["classes"] = [
            {
                "value": _plain(v),
                "name": str(v),
                **({"positive": True} if i == 1 and len(label_values) == 2 else {}),
            }
            for i, v in enumerate(label_values)
        ]
    contract["row"] = "TODO: what one row is, in the domain's words"
    contract["features"] = features
    return contract


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def read_local(
    path: Path,
    fmt: str | None = None,
    contract: Contract | None = None,
    missing: MissingValues = EMPTY_ONLY,
) -> pd.DataFrame:
    """A local data file (for `lifecycle contract infer` and `lifecycle check`), read under
    the model's reading rule for missing values (``missing``)."""
    fmt = fmt or ("parquet" if path.suffix in (".parquet", ".pq") else "csv")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    return parse(raw, source=str(path), fmt=fmt, contract=contract, missing=missing)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()
