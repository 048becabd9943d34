"""Bad data versions fail `data_snapshot` clearly, record nothing and touch nothing else."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from lifecycle_pipeline.lineage.query import latest
from tests.conftest import Pipeline, Registry, tree_digest


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every message in the failed step's error chain, as the run log shows it."""
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(f"{error.cls_name}: {error.message}")
            error = error.cause
    return "\n".join(texts)


def reference_csv(sample_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sample_dir / "versions" / "data-v1" / "breast_cancer.csv")


def as_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _missing_column(frame: pd.DataFrame) -> bytes:
    return as_csv(frame.drop(columns=["mean_area"]))


def _non_numeric(frame: pd.DataFrame) -> bytes:
    frame = frame.astype({"mean_radius": object})
    frame.loc[7, "mean_radius"] = "twelve"
    return as_csv(frame)


def _nan_target(frame: pd.DataFrame) -> bytes:
    frame = frame.astype({"malignant": "float64"})
    frame.loc[3, "malignant"] = float("nan")
    return as_csv(frame)


def _empty(frame: pd.DataFrame) -> bytes:
    return b""


CASES = [
    ("bad-missing-column", _missing_column, "column 'mean_area': required column is missing"),
    (
        "bad-non-numeric",
        _non_numeric,
        "column 'mean_radius': must be numeric (first at row 7: 'twelve')",
    ),
    ("bad-nan-target", _nan_target, "column 'malignant': 1 missing label(s), first at row 3"),
    ("bad-empty", _empty, "the file is empty"),
]


@pytest.fixture
def bad_pipeline(
    registry_copy: Registry,
    sample_dir: Path,
    pipeline_factory: Callable[[Registry], Pipeline],
) -> Pipeline:
    frame = reference_csv(sample_dir)
    for tag, make, _ in CASES:
        registry_copy.publish(tag, make(frame.copy()))
    pipeline = pipeline_factory(registry_copy)
    assert pipeline.run("data-v1").success
    return pipeline


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        *((tag, message) for tag, _, message in CASES),
        ("data-v99", "Registry revision 'data-v99' cannot be opened in registry"),
        ("../x", "Invalid partition key '../x'"),
        ("data/v1", "Invalid partition key 'data/v1'"),
        ("data-v1..", "Invalid partition key 'data-v1..'"),
    ],
)
def test_bad_version_fails_snapshot_and_loses_nothing(
    bad_pipeline: Pipeline, key: str, expected: str
) -> None:
    before = tree_digest(bad_pipeline.artifacts)
    result = bad_pipeline.run(key)

    assert not result.success
    message = failure_text(result)
    assert expected in message, message
    assert [e.step_key for e in result.get_step_failure_events()] == ["data_snapshot"]
    assert latest(bad_pipeline.instance, "data_snapshot", key) is None
    assert latest(bad_pipeline.instance, "features", key) is None
    # The other version's artifacts are byte-identical and nothing new was written.
    assert tree_digest(bad_pipeline.artifacts) == before
    assert not list(bad_pipeline.artifacts.rglob(".tmp-*"))


def test_moved_tag_fails_loudly_naming_both_md5s(
    registry_copy: Registry, sample_dir: Path, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    pipeline = pipeline_factory(registry_copy)
    assert pipeline.run("data-v1").success
    original = registry_copy.resource().resolve("data-v1")

    # Someone force-moves the tag to a commit with other bytes.
    frame = reference_csv(sample_dir).head(400)
    registry_copy.publish("data-v1-rewrite", as_csv(frame))
    import subprocess

    subprocess.run(
        ["git", "-C", str(registry_copy.repo), "tag", "-f", "data-v1", "data-v1-rewrite"],
        check=True,
        capture_output=True,
    )
    moved = registry_copy.resource().resolve("data-v1")
    before = tree_digest(pipeline.artifacts)

    result = pipeline.run("data-v1")
    assert not result.success
    message = failure_text(result)
    assert "DataVersionMovedError" in message
    assert moved.md5 in message and original.md5 in message
    assert tree_digest(pipeline.artifacts) == before
