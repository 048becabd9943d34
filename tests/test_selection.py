"""String asset selections work (they break with the antlr runtime that dvc's hydra pins)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.definitions import defs
from lifecycle_pipeline.lineage.query import latest
from tests.conftest import PROJECT_ROOT, SAMPLE, SAMPLE_MODEL, Registry


def test_antlr_runtime_is_the_override() -> None:
    assert metadata.version("antlr4-python3-runtime").startswith("4.13.")


def _keys(model: str, *stages: str) -> set[str]:
    return {f"{model}/{stage}" for stage in stages}


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (
            "key:breast_cancer/features+",
            _keys(
                "breast_cancer",
                "features",
                "trained_model",
                "evaluation",
                "model_card",
                "deployment_package",
                "drift_monitor",
                "production_model",
            ),
        ),
        (
            "key:breast_cancer/features+1",
            _keys("breast_cancer", "features", "trained_model", "evaluation", "deployment_package"),
        ),
        ("+key:breast_cancer/features", _keys("breast_cancer", "data_snapshot", "features")),
        ("1+key:diabetes/evaluation", _keys("diabetes", "evaluation", "trained_model", "features")),
        # One group per model (the external production_model is not selected by group).
        (
            "group:breast_cancer",
            _keys(
                "breast_cancer",
                "data_snapshot",
                "features",
                "trained_model",
                "evaluation",
                "model_card",
                "deployment_package",
                "drift_monitor",
            ),
        ),
        # The stage, the former group, is a tag shared by every model.
        (
            'tag:"lifecycle/stage"="1-data" or tag:"lifecycle/stage"="2-features"',
            _keys("breast_cancer", "data_snapshot", "features")
            | _keys("diabetes", "data_snapshot", "features"),
        ),
        (
            "kind:dvc",
            _keys("breast_cancer", "data_snapshot", "drift_monitor")
            | _keys("diabetes", "data_snapshot", "drift_monitor"),
        ),
        ("kind:dvc and group:diabetes", _keys("diabetes", "data_snapshot", "drift_monitor")),
        ("kind:evidently", {"breast_cancer/drift_monitor", "diabetes/drift_monitor"}),
    ],
)
def test_string_selection_resolves(selection: str, expected: set[str]) -> None:
    keys = dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph())
    assert {k.to_user_string() for k in keys} == expected


@pytest.mark.slow
def test_dagster_cli_materializes_a_string_selection(
    demo_registry: Registry, tmp_path: Path
) -> None:
    """`dagster asset materialize --select ... --partition ...` in a fresh process."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_REGISTRY_URL": str(demo_registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "DVC_NO_ANALYTICS": "1",
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(SAMPLE_MODEL.scoped("data_versions"), ["data-v1"])
    dagster = str(Path(sys.executable).with_name("dagster"))
    result = subprocess.run(
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "lifecycle_pipeline.definitions",
            "--select",
            "+key:breast_cancer/features",
            "--partition",
            "data-v1",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert latest(instance, SAMPLE["features"], "data-v1") is not None
        assert latest(instance, SAMPLE["data_snapshot"], "data-v1") is not None
        assert latest(instance, SAMPLE["trained_model"], "data-v1") is None
        # The other model's assets of the same name are not selected.
        assert latest(instance, "diabetes/features", "data-v1") is None
