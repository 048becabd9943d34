"""Bad input where it enters: each case fails clearly, records nothing and touches nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import hypothesis.extra.pandas as hpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle_pipeline import schema
from lifecycle_pipeline.lineage.query import latest
from tests.conftest import Pipeline, Registry, copy_registry, scratch_pipeline, tree_digest
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
    assert [e.step_key for e in result.get_step_failure_events()] == ["data_snapshot"]
    assert latest(pipeline.instance, "data_snapshot", key) is None
    assert latest(pipeline.instance, "features", key) is None
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
    cards = latest(bad_pipeline.instance, "model_card", "data-v1")
    result = bad_pipeline.run(
        "data-v1",
        run_config={"ops": {"model_card": {"config": {"spec_path": str(spec)}}}},
        selection=["model_card"],
    )
    assert not result.success
    message = failure_text(result)
    assert fault.expected in message and str(spec) in message, message
    assert [e.step_key for e in result.get_step_failure_events()] == ["model_card"]
    after = latest(bad_pipeline.instance, "model_card", "data-v1")
    assert after is not None and cards is not None and after.run_id == cards.run_id
    assert tree_digest(bad_pipeline.artifacts) == before
    assert not list(bad_pipeline.artifacts.rglob(".tmp-*"))


def _valid_frame(sample_dir: Path) -> pd.DataFrame:
    raw = (sample_dir / "versions" / "data-v1" / "breast_cancer.csv").read_bytes()
    return schema.parse_csv(raw, source="reference").head(40)


MUTATIONS = st.sampled_from(["drop", "nan", "inf", "text", "label", "empty"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mutation=MUTATIONS,
    column=st.sampled_from([*schema.FEATURES, schema.TARGET]),
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
        if mutation == "label" and column != schema.TARGET:
            value = np.inf
        # The column takes the bad value in a dtype that can hold it, as a file would give.
        frame = frame.astype({column: object if mutation == "text" else "float64"})
        frame.loc[row, column] = value  # type: ignore[call-overload]
    with pytest.raises(schema.DataValidationError) as error:
        schema.validate_frame(frame, source="generated.csv")
    message = str(error.value)
    assert message.startswith("generated.csv: ")
    assert mutation == "empty" or f"column '{column}'" in message


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frame=hpd.data_frames(
        columns=hpd.columns(["a", "mean_radius", "malignant"], dtype=float),
        rows=st.tuples(st.floats(), st.floats(), st.floats()),
    )
)
def test_arbitrary_frames_never_pass_or_crash(frame: pd.DataFrame) -> None:
    """Frames lacking the contract's columns fail with the validation error, never another."""
    with pytest.raises(schema.DataValidationError):
        schema.validate_frame(frame, source="arbitrary.csv")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    with pytest.raises(schema.DataValidationError):
        schema.validate_frame(schema.parse_csv(buffer.getvalue().encode(), source="x"), source="x")
