"""The sample's declared contract at work: every violation is named with its column and row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lifecycle_pipeline.contract import DataValidationError, parse_csv, parse_parquet, validate
from lifecycle_pipeline.sample_data import reference_frame
from tests.conftest import SAMPLE_MODEL

CONTRACT = SAMPLE_MODEL.model.contract
FEATURES, TARGET = CONTRACT.feature_names, CONTRACT.target


def validate_frame(
    frame: pd.DataFrame, *, source: str, require_target: bool = True, allow_extra: bool = False
) -> pd.DataFrame:
    return validate(
        frame,
        CONTRACT,
        source=source,
        declaration=str(SAMPLE_MODEL.path),
        require_target=require_target,
        allow_extra=allow_extra,
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return reference_frame()


def test_reference_data_satisfies_the_contract(reference: pd.DataFrame) -> None:
    clean = validate_frame(reference, source="ref")
    assert list(clean.columns) == [*FEATURES, TARGET]
    assert clean[list(FEATURES)].dtypes.unique().tolist() == [np.dtype("float64")]
    assert set(clean[TARGET]) == {0, 1}


def test_column_order_is_canonical_and_extra_columns_only_pass_in_batches(
    reference: pd.DataFrame,
) -> None:
    shuffled = reference[list(reversed(reference.columns))]
    assert list(validate_frame(shuffled, source="s").columns) == [*FEATURES, TARGET]
    with_notes = shuffled.assign(notes="x")
    with pytest.raises(DataValidationError, match="column 'notes': not part of the dataset"):
        validate_frame(with_notes, source="s")  # a training version: nothing rides along
    batch = validate_frame(with_notes, source="s", require_target=False, allow_extra=True)
    assert list(batch.columns) == list(FEATURES)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda f: f.drop(columns=["worst_area"]),
            "column 'worst_area': required column is missing",
        ),
        (lambda f: f.drop(columns=[TARGET]), f"column '{TARGET}': required column is missing"),
        (
            lambda f: f.assign(mean_radius=np.nan),
            "column 'mean_radius': 569 missing value(s) but not declared nullable, first at row 0",
        ),
        (lambda f: f.assign(se_area=np.inf), "column 'se_area': 569 infinite value(s)"),
        (
            lambda f: f.assign(malignant=2),
            f"column '{TARGET}': label(s) 2 are not among the declared classes [0, 1]",
        ),
        (lambda f: f.assign(malignant=1), f"column '{TARGET}': only one class present (1)"),
        (
            lambda f: f.assign(mean_area=True),
            "column 'mean_area': declared numeric but holds non-numbers",
        ),
        (
            lambda f: f.assign(mean_area=-1.0),
            "column 'mean_area': 569 value(s) violate the declared range: >= 0, first at row 0",
        ),
        (lambda f: f.iloc[0:0], "the data has no rows"),
    ],
)
def test_violations_are_named(reference: pd.DataFrame, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataValidationError) as error:
        validate_frame(mutate(reference.copy()), source="registry@data-vX:data.csv")
    assert str(error.value).startswith("registry@data-vX:data.csv: ")
    assert expected in str(error.value)
    if "no rows" not in expected:  # the rules' source is named
        assert f"against the contract in {SAMPLE_MODEL.path}" in str(error.value)


def test_all_problems_are_reported_at_once(reference: pd.DataFrame) -> None:
    broken = reference.drop(columns=["mean_area", "worst_area"])
    with pytest.raises(DataValidationError, match="2 problem"):
        validate_frame(broken, source="s")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "the file is empty"),
        (b"   \n", "the file is empty"),
        (b"a,b\n\xff\xfe,1\n", "not valid UTF-8 at byte 4"),
        (b"a,a\n1,2\n", "duplicated column header(s) ['a']"),
        (b"a,a.1\n1,2\n", "duplicated column header(s) ['a.1']"),
        (b'a,b\n1,"2\n', "cannot be parsed as CSV (a quoted field is never closed)"),
        (b"a,b\n1,2\n3\n", "cannot be parsed as CSV (CSV parse error: Expected 2 columns, got 1"),
    ],
)
def test_unparseable_files_are_named(raw: bytes, expected: str) -> None:
    with pytest.raises(DataValidationError) as error:
        parse_csv(raw, source="data.csv")
    assert expected in str(error.value)


def test_parquet_is_read_straight_and_a_damaged_file_is_named(reference: pd.DataFrame) -> None:
    import io

    buffer = io.BytesIO()
    reference.to_parquet(buffer, index=False)
    frame = parse_parquet(buffer.getvalue(), source="data.parquet")
    pd.testing.assert_frame_equal(frame, reference)
    with pytest.raises(DataValidationError, match=r"data.parquet: not a readable Parquet file"):
        parse_parquet(buffer.getvalue()[:100], source="data.parquet")
    with pytest.raises(DataValidationError, match=r"x.csv: not valid UTF-8 at byte .*parquet"):
        parse_csv(buffer.getvalue(), source="x.csv")  # Parquet declared as CSV: the fix is named


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_declared_numeric_columns_read_as_declared_give_the_inferred_values(
    reference: pd.DataFrame,
) -> None:
    """Numeric columns are read as float64 from the declaration (not guessed): every value is
    the one type inference gave, bit for bit, including whole numbers, blanks, 'nan',
    infinities and subnormals; a valid version validates to the same frame either way."""
    from lifecycle_pipeline.contract import parse

    edge = reference.head(6).copy()
    edge["mean_radius"] = edge["mean_radius"].astype(object)
    edge.loc[:, "mean_radius"] = ["3", "", "nan", "1e-320", "-0.0", "inf"]
    edge["mean_area"] = [1, 2, 3, 4, 5, 6]  # whole numbers: inferred int64, declared float64
    raw = _csv(edge)
    typed = parse(raw, source="edge.csv", fmt="csv", contract=CONTRACT)
    guessed = parse_csv(raw, source="edge.csv")
    assert typed["mean_area"].dtype == np.dtype("float64")
    assert guessed["mean_area"].dtype == np.dtype("int64")  # what typing spares validation
    for column in FEATURES:
        left = typed[column].to_numpy(dtype="float64")
        right = guessed[column].to_numpy(dtype="float64")
        assert left.view("u8").tolist() == right.view("u8").tolist(), column
    whole = _csv(reference)
    pd.testing.assert_frame_equal(
        validate_frame(parse(whole, source="r.csv", fmt="csv", contract=CONTRACT), source="r"),
        validate_frame(parse_csv(whole, source="r.csv"), source="r"),
        check_exact=True,
    )


def test_a_non_number_in_a_numeric_column_is_still_named_with_every_other_problem(
    reference: pd.DataFrame,
) -> None:
    """The typed read stops at the first value that is not a number; the file is then read
    with inferred types, so the report is the one untyped reading gave: every column, its
    first row, all at once. A stream, which cannot be read again, says so by its own error
    type after reading to its end (so its digest can still be checked)."""
    import io

    from lifecycle_pipeline.contract import DeclaredTypeMismatchError, parse, parse_stream

    broken = reference.head(50).astype({"mean_area": object, "worst_area": object})
    broken.loc[7, "mean_area"] = "n/a?"
    broken.loc[9, "worst_area"] = "twelve"
    broken.loc[3, "mean_radius"] = -1.0
    raw = _csv(broken)
    with pytest.raises(DataValidationError) as error:
        validate_frame(parse(raw, source="b.csv", fmt="csv", contract=CONTRACT), source="b.csv")
    message = str(error.value)
    assert (
        "column 'mean_area': declared numeric but holds non-numbers (first at row 7: 'n/a?')"
        in message
    )
    assert (
        "column 'worst_area': declared numeric but holds non-numbers (first at row 9: 'twelve')"
        in message
    )
    assert (
        "column 'mean_radius': 1 value(s) violate the declared range: >= 0, first at row 3"
        in message
    )
    stream = io.BytesIO(raw)
    with pytest.raises(DeclaredTypeMismatchError, match=r"^b\.csv: .*conversion error to double"):
        parse_stream(stream, source="b.csv", fmt="csv", contract=CONTRACT)
    assert stream.tell() == len(raw)
    untyped = parse_stream(
        io.BytesIO(raw), source="b.csv", fmt="csv", contract=CONTRACT, typed=False
    )
    assert untyped["mean_area"].dtype == np.dtype("object")
