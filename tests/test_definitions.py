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

from lifecycle_pipeline.declaration import declared_models, load_declaration
from lifecycle_pipeline.definitions import defs
from lifecycle_pipeline.governance import MODEL_TAG
from lifecycle_pipeline.resources.registry import DataRegistry
from tests.conftest import PROJECT_ROOT, SAMPLE

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


# The demo models, each in its own namespace of the one code location.
MODELS = ("breast_cancer", "diabetes")
STAGES = ("data_snapshot", "features", "trained_model", "evaluation", "model_card",
          "deployment_package", "drift_monitor", "production_model")  # fmt: skip
SENSORS = ("new_data_version_sensor", "new_batch_sensor", "drift_retraining_sensor",
           "audit_log_sensor", "automation")  # fmt: skip


def test_the_location_holds_every_declared_model() -> None:
    assert tuple(declared_models()) == MODELS
    described = describe(defs)["assets"]
    assert set(described) == {f"{m}/{s}" for m in MODELS for s in STAGES}
    assert {k.to_user_string() for k in SAMPLE.values()} == {f"breast_cancer/{s}" for s in STAGES}
    assert {j.name for j in defs.jobs or []} == {
        f"{m}_{job}" for m in MODELS for job in ("lifecycle", "drift", "reproduce")
    }
    assert {s.name for s in defs.sensors or []} == {f"{m}_{s}" for m in MODELS for s in SENSORS}
    assert {s.name for s in defs.schedules or []} == {f"{m}_retraining_schedule" for m in MODELS}
    assert set(defs.resources or {}) == {
        "artifact_store",
        "signer",
        *(f"{m}_registry" for m in MODELS),
    }


@pytest.mark.parametrize("model", MODELS)
def test_definitions_load(model: str) -> None:
    """The location loads, and each job, sensor and schedule targets what its name says, all
    within the model's own namespace: keys, group, partitions, jobs, sensors, schedule and
    registry resource."""
    dg.Definitions.validate_loadable(defs)
    lifecycle = defs.resolve_job_def(f"{model}_lifecycle")
    drift = defs.resolve_job_def(f"{model}_drift")
    assert _selected(lifecycle) == [
        f"{model}/data_snapshot",
        f"{model}/deployment_package",
        f"{model}/evaluation",
        f"{model}/features",
        f"{model}/model_card",
        f"{model}/trained_model",
    ]
    assert getattr(lifecycle.partitions_def, "name", None) == f"{model}_data_versions"
    assert _selected(drift) == [f"{model}/drift_monitor"]
    assert getattr(drift.partitions_def, "name", None) == f"{model}_production_batches"
    for job in (lifecycle, drift):
        assert job.tags[MODEL_TAG] == model, job.name
    graph = defs.resolve_asset_graph()
    for stage in STAGES:
        assert graph.get(dg.AssetKey([model, stage])).group_name == model, stage
    # The model's own registry resource, reading the model's own tags and files.
    registry = f"{model}_registry"
    resource = dict(defs.resources or {})[registry]
    assert isinstance(resource, DataRegistry)
    declared = load_declaration(PROJECT_ROOT / "models" / model).model.data
    assert resource.dataset_path == declared.path
    assert (resource.version_pattern, resource.batch_pattern) == (
        declared.versions,
        declared.batches,
    )
    for stage in ("data_snapshot", "drift_monitor"):
        assets_def = defs.resolve_assets_def(dg.AssetKey([model, stage]))
        assert {r for r in assets_def.required_resource_keys if r.endswith("_registry")} == {
            registry
        }, stage
    targets = {
        "new_data_version_sensor": "lifecycle",
        "drift_retraining_sensor": "lifecycle",
        "new_batch_sensor": "drift",
    }
    for sensor, target in targets.items():
        definition = defs.resolve_sensor_def(f"{model}_{sensor}")
        assert definition.job_name == f"{model}_{target}", sensor
        assert definition.required_resource_keys == {registry}, sensor
    schedule = defs.resolve_schedule_def(f"{model}_retraining_schedule")
    assert schedule.job_name == f"{model}_lifecycle"
    assert schedule.required_resource_keys == {registry}
    automated = defs.resolve_sensor_def(f"{model}_automation")
    assert isinstance(automated, dg.AutomationConditionSensorDefinition)
    assert automated.asset_selection.resolve(graph) == {
        dg.AssetKey([model, "model_card"]),
        dg.AssetKey([model, "deployment_package"]),
    }


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
        model, stage = name.split("/")
        assert model in MODELS, name
        assert asset["has_description"], name
        assert asset["has_code_version"], name
        assert asset["owners"] == ["team:ml-platform"], name
        assert asset["kinds"], name
        assert asset["group"] == model, name
        assert all(dep.startswith(f"{model}/") for dep in asset["deps"]), name
        expected = {"drift_monitor": f"{model}_production_batches", "production_model": None}
        assert asset["partitions"] == expected.get(stage, f"{model}_data_versions"), name


# The external asset has no function of its own: its source is what materializes it.
SOURCE_FUNCTIONS = {"production_model": "_change"}


def test_every_asset_links_to_its_source_in_the_ui() -> None:
    """The UI's "View source" opens the function defining the asset (decorator or def), and
    the model's component file that declared it (its ``type:`` line)."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        model, stage = key.path
        [reference, component] = graph.get(key).metadata["dagster/code_references"].code_references
        source = Path(reference.file_path)
        assert source.is_file() and source.suffix == ".py", key
        lines = source.read_text(encoding="utf-8").splitlines()[reference.line_number - 1 :]
        assert lines, f"{name}: line {reference.line_number} is past the end of {source}"
        # Assets are built by factories, so the decorated function may be indented.
        indent = len(lines[0]) - len(lines[0].lstrip())
        body = [line[indent:] for line in lines]
        decorated = [line for line in body if not line.startswith(("@", " ", ")"))]
        assert decorated[0].startswith(f"def {SOURCE_FUNCTIONS.get(stage, stage)}("), (
            f"{name}: {source.name}:{reference.line_number} opens {decorated[0]!r}"
        )
        declared = Path(component.file_path)
        assert declared == PROJECT_ROOT / "models" / model / "defs.yaml", name
        line = declared.read_text(encoding="utf-8").splitlines()[component.line_number - 1]
        assert line == "type: lifecycle_pipeline.LifecycleModel", f"{name}: opens {line!r}"


def test_a_folder_whose_name_is_no_model_name_is_shown_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`models/credit-risk/` (a hyphen: not a model name, nor a Dagster group name) is one
    broken model; the code location still builds, with the other model in it."""
    import shutil

    from lifecycle_pipeline.definitions import build_definitions

    models = tmp_path / "models"
    shutil.copytree(PROJECT_ROOT / "models" / "diabetes", models / "diabetes")
    shutil.copytree(PROJECT_ROOT / "models" / "diabetes", models / "credit-risk")
    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(models))
    location = build_definitions()
    keys = {k.to_user_string() for k in location.resolve_asset_graph().get_all_asset_keys()}
    assert "credit-risk/declaration" in keys and "diabetes/trained_model" in keys
    broken = location.resolve_assets_def(dg.AssetKey(["credit-risk", "declaration"]))
    description = broken.specs_by_key[dg.AssetKey(["credit-risk", "declaration"])].description
    assert "differs from its folder 'credit-risk'" in str(description)
    location.resolve_job_def("diabetes_lifecycle")  # the other model is whole
