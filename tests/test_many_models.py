"""Many models in one deployment: the two demo models and a third one created here by
`lifecycle new-model` with its own registry run in one Dagster instance, each namespaced, and a
broken declaration takes only its own model out.

Everything runs the way a deployment does: from a clean commit of the project (``code``), in
fresh processes (`dagster job execute`, `lifecycle`, `dg`), loading the models folder through
Dagster's component loading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lifecycle_pipeline.component import load_models
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.documentation.spec import REQUIRED_FIELDS
from lifecycle_pipeline.lineage.hashing import sha256_file
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.registry_demo import (
    Publication,
    build_demo_registry,
    init_registry,
    publish,
)
from tests.conftest import GIT_IDENTITY, PROJECT_ROOT, committed_project_copy

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("many_models")]
BIN = Path(sys.executable).parent
MODELS = ("breast_cancer", "credit", "diabetes")
VERSIONS = {"breast_cancer": "data-v1", "diabetes": "diabetes-v1", "credit": "credit-v1"}
STAGES = ("data_snapshot", "features", "trained_model", "evaluation", "model_card",
          "deployment_package", "drift_monitor", "production_model")  # fmt: skip


def credit_frame(rows: int = 400, seed: int = 5) -> pd.DataFrame:
    """A binary task no code in the package has seen: default on a loan."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 12, rows)
    age = rng.integers(18, 80, rows)
    region = rng.choice(["north", "south", "west"], rows)
    risk = -(income - 50) / 8 + (region == "south") * 0.8 + rng.normal(scale=0.7, size=rows)
    return pd.DataFrame(
        {"income": income, "age": age, "region": region, "default": (risk > 0.5).astype(int)}
    )


@dataclass
class Deployment:
    """One Dagster home, one artifact root and the project's code at a clean commit."""

    base: Path
    code: Path

    @property
    def home(self) -> Path:
        return self.base / "dagster_home"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "LIFECYCLE_HOME": str(self.base / "lifecycle_home"),
            "LIFECYCLE_REGISTRY_URL": str(self.base / "registry"),
            "LIFECYCLE_ARTIFACT_ROOT": str(self.base / "artifacts"),
            "DVC_NO_ANALYTICS": "1",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": str(self.code),
            "VIRTUAL_ENV": str(BIN.parent),
            "LIFECYCLE_UV": str(PROJECT_ROOT / ".tools" / "bin" / "uv"),
            **extra,
        }

    def run(self, *command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command), cwd=self.code, env=self.env(**extra), capture_output=True,
            text=True, timeout=900, check=False,
        )  # fmt: skip

    def lifecycle(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "lifecycle"), *args, **extra)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def execute(self, job: str, partitions: str, key: str, config: dict | None = None,
                **extra: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run one of a model's jobs for one partition, as `dagster job execute` does."""
        with self.instance() as instance:
            if key not in instance.get_dynamic_partitions(partitions):
                instance.add_dynamic_partitions(partitions, [key])
        config_file = self.base / f"{job}-{key}.yaml"
        config_file.write_text(json.dumps(config or {}))  # JSON is YAML
        return self.run(
            str(BIN / "dagster"), "job", "execute", "-m", "lifecycle_pipeline.definitions",
            "-j", job, "--tags", json.dumps({"dagster/partition": key}),
            "--config", str(config_file), **extra,
        )  # fmt: skip


def _fast(model: str) -> dict:
    return {"ops": {f"{model}__trained_model": {"config": {"params": {"n_estimators": 40}}}}}


@pytest.fixture(scope="module")
def deployment(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    base = tmp_path_factory.mktemp("many_models")
    code = committed_project_copy(base / "code")
    (base / "dagster_home").mkdir()
    (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    build_demo_registry(sample_dir, base / "registry", base / "remote")  # both demo models' tags
    # The third model's data lives in a registry of its own.
    data = base / "credit.csv"
    credit_frame().to_csv(data, index=False)
    init_registry(base / "credit_registry", base / "credit_remote")
    publish(base / "credit_registry", Publication("credit-v1", data, "data/credit.csv", "v1"))
    deployment = Deployment(base=base, code=code)
    created = deployment.lifecycle(
        "new-model", "credit", "--data", str(data), "--target", "default"
    )
    assert created.returncode == 0, created.stderr
    assert "next steps" in created.stdout and "lifecycle check --model credit" in created.stdout
    declaration = code / "models" / "credit" / "defs.yaml"
    text = declaration.read_text()
    declaration.write_text(
        text.replace("  data:\n", f"  data:\n    registry: {base / 'credit_registry'}\n", 1)
    )
    checked = deployment.lifecycle("--model", "credit", "check", "--data", str(data))
    assert checked.returncode == 0, checked.stderr
    for args in (["add", "-A"], ["commit", "-q", "-m", "declare the credit model"]):
        subprocess.run(["git", *GIT_IDENTITY, "-C", str(code), *args], check=True)
    for model, version in VERSIONS.items():
        done = deployment.execute(
            f"{model}_lifecycle", f"{model}_data_versions", version, _fast(model)
        )
        assert done.returncode == 0, f"{model}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return deployment


def test_three_models_materialize_into_one_instance(deployment: Deployment) -> None:
    with deployment.instance() as instance:
        for model, version in VERSIONS.items():
            package = latest(instance, [model, "deployment_package"], version)
            assert package is not None, model
            uri = str(metadata_values(package)["artifact/uri"])
            assert Path(uri).is_relative_to(deployment.base / "artifacts" / model)
            assert instance.get_dynamic_partitions(f"{model}_data_versions") == [version]
        runs = instance.get_runs(dg.RunsFilter(tags={"lifecycle/model": "credit"}))
        assert [r.job_name for r in runs] == ["credit_lifecycle"]


def test_keys_groups_partitions_sensors_and_schedules_are_per_model(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_models(deployment.code / "models", deployment.code).broken == []
    monkeypatch.setenv("LIFECYCLE_PROJECT_ROOT", str(deployment.code))  # its models folder
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    by_group: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert key.path[0] == node.group_name, key  # each model is its own group
        by_group.setdefault(node.group_name, set()).add(key.path[1])
        if node.partitions_def is not None:
            assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
            assert node.partitions_def.name in (
                f"{key.path[0]}_data_versions",
                f"{key.path[0]}_production_batches",
            )
    assert by_group == {model: set(STAGES) for model in MODELS}
    sensors = {s.name for s in defs.sensors or ()}
    schedules = {s.name: s.cron_schedule for s in defs.schedules or ()}  # type: ignore[union-attr]
    for model in MODELS:
        assert f"{model}_new_data_version_sensor" in sensors
        assert f"{model}_drift_retraining_sensor" in sensors
        assert f"{model}_audit_log_sensor" in sensors
        assert defs.resolve_job_def(f"{model}_lifecycle").partitions_def.name == (  # type: ignore[union-attr]
            f"{model}_data_versions"
        )
    assert schedules["diabetes_retraining_schedule"] == "0 4 * * 1"  # from its declaration
    resources = defs.resources or {}
    assert set(resources) >= {f"{m}_registry" for m in MODELS}
    credit = resources["credit_registry"]
    assert credit.url == str(deployment.base / "credit_registry")  # its own registry


def test_new_model_card_lists_every_todo_field_as_a_gap(deployment: Deployment) -> None:
    with deployment.instance() as instance:
        card = metadata_values(latest(instance, ["credit", "model_card"], "credit-v1"))
    missing = {
        gap.split("required field `")[1].split("`")[0]
        for gap in card["gaps"]
        if "required field `" in gap
    }
    assert set(REQUIRED_FIELDS) <= missing  # each scaffolded TODO is a gap, none is invented
    assert "is not set in the declaration" in " ".join(card["gaps"])  # description: TODO


def test_promoting_one_model_never_changes_another(deployment: Deployment) -> None:
    audit = deployment.base / "lifecycle_home" / "audit"
    promoted = deployment.lifecycle(
        "--model", "breast_cancer", "promote", "data-v1", "--approver", "alice", "--reason", "r1"
    )
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.startswith("breast_cancer: ")
    before = sha256_file(audit / "breast_cancer.jsonl")
    with deployment.instance() as instance:
        events = instance.fetch_materializations(
            dg.AssetKey(["breast_cancer", "production_model"]), 10
        )
        assert len(events.records) == 1
        assert metadata_values(events.records[0])["model"] == "breast_cancer"
        for other in ("diabetes", "credit"):
            key = dg.AssetKey([other, "production_model"])
            assert instance.fetch_materializations(key, 10).records == []
    assert not (audit / "diabetes.jsonl").exists()
    status = deployment.lifecycle("status")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[2:]}
    assert rows == {"breast_cancer": "data-v1", "credit": "-", "diabetes": "-"}

    second = deployment.lifecycle(
        "--model", "diabetes", "promote", "diabetes-v1", "--approver", "bob", "--reason", "r2"
    )
    assert second.returncode == 0, second.stderr
    assert sha256_file(audit / "breast_cancer.jsonl") == before
    records = [json.loads(line) for line in (audit / "diabetes.jsonl").read_text().splitlines()]
    assert {r["data"]["model"] for r in records} == {"diabetes"}  # each record names its model
    assert {r["data"].get("job") for r in records if r["kind"] == "run"} == {"diabetes_lifecycle"}
    with deployment.instance() as instance:
        key = dg.AssetKey(["breast_cancer", "production_model"])
        assert len(instance.fetch_materializations(key, 10).records) == 1
    history = deployment.lifecycle("history")
    assert history.returncode == 0
    assert [line.split(":")[0] for line in history.stdout.splitlines()] == [
        "breast_cancer", "diabetes"
    ]  # fmt: skip


def test_without_model_a_one_model_command_lists_the_models(deployment: Deployment) -> None:
    refused = deployment.lifecycle("promote", "data-v1", "--approver", "a", "--reason", "r")
    assert refused.returncode == 2
    assert "declared: breast_cancer, credit, diabetes" in refused.stderr
    unknown = deployment.lifecycle("--model", "../x", "status")
    assert unknown.returncode == 2 and "is not a model name" in unknown.stderr


def test_reproduce_one_model_with_others_present(deployment: Deployment) -> None:
    done = deployment.lifecycle("--model", "credit", "reproduce", "credit-v1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: identical" in done.stdout
    assert "reproduction of credit credit-v1" in done.stdout


@pytest.fixture(scope="module")
def broken_models(deployment: Deployment) -> Path:
    """A copy of the models folder in which the diabetes declaration has a typo."""
    folder = deployment.base / "broken_models"
    shutil.copytree(deployment.code / "models", folder)
    declaration = folder / "diabetes" / "defs.yaml"
    text = declaration.read_text()
    assert "\n  out_of_range: flag\n" in text
    declaration.write_text(text.replace("\n  out_of_range: flag\n", "\n  out_of_rnge: flag\n"))
    return folder


def _typo_line(folder: Path) -> int:
    lines = (folder / "diabetes" / "defs.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "out_of_rnge" in line)


def test_broken_declaration_is_named_and_the_others_still_run(
    deployment: Deployment, broken_models: Path
) -> None:
    where = f"{broken_models / 'diabetes' / 'defs.yaml'}:{_typo_line(broken_models)}"
    status = deployment.lifecycle("status", LIFECYCLE_MODELS_DIR=str(broken_models))
    assert status.returncode == 1
    assert "diabetes       BROKEN DECLARATION" in status.stdout
    assert f"{where}: out_of_rnge: unknown key" in status.stderr
    checked = deployment.lifecycle("check", LIFECYCLE_MODELS_DIR=str(broken_models))
    assert checked.returncode == 1 and f"{where}: out_of_rnge" in checked.stderr
    # The other models still load and run: breast_cancer scores a production batch.
    ran = deployment.execute(
        "breast_cancer_drift", "breast_cancer_production_batches", "batch-001",
        LIFECYCLE_MODELS_DIR=str(broken_models),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]


def test_broken_declaration_is_shown_in_the_ui_data(
    deployment: Deployment, broken_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the UI reads (GraphQL) from a code server loading the broken models folder."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(broken_models))
    monkeypatch.setenv("LIFECYCLE_REGISTRY_URL", str(deployment.base / "registry"))
    query = "{ assetNodes { assetKey { path } groupName description } }"
    with (
        deployment.instance() as instance,
        define_out_of_process_context(
            str(PROJECT_ROOT / "workspace.yaml"), None, instance
        ) as context,
    ):
        result = execute_dagster_graphql(context, query)
    assert not result.errors, result.errors
    nodes = {tuple(n["assetKey"]["path"]): n for n in result.data["assetNodes"]}
    broken = nodes[("diabetes", "declaration")]
    assert broken["groupName"] == "diabetes"
    assert broken["description"].startswith("BROKEN DECLARATION")
    assert f"{_typo_line(broken_models)}: out_of_rnge: unknown key" in broken["description"]
    assert [k for k in nodes if k[0] == "diabetes"] == [("diabetes", "declaration")]
    for model in ("breast_cancer", "credit"):
        assert (model, "deployment_package") in nodes


@pytest.fixture(scope="module")
def dg_projects(deployment: Deployment, broken_models: Path) -> Iterator[dict[str, Path]]:
    """The project as `dg` sees it (pyproject.toml + models/), intact and with the typo."""
    broken = deployment.base / "dg_broken"
    broken.mkdir()
    shutil.copy(deployment.code / "pyproject.toml", broken / "pyproject.toml")
    shutil.copytree(broken_models, broken / "models")
    yield {"intact": deployment.code, "broken": broken}


def _dg(
    deployment: Deployment, project: Path, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dg"), *args], cwd=project, env=deployment.env(**extra), capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip


def test_dg_lists_and_checks_the_models(
    deployment: Deployment, dg_projects: dict[str, Path]
) -> None:
    listed = _dg(deployment, dg_projects["intact"], "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {f"{m}/{s}" for m in MODELS for s in STAGES} <= keys
    checked = _dg(deployment, dg_projects["intact"], "check", "yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = _dg(deployment, dg_projects["broken"], "check", "yaml")
    assert refused.returncode == 1
    line = _typo_line(dg_projects["broken"] / "models")
    assert f"models/diabetes/defs.yaml:{line}" in refused.stdout + refused.stderr
    assert "out_of_rnge" in refused.stdout + refused.stderr


def test_dg_check_defs_fails_on_a_broken_declaration_or_when_asked_to(
    deployment: Deployment, dg_projects: dict[str, Path]
) -> None:
    """`dg check defs` validates every defs.yaml against the declaration's schema first, so a
    typo fails it. A declaration that fits the schema but does not load (an estimator that
    does not import) is excluded and shown by default, and fails the code location only for a
    deployment that sets LIFECYCLE_BROKEN_MODELS=fail."""
    intact = _dg(deployment, dg_projects["intact"], "check", "defs")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    typo = _dg(deployment, dg_projects["broken"], "check", "defs")
    assert typo.returncode != 0 and "out_of_rnge" in typo.stdout + typo.stderr
    semantic = deployment.base / "dg_semantic"
    shutil.copytree(dg_projects["intact"] / "models", semantic / "models")
    shutil.copy(dg_projects["intact"] / "pyproject.toml", semantic / "pyproject.toml")
    declaration = semantic / "models" / "credit" / "defs.yaml"
    text = declaration.read_text()
    assert "class: sklearn.ensemble.RandomForestClassifier" in text
    declaration.write_text(text.replace("RandomForestClassifier", "NoSuchForest", 1))
    env = {"LIFECYCLE_MODELS_DIR": str(semantic / "models")}
    assert _dg(deployment, semantic, "check", "yaml", **env).returncode == 0  # fits the schema
    excluded = _dg(deployment, semantic, "check", "defs", **env)
    assert excluded.returncode == 0, excluded.stdout + excluded.stderr
    strict = _dg(deployment, semantic, "check", "defs", LIFECYCLE_BROKEN_MODELS="fail", **env)
    assert strict.returncode != 0
    assert "NoSuchForest" in strict.stdout + strict.stderr


def test_settings_are_text_and_measurements_are_numbers(deployment: Deployment) -> None:
    """The UI plots numeric metadata across versions: only what varies is numeric."""
    with deployment.instance() as instance:
        trained = latest(instance, ["credit", "trained_model"], "credit-v1")
        scored = latest(instance, ["credit", "evaluation"], "credit-v1")
    for record, settings, measured in (
        (trained, ("seed", "threads", "golden_inputs/rows"), ("fit_seconds",)),
        (scored, ("decision_threshold", "gates/total"), ("metric/roc_auc", "test/rows")),
    ):
        assert record is not None
        metadata = record.asset_materialization.metadata
        for key in settings:
            assert isinstance(metadata[key], dg.TextMetadataValue), key
        for key in measured:
            assert isinstance(metadata[key], dg.FloatMetadataValue | dg.IntMetadataValue), key


def test_dg_scaffold_defs_writes_what_new_model_writes(deployment: Deployment) -> None:
    """`dg scaffold defs lifecycle_pipeline.LifecycleModel NAME` is `lifecycle new-model`."""
    project = deployment.base / "dg_scaffold"
    project.mkdir()
    shutil.copy(deployment.code / "pyproject.toml", project / "pyproject.toml")
    (project / "models").mkdir()
    data = deployment.base / "credit.csv"
    params = json.dumps({"data": str(data), "target": "default"})
    made = _dg(
        deployment, project, "scaffold", "defs", "lifecycle_pipeline.LifecycleModel", "loans",
        "--json-params", params,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    scaffolded = project / "models" / "loans"
    expected = deployment.base / "expected_models"
    created = deployment.lifecycle(
        "new-model", "loans", "--data", str(data), "--target", "default",
        LIFECYCLE_MODELS_DIR=str(expected),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    for name in ("defs.yaml", "model_card.yaml"):
        assert (scaffolded / name).read_text() == (expected / "loans" / name).read_text()
    checked = _dg(deployment, project, "check", "yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    again = _dg(
        deployment, project, "scaffold", "defs", "lifecycle_pipeline.LifecycleModel", "loans",
        "--json-params", params,
    )  # fmt: skip
    assert again.returncode != 0  # an existing model is never overwritten
    assert (scaffolded / "defs.yaml").read_text() == (expected / "loans" / "defs.yaml").read_text()
