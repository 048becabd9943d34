"""Bring your own data and model: datasets no code has seen run the whole lifecycle from a
declaration alone, through Dagster's own CLI, in fresh processes.

Each dataset is generated here with seeded random column names, published to a fresh git + DVC
registry, and described only by a model folder's ``defs.yaml`` written by the test (or proposed
by ``lifecycle contract infer``) in a models folder of its own. Nothing in
``lifecycle_pipeline/`` knows these columns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle_pipeline.declaration import COMPONENT_TYPE, DECLARATION_FILE
from lifecycle_pipeline.lineage.query import CheckOutcome, check_results, latest, metadata_values
from lifecycle_pipeline.registry_demo import Publication, init_registry, publish
from tests.conftest import PROJECT_ROOT, committed_project_copy

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("declared_models")]
BIN = Path(sys.executable).parent


def _names(rng: np.random.Generator, count: int) -> list[str]:
    letters = list("abcdefghijklmnopqrstuvwxyz")
    return ["".join(rng.choice(letters, 7)) for _ in range(count)]


def multiclass_frame(rows: int = 600, seed: int = 11) -> tuple[pd.DataFrame, dict[str, str]]:
    """Numeric, integer and categorical features, an id to drop, a three-class string target."""
    rng = np.random.default_rng(seed)
    numeric, integer, category, ident, target = _names(rng, 5)
    region = rng.choice(["north", "south", "east"], rows)
    x = rng.normal(size=rows)
    k = rng.integers(0, 50, rows)
    score = x + (region == "north") * 1.5 + k / 25 + rng.normal(scale=0.5, size=rows)
    label = np.where(score < 0.5, "low", np.where(score < 2.0, "mid", "high"))
    frame = pd.DataFrame(
        {ident: np.arange(rows), numeric: x, integer: k, category: region, target: label}
    )
    return frame, {"numeric": numeric, "integer": integer, "category": category,
                   "id": ident, "target": target}  # fmt: skip


def regression_frame(rows: int = 500, seed: int = 12) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    numeric, integer, category, target = _names(rng, 4)
    kind = rng.choice(["red", "green"], rows)
    x = rng.uniform(0, 10, rows)
    k = rng.integers(1, 6, rows)
    y = 3.0 * x + 2.0 * k + (kind == "red") * 4.0 + rng.normal(scale=1.0, size=rows)
    frame = pd.DataFrame({numeric: x, integer: k, category: kind, target: y})
    return frame, {"numeric": numeric, "integer": integer, "category": category, "target": target}


@dataclass
class Project:
    """A registry, a models folder holding one model and a Dagster home, used only through
    processes that run the code of a clean commit (``code``), as a deployment does."""

    base: Path
    declaration: Path  # <base>/models/<name>/defs.yaml
    code: Path

    @property
    def home(self) -> Path:
        return self.base / "dagster_home"

    @property
    def name(self) -> str:
        return self.declaration.parent.name

    def key(self, stage: str) -> list[str]:
        return [self.name, stage]

    def attributes(self) -> dict:
        """The declaration, as the component file holds it."""
        document = yaml.safe_load(self.declaration.read_text())
        assert document["type"] == COMPONENT_TYPE, document
        return dict(document["attributes"])

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "LIFECYCLE_HOME": str(self.base / "lifecycle_home"),
            # The code location loads every folder here: this project's model, nothing else.
            "LIFECYCLE_MODELS_DIR": str(self.declaration.parent.parent),
            "LIFECYCLE_MODEL": self.name,
            "LIFECYCLE_REGISTRY_URL": str(self.base / "registry"),
            "LIFECYCLE_ARTIFACT_ROOT": str(self.base / "artifacts"),
            "DVC_NO_ANALYTICS": "1",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": str(self.code),
            "LIFECYCLE_UV": str(PROJECT_ROOT / ".tools" / "bin" / "uv"),
        }

    def run(self, *command: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            cwd=self.code,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def lifecycle(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "lifecycle"), *args)

    def materialize(self, version: str) -> subprocess.CompletedProcess[str]:
        partitions = f"{self.name}_data_versions"
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            if version not in instance.get_dynamic_partitions(partitions):
                instance.add_dynamic_partitions(partitions, [version])
        return self.run(
            str(BIN / "dagster"), "job", "execute", "-m", "lifecycle_pipeline.definitions",
            "-j", f"{self.name}_lifecycle", "--tags", json.dumps({"dagster/partition": version}),
        )  # fmt: skip

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return committed_project_copy(tmp_path_factory.mktemp("code") / "repo")


def make_project(
    base: Path, frame: pd.DataFrame, batch: pd.DataFrame, declaration: dict, fmt: str, code: Path
) -> Project:
    base.mkdir(parents=True, exist_ok=True)
    (base / "dagster_home").mkdir()
    (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    init_registry(base / "registry", base / "remote")
    suffix = "parquet" if fmt == "parquet" else "csv"
    data, batch_file = base / f"upload.{suffix}", base / f"batch.{suffix}"
    if fmt == "parquet":
        frame.to_parquet(data, index=False)
        batch.to_parquet(batch_file, index=False)
    else:
        frame.to_csv(data, index=False)
        batch.to_csv(batch_file, index=False)
    publish(base / "registry", Publication("data-v1", data, f"data/table.{suffix}", "v1"))
    publish(
        base / "registry",
        Publication("batch-001", batch_file, f"batches/batch-001.{suffix}", "batch"),
    )
    folder = base / "models" / declaration["name"]
    folder.mkdir(parents=True)
    component = {"type": COMPONENT_TYPE, "attributes": declaration}
    (folder / DECLARATION_FILE).write_text(yaml.safe_dump(component, sort_keys=False))
    (folder / "model_card.yaml").write_text("# every human field a gap, on purpose\n")
    return Project(base=base, declaration=folder / DECLARATION_FILE, code=code)


def multiclass_declaration(names: dict[str, str]) -> dict:
    return {
        "name": "unseen_multiclass",
        "description": "A generated three-class model that no code has seen.",
        "data": {"path": "data/table.csv", "format": "csv", "batch_path": "batches/{key}.csv"},
        "contract": {
            "target": names["target"],
            "task": "multiclass",
            "row": "one generated case",
            "classes": [
                {"value": "low", "name": "Low"},
                {"value": "mid", "name": "Middle"},
                {"value": "high", "name": "High"},
            ],
            "features": {
                names["numeric"]: {"type": "numeric"},
                names["integer"]: {"type": "integer", "range": [0, 100]},
                names["category"]: {
                    "type": "categorical",
                    "categories": ["north", "south", "east"],
                },
            },
            "drop": [names["id"]],
        },
        "estimator": {
            "class": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 2000},
            "scale": True,
        },
        "evaluation": {
            "gates": {"macro_f1": {"min": 0.5}, "log_loss": {"max": 1.0}},
            "slices": [{"column": names["category"]}],
        },
    }


def regression_declaration(names: dict[str, str]) -> dict:
    return {
        "name": "unseen_regression",
        "description": "A generated regression stored as Parquet.",
        "data": {
            "path": "data/table.parquet",
            "format": "parquet",
            "batch_path": "batches/{key}.parquet",
        },
        "contract": {
            "target": names["target"],
            "task": "regression",
            "row": "one generated measurement",
            "target_unit": "units",
            "features": {
                names["numeric"]: {"type": "numeric", "range": [0, None]},
                names["integer"]: {"type": "integer"},
                names["category"]: {"type": "categorical"},
            },
        },
        "estimator": {
            "class": "sklearn.ensemble.RandomForestRegressor",
            "params": {"n_estimators": 30, "min_samples_leaf": 3},
            "trusted_types": ["sklearn.tree._tree.Tree"],
        },
        "evaluation": {
            "gates": {"rmse": {"max": 3.0}, "r2": {"min": 0.8}},
            "slices": [{"column": names["numeric"], "bins": [5.0]}],
        },
    }


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory, code: Path) -> Iterator[Project]:
    frame, names = multiclass_frame()
    batch = frame.drop(columns=[names["target"]]).sample(200, random_state=3)
    project = make_project(
        tmp_path_factory.mktemp("multiclass"), frame, batch, multiclass_declaration(names), "csv",
        code,
    )  # fmt: skip
    done = project.materialize("data-v1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    yield project


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory, code: Path) -> Iterator[Project]:
    frame, names = regression_frame()
    batch = frame.drop(columns=[names["target"]]).sample(200, random_state=4)
    project = make_project(
        tmp_path_factory.mktemp("regression"), frame, batch, regression_declaration(names),
        "parquet", code,
    )  # fmt: skip
    done = project.materialize("data-v1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    yield project


@pytest.mark.parametrize("which", ["multiclass", "regression"])
def test_the_whole_lifecycle_runs_from_a_declaration_alone(
    which: str, request: pytest.FixtureRequest
) -> None:
    project: Project = request.getfixturevalue(which)
    name = project.name
    with project.instance() as instance:
        for asset in ("data_snapshot", "trained_model", "evaluation", "model_card"):
            assert latest(instance, project.key(asset), "data-v1") is not None, asset
        package = latest(instance, project.key("deployment_package"), "data-v1")
        assert package is not None
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {f"{name}_lifecycle"}
        assert all(r.tags["lifecycle/model"] == name for r in runs)
        checks: dict[str, CheckOutcome] = {}
        for run in runs:
            checks |= check_results(instance, run.run_id)
        evaluation = metadata_values(latest(instance, project.key("evaluation"), "data-v1"))
    declared = project.attributes()
    gates = {f"{name}/evaluation:gate_{m}" for m in declared["evaluation"]["gates"]}
    assert gates <= set(checks), sorted(checks)
    assert all(checks[g].passed for g in gates)
    assert checks[f"{name}/deployment_package:prediction_parity"].passed
    assert checks[f"{name}/deployment_package:package_verifies"].passed
    assert evaluation["task"] == declared["contract"]["task"]
    assert evaluation["gates/total"] == str(len(declared["evaluation"]["gates"]))  # a setting


@pytest.mark.parametrize("which", ["multiclass", "regression"])
def test_drift_on_a_batch_and_reproduce_say_what_they_found(
    which: str, request: pytest.FixtureRequest
) -> None:
    project: Project = request.getfixturevalue(which)
    drift = project.lifecycle("drift", "--batch", "batch-001")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert "Batch batch-001:" in drift.stdout
    with project.instance() as instance:
        assert latest(instance, project.key("drift_monitor"), "batch-001") is not None
    again = project.lifecycle("reproduce", "data-v1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "identical" in again.stdout
    line = next(x for x in again.stdout.splitlines() if x.startswith("report: "))
    report = Path(line.removeprefix("report: "))
    assert report.name.startswith(project.name)
    assert json.loads(report.read_text())["model"] == project.name


def test_an_inferred_declaration_runs_as_proposed(multiclass: Project, tmp_path: Path) -> None:
    """`contract infer` proposes; accepted as is, the proposal trains a model."""
    frame, names = multiclass_frame()
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    proposal = tmp_path / "models" / "inferred" / DECLARATION_FILE
    made = multiclass.lifecycle(
        "contract", "infer", "--data", str(data), "--target", names["target"],
        "--name", "inferred", "--output", str(proposal),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (proposal.parent / "model_card.yaml").write_text("")
    project = Project(base=tmp_path, declaration=proposal, code=multiclass.code)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "registry").symlink_to(multiclass.base / "registry")
    done = project.materialize("data-v1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert project.attributes()["name"] == "inferred"
    with project.instance() as instance:
        assert latest(instance, ["inferred", "deployment_package"], "data-v1") is not None
