"""The code location loads, and its asset graph is a reviewed snapshot.

A change to keys, edges, partitions, checks, groups, kinds or owners is a lineage change:
regenerate the snapshot with ``UPDATE_SNAPSHOTS=1`` (this file alone or ``make test``). A stale
snapshot is rewritten and the test still fails, so the diff is reviewed before it passes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lifecycle_pipeline.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def describe(definitions: dg.Definitions) -> dict[str, Any]:
    graph = definitions.resolve_asset_graph()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": getattr(partitions, "name", None),
            "checks": sorted(c.name for c in node.check_keys),
            "blocking_checks": sorted(  # on the asset or defined apart (@asset_check)
                c.name for c in node.check_keys if graph.get_check_spec(c).blocking
            ),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "has_description": bool(node.description),
            "has_code_version": bool(node.code_version),
            "automation": node.automation_condition.get_label()
            if node.automation_condition
            else None,
        }
    return {"assets": assets}


def _selected(job: dg.JobDefinition) -> list[str]:
    return sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)


def test_definitions_load() -> None:
    """The location loads, and each job, sensor and schedule targets what its name says."""
    dg.Definitions.validate_loadable(defs)
    lifecycle, drift = defs.resolve_job_def("lifecycle"), defs.resolve_job_def("drift")
    assert _selected(lifecycle) == [
        "data_snapshot",
        "deployment_package",
        "evaluation",
        "features",
        "model_card",
        "trained_model",
    ]
    assert getattr(lifecycle.partitions_def, "name", None) == "data_versions"
    assert _selected(drift) == ["drift_monitor"]
    assert getattr(drift.partitions_def, "name", None) == "production_batches"
    targets = {
        "new_data_version_sensor": "lifecycle",
        "drift_retraining_sensor": "lifecycle",
        "new_batch_sensor": "drift",
    }
    for sensor, job in targets.items():
        assert defs.resolve_sensor_def(sensor).job_name == job, sensor
    assert defs.resolve_schedule_def("retraining_schedule").job_name == "lifecycle"


def test_asset_graph_matches_reviewed_snapshot() -> None:
    current = describe(defs)
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    stored = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else None
    if stored is not None and json.loads(stored) == current:
        return
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text, encoding="utf-8")
        pytest.fail(
            f"{SNAPSHOT.name} was stale and has been rewritten: review the lineage change "
            f"(git diff {SNAPSHOT}), then rerun without UPDATE_SNAPSHOTS"
        )
    pytest.fail(
        f"the asset graph differs from {SNAPSHOT}: rerun with UPDATE_SNAPSHOTS=1 and review"
    )


def test_every_asset_is_described_owned_grouped_and_versioned() -> None:
    for name, asset in describe(defs)["assets"].items():
        assert asset["has_description"], name
        assert asset["has_code_version"], name
        assert asset["owners"] == ["team:ml-platform"], name
        assert asset["kinds"], name
        expected = {"drift_monitor": "production_batches", "production_model": None}
        assert asset["partitions"] == expected.get(name, "data_versions"), name


# The external asset has no function of its own: its source is what materializes it.
SOURCE_FUNCTIONS = {"production_model": "_change"}


def test_every_asset_links_to_its_source_in_the_ui() -> None:
    """The UI's "View source" opens the function defining the asset (decorator or def)."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        [reference] = graph.get(key).metadata["dagster/code_references"].code_references
        source = Path(reference.file_path)
        assert source.is_file() and source.suffix == ".py", key
        lines = source.read_text(encoding="utf-8").splitlines()[reference.line_number - 1 :]
        assert lines, f"{name}: line {reference.line_number} is past the end of {source}"
        # Assets are built by factories, so the decorated function may be indented.
        indent = len(lines[0]) - len(lines[0].lstrip())
        body = [line[indent:] for line in lines]
        decorated = [line for line in body if not line.startswith(("@", " ", ")"))]
        assert decorated[0].startswith(f"def {SOURCE_FUNCTIONS.get(name, name)}("), (
            f"{name}: {source.name}:{reference.line_number} opens {decorated[0]!r}"
        )
