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
from tests.conftest import PROJECT_ROOT, Registry


def test_antlr_runtime_is_the_override() -> None:
    assert metadata.version("antlr4-python3-runtime").startswith("4.13.")


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (
            "key:features+",
            {
                "features",
                "trained_model",
                "evaluation",
                "model_card",
                "deployment_package",
                "drift_monitor",
                "production_model",
            },
        ),
        ("key:features+1", {"features", "trained_model", "evaluation", "deployment_package"}),
        ("+key:features", {"data_snapshot", "features"}),
        ("1+key:evaluation", {"evaluation", "trained_model", "features"}),
        ("group:data", {"data_snapshot", "features"}),
        ("kind:dvc", {"data_snapshot", "drift_monitor"}),
        ("kind:evidently", {"drift_monitor"}),
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
        instance.add_dynamic_partitions("data_versions", ["data-v1"])
    dagster = str(Path(sys.executable).with_name("dagster"))
    result = subprocess.run(
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "lifecycle_pipeline.definitions",
            "--select",
            "+key:features",
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
        assert latest(instance, "features", "data-v1") is not None
        assert latest(instance, "trained_model", "data-v1") is None
