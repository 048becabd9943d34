"""Every bad input and fault the reliability suite tries, as data.

The tests are parametrized from these lists, and docs/reliability.md is rendered from the same
lists (tests/reliability/test_table.py fails when it is stale), so the table cannot drift away
from what is actually tested.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

NOTHING_LOST = (
    "run fails at `data_snapshot`; no `data_snapshot`/`features` materialization for the key; "
    "artifact store byte-identical (sha256 of every file before and after); no temporary files"
)


@dataclass(frozen=True)
class Fault:
    area: str
    name: str
    how: str  # what the test does
    expected: str  # the part of the error a user sees that the test requires
    proof: str = NOTHING_LOST
    make: Callable[[bytes], bytes] | None = None  # for data files: reference CSV -> bad bytes
    key: str | None = None  # for partition keys


def _frame(raw: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), float_precision="round_trip")


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format="%.17g").encode()


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[bytes], bytes]:
    return lambda raw: _csv(change(_frame(raw)))


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object}) if isinstance(value, str) else frame
        frame.loc[row, column] = value  # type: ignore[call-overload]
        return frame

    return change


def _header(raw: bytes) -> bytes:
    return raw.split(b"\n", 1)[0]


DATA_FILES = [
    Fault("data file", "missing column", "drop `mean_area`",
          "column 'mean_area': required column is missing",
          make=_edit(lambda f: f.drop(columns=["mean_area"]))),
    Fault("data file", "renamed column", "rename `mean_area` to `area_mean`",
          "column 'mean_area': required column is missing",
          make=_edit(lambda f: f.rename(columns={"mean_area": "area_mean"}))),
    Fault("data file", "wrong dtype", "text `twelve` in `mean_radius` row 7",
          "column 'mean_radius': must be numeric (first at row 7: 'twelve')",
          make=_edit(_set("mean_radius", 7, "twelve"))),
    Fault("data file", "NaN feature", "empty `mean_radius` in row 4",
          "column 'mean_radius': 1 missing value(s), first at row 4",
          make=_edit(_set("mean_radius", 4, float("nan")))),
    Fault("data file", "infinite feature", "`inf` in `mean_radius` row 4",
          "column 'mean_radius': 1 infinite value(s)",
          make=_edit(_set("mean_radius", 4, float("inf")))),
    Fault("data file", "NaN label", "empty `malignant` in row 3",
          "column 'malignant': 1 missing label(s), first at row 3",
          make=_edit(_set("malignant", 3, float("nan")))),
    Fault("data file", "label out of domain", "`malignant` = 5 in row 2",
          "column 'malignant': labels must be 0 or 1, found 5",
          make=_edit(_set("malignant", 2, 5))),
    Fault("data file", "0-byte file", "an empty file", "the file is empty (0 data bytes)",
          make=lambda raw: b""),
    Fault("data file", "header only", "the header line and no rows", "the data has no rows",
          make=lambda raw: _header(raw) + b"\n"),
    Fault("data file", "duplicated header column", "`mean_radius` twice in the header",
          "duplicated column header(s) ['mean_radius.1']",
          make=_edit(lambda f: f.assign(**{"mean_radius.1": f["mean_radius"]}))),
    Fault("data file", "duplicated header row", "the header line repeated as the first row",
          "must be numeric (first at row 0: 'mean_radius')",
          make=lambda raw: _header(raw) + b"\n" + raw),
    Fault("data file", "non-UTF-8 bytes", "a Latin-1 `ä` in the header",
          "not valid UTF-8 at byte 6; re-export the file as UTF-8",
          make=lambda raw: raw.replace(b"mean_radius", b"mean_r\xe4dius", 1)),
    Fault("data file", "truncated file", "the file cut in the middle of row 283",
          "1 missing value(s), first at row 283",
          make=lambda raw: raw[: len(raw) // 2]),
]  # fmt: skip

PARTITION_KEYS = [
    Fault("partition key", "parent traversal", "`../x`", "Invalid partition key '../x'",
          key="../x"),
    Fault("partition key", "absolute path", "`/etc/passwd`", "Invalid partition key '/etc/passwd'",
          key="/etc/passwd"),
    Fault("partition key", "path separator", "`data/v1`", "Invalid partition key 'data/v1'",
          key="data/v1"),
    Fault("partition key", "trailing dots", "`data-v1..`", "Invalid partition key 'data-v1..'",
          key="data-v1.."),
    Fault("partition key", "very long", "a 300-character key", "Invalid partition key 'aaaa",
          key="a" * 300),
    Fault("partition key", "unicode", "`données-v1`", "Invalid partition key 'données-v1'",
          key="données-v1"),
    Fault("partition key", "shell metacharacters", "`v1;rm -rf ~`",
          "Invalid partition key 'v1;rm -rf ~'", key="v1;rm -rf ~"),
    Fault("partition key", "unknown version", "`data-v99` (no such tag)",
          "Registry revision 'data-v99' cannot be opened in registry", key="data-v99"),
]  # fmt: skip

ALL = [*DATA_FILES, *PARTITION_KEYS]


def tag(fault: Fault) -> str:
    """The registry tag a data-file fault is published under."""
    return "bad-" + fault.name.replace(" ", "-").replace("/", "-").lower()
