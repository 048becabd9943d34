"""A generated model zoo: small datasets and their declarations, of every kind a team brings.

Seeded, so a failure is reproduced by its seed (``LIFECYCLE_ZOO_SEED``), yet not chosen by
whoever wrote the code: the seed draws the column names, the distributions, where values are
missing, how a category is spelled, the target's type and the file format. Each kind a team
may bring is covered by construction (``kinds``): every task; numeric, integer, categorical
and boolean features, each with missing values; string and integer targets; an identifier
column to drop; CSV and Parquet; category codes that look like numbers ("007").
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TASKS = ("binary", "multiclass", "regression")
WORDS = ("alpha", "birch", "cedar", "delta", "ember", "fjord", "grove", "heath", "iris", "juniper")


@dataclass(frozen=True)
class Kind:
    """What one generated model must exercise."""

    task: str
    fmt: str  # csv | parquet
    string_target: bool


@dataclass
class ZooModel:
    """One generated model: its data versions, a calm production batch, and what they hold."""

    name: str
    kind: Kind
    target: str
    id_column: str
    features: dict[str, str]  # column -> declared type
    versions: dict[str, pd.DataFrame] = field(default_factory=dict)
    batch: pd.DataFrame | None = None

    @property
    def suffix(self) -> str:
        return ".parquet" if self.kind.fmt == "parquet" else ".csv"

    def tag(self, number: int) -> str:
        return f"{self.name}-v{number}"

    def write(self, frame: pd.DataFrame, path: Path) -> Path:
        """The file a team's export would give: CSV with empty fields where values are
        missing and true/false for booleans; Parquet with nulls."""
        if self.kind.fmt == "parquet":
            frame.to_parquet(path, index=False, engine="pyarrow")
        else:
            path.write_text(to_csv(frame), encoding="utf-8")
        return path


def kinds() -> list[Kind]:
    """Every task, each format, both target types, in as few models as that takes."""
    return [
        Kind("binary", "csv", string_target=True),
        Kind("multiclass", "parquet", string_target=False),
        Kind("regression", "csv", string_target=False),
        Kind("multiclass", "csv", string_target=True),
        Kind("binary", "parquet", string_target=False),
    ]


def to_csv(frame: pd.DataFrame) -> str:
    """Text as exported by hand: an empty field for a missing value, floats written with
    enough digits to read back the same double, booleans as true/false."""
    lines = [",".join(frame.columns)]
    columns = [frame[c].tolist() for c in frame.columns]
    for row in zip(*columns, strict=True):
        lines.append(",".join(_cell(v) for v in row))
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def generate(seed: int, index: int, kind: Kind, rows: tuple[int, int] = (320, 400)) -> ZooModel:
    """One model of ``kind``: two data versions (the second a larger draw of the same
    population) and a calm batch of 60 rows from it."""
    rng = np.random.default_rng([seed, index])
    word = WORDS[int(rng.integers(len(WORDS)))]
    name = f"zoo_{word}_{index}"
    numeric, integer, categorical, boolean = (
        f"{word}_{suffix}" for suffix in ("level", "count", "code", "flag")
    )
    target = f"{word}_outcome"
    id_column = f"{word}_id"
    codes = _codes(rng)
    effects = dict(zip(codes, rng.normal(0, 1.2, len(codes)), strict=True))
    scale = float(rng.uniform(5, 50))
    centre = float(rng.uniform(-100, 100))

    def draw(n: int, start: int) -> pd.DataFrame:
        level = rng.normal(centre, scale, n)
        count = rng.integers(0, 25, n)
        code = rng.choice(codes, n)
        flag = rng.random(n) < 0.4
        signal = (
            1.4 * (level - centre) / scale
            + 0.12 * (count - 12)
            + np.array([effects[c] for c in code])
            + 0.8 * flag
        )
        noisy = signal + rng.normal(0, 0.5, n)
        frame = pd.DataFrame(
            {
                id_column: np.arange(start, start + n) * 7 + 1000,  # unique: an identifier
                numeric: level,
                integer: pd.array(count, dtype="Int64"),
                categorical: pd.array(code, dtype="string"),
                boolean: pd.array(flag, dtype="boolean"),
            }
        )
        for column, rate in (
            (numeric, 0.08),
            (integer, 0.05),
            (categorical, 0.07),
            (boolean, 0.05),
        ):
            missing = rng.random(n) < rate
            missing[:1] = True  # every column has at least one missing value
            frame.loc[missing, column] = pd.NA
        frame[target] = _target(kind, noisy)
        return frame

    first = draw(rows[0], 0)
    second = pd.concat([first, draw(rows[1] - rows[0], rows[0])], ignore_index=True)
    return ZooModel(
        name=name,
        kind=kind,
        target=target,
        id_column=id_column,
        features={
            numeric: "numeric",
            integer: "integer",
            categorical: "categorical",
            boolean: "boolean",
        },
        versions={model_tag(name, 1): first, model_tag(name, 2): second},
        batch=draw(60, rows[1]).drop(columns=[target]),
    )


def model_tag(name: str, number: int) -> str:
    return f"{name}-v{number}"


def _codes(rng: np.random.Generator) -> list[str]:
    """Category codes as teams spell them: zero-padded numbers that must stay text, and
    short labels."""
    pool = ["007", "010", "12", "A-1", "b2", "x", "0"]
    picked = rng.choice(len(pool), size=int(rng.integers(3, 5)), replace=False)
    return [pool[i] for i in sorted(picked)]


def _target(kind: Kind, signal: np.ndarray) -> Any:
    if kind.task == "regression":
        return np.round(50 + 12 * signal, 3)
    if kind.task == "binary":
        positive = signal > np.median(signal)
        if kind.string_target:
            return np.where(positive, "yes", "no")
        return positive.astype("int64")
    cuts = np.quantile(signal, [1 / 3, 2 / 3])
    band = np.digitize(signal, cuts)
    if kind.string_target:
        return np.array(["low", "mid", "high"])[band]
    return band.astype("int64") + 1
