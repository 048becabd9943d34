"""The reading rule for missing values, in one place: a field is missing when it is empty or
equals one of the markers a model's declaration lists (``data.missing_values``).

Every reader of a model's data follows it: training's (data_snapshot), drift's production
batches, `lifecycle check` and contract inference read through Arrow with
``arrow_csv_options``; the deployment package's ``predict.py``, which cannot import this
project, gets the same markers in its ``input_schema.json`` (``to_schema``) and reads with
pandas under the same rule (``keep_default_na=False``, ``na_values`` = the markers). Neither
library's own default stands in: Arrow keeps an empty text field as ``''`` and reads ``NA``,
``null`` or ``NaN`` in a number column as missing; pandas reads ``None``, ``NA``, ``n/a`` and
a dozen more as missing anywhere. A marker is matched against the whole field, case and
spaces included, after CSV unquoting, in every column whatever its declared type: a category
called ``NA`` and a declared marker ``NA`` cannot both exist.

predict.py carries its own copy of the pandas side and of ``blank_text`` (it imports nothing
from here); tests/test_missing_values.py proves on generated tables that both readers mark the
same fields missing.

In Parquet a null is missing; a text value that is empty or a declared marker is missing too,
so a file converted between CSV and Parquet means the same. Markers are text: a numeric
sentinel stored as a number in Parquet (-999) is a number, not a missing value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

EMPTY = ""
# input_schema.json's key for the markers. A schema without it was written by a package
# format that read with pandas' defaults; its predict.py still does.
SCHEMA_KEY = "missing_values"


@dataclass(frozen=True)
class MissingValues:
    """The declared markers (``data.missing_values``); the empty field is always one."""

    tokens: tuple[str, ...] = ()

    @property
    def markers(self) -> tuple[str, ...]:
        """Every field value read as missing, the empty field first."""
        return (EMPTY, *self.tokens)

    def arrow_csv_options(self) -> dict[str, Any]:
        """``pyarrow.csv.ConvertOptions`` arguments: exactly the markers are null, in text
        columns too, quoted or not (as pandas reads a quoted marker)."""
        return {
            "null_values": list(self.markers),
            "strings_can_be_null": True,
            "quoted_strings_can_be_null": True,
        }

    def to_schema(self) -> dict[str, list[str]]:
        """The rule as the package carries it in ``input_schema.json``."""
        return {SCHEMA_KEY: list(self.markers)}

    def blank_text(self, frame: pd.DataFrame) -> None:
        """In place: text values that are markers become None (Parquet's text columns, whose
        nulls are already missing)."""
        markers = set(self.markers)
        for name in frame.columns:
            values = frame[name]
            if values.dtype != object:
                continue
            hit = values.map(lambda v: isinstance(v, str) and v in markers).to_numpy(dtype=bool)
            if hit.any():
                out = values.copy()
                out[hit] = None
                frame[name] = out


# The rule for a file no declaration describes yet (`lifecycle contract infer`, `new-model`):
# only the empty field is missing.
EMPTY_ONLY = MissingValues()
