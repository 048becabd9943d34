"""A moved registry tag fails loudly; the bad-file and bad-key cases are in tests/reliability/."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from tests.conftest import Pipeline, Registry, tree_digest
from tests.reliability.cases import case


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


def test_moved_tag_fails_loudly_naming_both_md5s(
    registry_copy: Registry, sample_dir: Path, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    fault = case("registry reference", "moved tag")
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
    assert fault.shown_in(message), message
    assert f"now resolves to md5 {moved.md5}" in message
    assert f"first materialized from md5 {original.md5}" in message
    assert [e.step_key for e in result.get_step_failure_events()] == [pipeline.op("data_snapshot")]
    assert tree_digest(pipeline.artifacts) == before
