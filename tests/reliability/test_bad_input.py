"""Bad input where it enters: each case fails clearly, records nothing and touches nothing."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lifecycle_pipeline import contract
from lifecycle_pipeline.lineage.query import latest
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    copy_registry,
    scratch_pipeline,
    tree_digest,
)
from tests.reliability.cases import DATA_FILES, MODEL_CARD_SPECS, PARTITION_KEYS, Fault, tag
from tests.test_bad_versions import failure_text

pytestmark = pytest.mark.xdist_group("bad_input")


@pytest.fixture(scope="session")
def bad_pipeline(
    demo_registry: Registry, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """A registry with one tag per bad file, and data-v1 materialized as the earlier version."""
    base = tmp_path_factory.mktemp("bad_input")
    registry = copy_registry(demo_registry, base)
    reference = (sample_dir / "versions" / "data-v1" / "breast_cancer.csv").read_bytes()
    for fault in DATA_FILES:
        assert fault.make is not None
        registry.publish(tag(fault), fault.make(reference))
    (base / "pipeline").mkdir()
    with scratch_pipeline(registry, base / "pipeline") as pipeline:
        assert pipeline.run("data-v1").success
        yield pipeline


def _assert_fails_and_loses_nothing(pipeline: Pipeline, key: str, expected: str) -> None:
    before = tree_digest(pipeline.artifacts)
    result = pipeline.run(key)
    assert not result.success
    message = failure_text(result)
    assert expected in message, message
    failed = [e.step_key for e in result.get_step_failure_events()]
    assert failed == [pipeline.op("data_snapshot")]
    assert latest(pipeline.instance, pipeline.key("data_snapshot"), key) is None
    assert latest(pipeline.instance, pipeline.key("features"), key) is None
    assert tree_digest(pipeline.artifacts) == before  # earlier versions byte-identical
    assert not list(pipeline.artifacts.rglob(".tmp-*"))


@pytest.mark.parametrize("fault", DATA_FILES, ids=[f.name for f in DATA_FILES])
def test_bad_data_file(bad_pipeline: Pipeline, fault: Fault) -> None:
    _assert_fails_and_loses_nothing(bad_pipeline, tag(fault), fault.expected)


@pytest.mark.parametrize("fault", PARTITION_KEYS, ids=[f.name for f in PARTITION_KEYS])
def test_bad_partition_key(bad_pipeline: Pipeline, fault: Fault) -> None:
    assert fault.key is not None
    _assert_fails_and_loses_nothing(bad_pipeline, fault.key, fault.expected)


@pytest.mark.parametrize("fault", MODEL_CARD_SPECS, ids=[f.name for f in MODEL_CARD_SPECS])
def test_bad_model_card_spec(bad_pipeline: Pipeline, fault: Fault, tmp_path: Path) -> None:
    """The spec is read when model_card runs: a bad one fails that stage and records nothing."""
    spec = tmp_path / "model_card.yaml"
    spec.write_bytes(fault.value)
    before = tree_digest(bad_pipeline.artifacts)
    card = bad_pipeline.key("model_card")
    cards = latest(bad_pipeline.instance, card, "data-v1")
    result = bad_pipeline.run(
        "data-v1",
        run_config={"ops": {bad_pipeline.op("model_card"): {"config": {"spec_path": str(spec)}}}},
        selection=[card],
    )
    assert not result.success
    message = failure_text(result)
    assert fault.expected in message and str(spec) in message, message
    failed = [e.step_key for e in result.get_step_failure_events()]
    assert failed == [bad_pipeline.op("model_card")]
    after = latest(bad_pipeline.instance, card, "data-v1")
    assert after is not None and cards is not None and after.run_id == cards.run_id
    assert tree_digest(bad_pipeline.artifacts) == before
    assert not list(bad_pipeline.artifacts.rglob(".tmp-*"))


FEATURES = SAMPLE_MODEL.model.contract.feature_names
TARGET = SAMPLE_MODEL.model.contract.target


def validate(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The sample's contract, as data_snapshot applies it."""
    return contract.validate(
        frame, SAMPLE_MODEL.model.contract, source=source, declaration=str(SAMPLE_MODEL.path)
    )


def _valid_frame(sample_dir: Path) -> pd.DataFrame:
    raw = (sample_dir / "versions" / "data-v1" / "breast_cancer.csv").read_bytes()
    return contract.parse_csv(raw, source="reference").head(40)


MUTATIONS = st.sampled_from(["drop", "nan", "inf", "text", "label", "empty"])


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    mutation=MUTATIONS,
    column=st.sampled_from([*FEATURES, TARGET]),
    row=st.integers(min_value=0, max_value=39),
)
def test_malformed_frames_are_refused_naming_the_column(
    sample_dir: Path, mutation: str, column: str, row: int
) -> None:
    """Whatever goes wrong in whichever column and row, validation names it, never guesses."""
    frame = _valid_frame(sample_dir)
    if mutation == "drop":
        frame = frame.drop(columns=[column])
    elif mutation == "empty":
        frame = frame.iloc[0:0]
    else:
        value: object = {"nan": np.nan, "inf": np.inf, "text": "n/a", "label": 7}[mutation]
        if mutation == "label" and column != TARGET:
            value = np.inf
        # The column takes the bad value in a dtype that can hold it, as a file would give.
        frame = frame.astype({column: object if mutation == "text" else "float64"})
        frame.loc[row, column] = value  # type: ignore[call-overload]
    with pytest.raises(contract.DataValidationError) as error:
        validate(frame, source="generated.csv")
    message = str(error.value)
    assert message.startswith("generated.csv: ")
    assert mutation == "empty" or f"column '{column}'" in message


CONTRACT = (*FEATURES, TARGET)
TEXTS = ("twelve", "12mm", "n.a.")  # not numbers, and not what a CSV reader takes for empty
BAD_LABELS = (2, -1, 7)


@st.composite
def contract_frames(draw: st.DrawFn) -> dict[str, list[object]]:
    """Every column of the contract, valid values, and up to four cells made bad in one of
    the ways a file goes wrong: a gap, an infinity, text in a number column, a foreign label."""
    rows = draw(st.integers(min_value=2, max_value=8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Inside the declared domain (measurements are never negative).
    values = rng.uniform(1.0, 20.0, (len(FEATURES), rows))
    cells: dict[str, list[object]] = {
        column: [float(v) for v in column_values]
        for column, column_values in zip(FEATURES, values, strict=True)
    }
    cells[TARGET] = [row % 2 for row in range(rows)]  # both classes
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        column = draw(st.just(TARGET) | st.sampled_from(FEATURES))
        row = draw(st.integers(min_value=0, max_value=rows - 1))
        bad: list[object] = [math.nan, *TEXTS]
        bad += list(BAD_LABELS) if column == TARGET else [math.inf, -math.inf]
        cells[column][row] = draw(st.sampled_from(bad))
    return cells


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _problems(cells: dict[str, list[object]]) -> dict[str, dict[str, str]]:
    """What the contract says about the cells, column by column (rule -> the message's text),
    worked out from the cells themselves."""
    expected: dict[str, dict[str, str]] = {}
    for column in FEATURES:
        values = cells[column]
        texts = [row for row, v in enumerate(values) if isinstance(v, str)]
        gaps = [row for row, v in enumerate(values) if _is_nan(v)]
        infinite = [v for v in values if isinstance(v, float) and math.isinf(v)]
        found: dict[str, str] = {}
        # A column not of its declared type is reported for that alone (its other rules
        # cannot be judged on values that are not numbers).
        if texts:
            first = texts[0]
            found["text in a number"] = (
                f"declared numeric but holds non-numbers (first at row {first}: {values[first]!r})"
            )
        elif infinite:
            first = next(r for r, v in enumerate(values) if isinstance(v, float) and math.isinf(v))
            found["infinite value"] = (
                f"{len(infinite)} infinite value(s) (first at row {first}: {values[first]!r})"
            )
        elif gaps:
            found["missing value"] = (
                f"{len(gaps)} missing value(s) but not declared nullable, first at row {gaps[0]}"
            )
        if found:
            expected[column] = found
    labels = cells[TARGET]
    gaps = [row for row, v in enumerate(labels) if _is_nan(v)]
    foreign = sorted({v for v in labels if isinstance(v, str) or v not in (0, 1)}, key=repr)
    if gaps:
        missing = f"{len(gaps)} missing label(s), first at row {gaps[0]}"
        expected[TARGET] = {"missing label": missing}
    elif foreign:
        shown = ", ".join(repr(v) for v in foreign)
        found_labels = f"label(s) {shown} are not among the declared classes [0, 1]"
        expected[TARGET] = {"foreign label": found_labels}
    return expected


def _named(message: str) -> set[str]:
    return set(re.findall(r"column '([^']+)': ", message))


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cells=contract_frames())
def test_frames_holding_the_contract_are_judged_cell_by_cell(
    cells: dict[str, list[object]],
) -> None:
    """Every required column is present, so each rule is reached: the message names exactly
    the columns with bad cells, each with the rule it breaks, and a clean frame passes."""
    frame = pd.DataFrame(cells)
    expected = _problems(cells)
    for problems in expected.values():  # --hypothesis-show-statistics: how often each rule
        for rule in problems:
            event(rule)
    if not expected:
        event("clean frame")
        clean = validate(frame, source="generated.csv")
        assert list(clean.columns) == list(CONTRACT)
        assert clean.to_numpy().tolist() == frame[list(CONTRACT)].to_numpy().tolist()
        return
    with pytest.raises(contract.DataValidationError) as error:
        validate(frame, source="generated.csv")
    message = str(error.value)
    count = sum(len(problems) for problems in expected.values())
    assert message.startswith(
        f"generated.csv: {count} problem(s) against the contract in {SAMPLE_MODEL.path}: "
    ), message
    for column, problems in expected.items():
        for problem in problems.values():
            assert f"column {column!r}: {problem}" in message, (problem, message)
    assert _named(message) == set(expected), message
    # Written to CSV and read back as a data version is, the same columns are named.
    raw = frame.to_csv(index=False).encode()
    with pytest.raises(contract.DataValidationError) as reread:
        validate(contract.parse_csv(raw, source="x.csv"), source="x.csv")
    assert _named(str(reread.value)) == set(expected), str(reread.value)


# The second demo model: Parquet data, a categorical feature, declared domain ranges. Each
# bad version fails data_snapshot naming the column, the rule and the declaration, and loses
# nothing, exactly as the sample's bad files do.
def _diabetes_bytes(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> bytes:
    import io

    from lifecycle_pipeline.sample_data import diabetes_frame

    buffer = io.BytesIO()
    edit(diabetes_frame()).to_parquet(buffer, index=False)
    return buffer.getvalue()


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """One cell changed; a text value makes the whole column text, as a file would hold it."""

    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: str if isinstance(value, str) else object})
        frame.loc[row, column] = value  # type: ignore[call-overload]
        return frame

    return edit


DIABETES_FAULTS = {
    "category outside the declared set": (
        _set("sex", 3, "sex_9"),
        "column 'sex': 1 value(s) violate the declared categories ['sex_1', 'sex_2'], first at "
        "row 3: 'sex_9'",
    ),
    "below the declared domain": (
        _set("bmi", 5, -1.0),
        "column 'bmi': 1 value(s) violate the declared range: >= 0, first at row 5: -1.0",
    ),
    "text in a number column": (
        _set("age", 2, "sixty"),
        "column 'age': declared integer but holds non-numbers (first at row 2: 'sixty')",
    ),
    "a truncated Parquet file": (
        None,
        "not a readable Parquet file",
    ),
}


@pytest.fixture(scope="session")
def bad_diabetes(
    demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    from lifecycle_pipeline.declaration import load_declaration

    model = load_declaration(PROJECT_ROOT / "models" / "diabetes")
    base = tmp_path_factory.mktemp("bad_diabetes")
    registry = copy_registry(demo_registry, base)
    for number, (edit, _) in enumerate(DIABETES_FAULTS.values()):
        good = _diabetes_bytes(lambda frame: frame)
        data = good[: len(good) // 2] if edit is None else _diabetes_bytes(edit)
        registry.publish(f"diabetes-bad-{number}", data, model.model.data.path)
    (base / "pipeline").mkdir()
    with scratch_pipeline(registry, base / "pipeline", model=model) as pipeline:
        assert pipeline.run("diabetes-v1").success
        yield pipeline


@pytest.mark.parametrize("name", list(DIABETES_FAULTS))
def test_bad_data_of_the_second_model_fails_naming_column_rule_and_declaration(
    bad_diabetes: Pipeline, name: str
) -> None:
    number = list(DIABETES_FAULTS).index(name)
    expected = DIABETES_FAULTS[name][1]
    _assert_fails_and_loses_nothing(bad_diabetes, f"diabetes-bad-{number}", expected)
    if DIABETES_FAULTS[name][0] is not None:  # a rule of the contract: its source is named
        result = failure_text(bad_diabetes.run(f"diabetes-bad-{number}"))
        assert str(PROJECT_ROOT / "models" / "diabetes" / "defs.yaml") in result
