"""A generated model zoo onboarded as a new team would, after the demo model, in a random order.

Each model comes from `tests/zoo.py`: data no one on this project prepared (missing values in
every feature type, category codes that look like numbers, string and integer targets, an id
column, CSV and Parquet), each in its own git + DVC registry. It goes through the commands a
team runs: `new-model`, a review of the proposal, `check`, `drift calibrate`, a commit,
`materialize` of two data versions. Then the invariants hold for every one of them: held-out
and golden rows score identically through evaluation, `lifecycle predict` and the package's
`predict.py` in another interpreter; the card names the true previous version; reproduce says
identical; a calm batch is not flagged.

One instance is shared by the module (onboarding is the expensive part); each test reads it.
The seed is ``LIFECYCLE_ZOO_SEED`` (default fixed, so CI is repeatable); the order of
onboarding and every data detail follow from it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from lifecycle_pipeline.declaration import DECLARATION_FILE, load_declaration
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.registry_demo import Publication, init_registry, publish
from tests.conftest import (
    GIT_IDENTITY,
    PROJECT_ROOT,
    Registry,
    committed_project_copy,
    dagster_home,
    lifecycle_cli,
)
from tests.zoo import ZooModel, generate, kinds

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("zoo")]

SEED = int(os.environ.get("LIFECYCLE_ZOO_SEED", "20261207"))
MODELS = 3  # in `make test`; `LIFECYCLE_ZOO_MODELS=5` onboards every kind of tests/zoo.py
COUNT = int(os.environ.get("LIFECYCLE_ZOO_MODELS", str(MODELS)))
BATCH_SIZE = 60
FALSE_ALARM_RATE = 0.05


@dataclass
class Said:
    """What one `lifecycle` command printed and returned."""

    code: int
    out: str
    err: str


@dataclass
class Zoo:
    project: Path
    base: Path
    env: dict[str, str]
    models: list[ZooModel]
    order: list[str]
    said: dict[str, list[Said]] = field(default_factory=dict)

    def lifecycle(self, *args: str) -> Said:
        """`lifecycle ARGS` in this process (as a team's shell would run it, minus the
        interpreter start), with the zoo's environment."""
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as patch:
            for key, value in self.env.items():
                patch.setenv(key, value)
            patch.chdir(self.project)
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    code = lifecycle_cli(*args)
                except SystemExit as exit_:  # argparse refusals
                    code = int(exit_.code or 0)
        return Said(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> Said:
        said = self.lifecycle(*args)
        assert said.code == 0, f"lifecycle {' '.join(args)} -> {said.code}\n{said.out}\n{said.err}"
        return said

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"])


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_IDENTITY, "-C", str(repo), *args], check=True, capture_output=True)


def _team_registry(base: Path, model: ZooModel, path: str, batch_path: str) -> Path:
    """The team's own git + DVC registry: two data versions and one calm batch, tagged."""
    repo, remote = base / f"{model.name}-registry", base / f"{model.name}-remote"
    init_registry(repo, remote)
    uploads = base / f"{model.name}-uploads"
    uploads.mkdir()
    items = [
        (tag, model.write(frame, uploads / f"{tag}{model.suffix}"), path)
        for tag, frame in model.versions.items()
    ]
    assert model.batch is not None
    batch = f"{model.name}-batch-001"
    items.append(
        (batch, model.write(model.batch, uploads / f"{batch}{model.suffix}"),
         batch_path.format(key=batch))
    )  # fmt: skip
    for tag, source, target in items:
        publish(repo, Publication(tag=tag, source=source, target=target, message=tag))
    return repo


def _review(zoo: Zoo, model: ZooModel, declaration: Path) -> dict[str, Any]:
    """What the team's reviewer checks and edits in the proposal: the invariants of the
    inference first (they are the point of onboarding), then the team's own choices."""
    document = yaml.safe_load(declaration.read_text(encoding="utf-8"))
    attributes = document["attributes"]
    contract = attributes["contract"]
    sample = model.versions[model.tag(1)]
    assert contract["target"] == model.target
    assert contract["task"] == model.kind.task
    assert model.id_column in contract.get("drop", []), "an all-unique id column was proposed"
    for column, declared in model.features.items():
        proposed = contract["features"][column]
        if sample[column].isna().any():
            assert proposed.get("nullable") is True, f"{column} has gaps, proposed {proposed}"
        assert "" not in proposed.get("categories", []), f"{column}: '' proposed as a category"
        # The reviewer declares what the column means: codes such as "007" are categories
        # even where every code in the sample happens to look like a number.
        proposed["type"] = declared
        if declared == "categorical":
            proposed["categories"] = sorted({str(v) for v in sample[column].dropna()})
        else:
            proposed.pop("categories", None)
    attributes["estimator"]["params"] = {"n_estimators": 25, "min_samples_leaf": 3}
    attributes["description"] = f"A generated {model.kind.task} model of the zoo ({model.name})."
    contract["row"] = "one generated record"
    attributes["drift"] = {
        **(attributes.get("drift") or {}),
        "batch_size": BATCH_SIZE,
        "false_alarm_rate": FALSE_ALARM_RATE,
    }
    declaration.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return attributes


def _calibrated(said: Said) -> dict[str, Any]:
    """The `drift:` block `drift calibrate` prints for the team to paste."""
    text = said.out
    start = text.index("drift:")
    block: list[str] = []
    for line in text[start:].splitlines():
        if block and line and not line.startswith((" ", "drift:")):
            break
        block.append(line)
    parsed = yaml.safe_load("\n".join(block))
    assert isinstance(parsed, dict) and "drift" in parsed, text
    return dict(parsed["drift"])


def _onboard(zoo: Zoo, model: ZooModel, inbox: Path) -> None:
    sample = model.write(model.versions[model.tag(1)], inbox / f"{model.name}{model.suffix}")
    # The team's registry first, at the path and tags `new-model` proposes by default.
    registry = _team_registry(
        zoo.base, model, f"data/{sample.name}", "batches/{key}" + model.suffix
    )
    said = [
        zoo.ok("new-model", model.name, "--data", str(sample), "--target", model.target,
               "--registry", str(registry))
    ]  # fmt: skip
    folder = zoo.project / "models" / model.name
    declaration = folder / DECLARATION_FILE
    _review(zoo, model, declaration)
    said.append(zoo.ok("--model", model.name, "check", "--data", str(sample)))
    calibration = zoo.ok(
        "--model", model.name, "drift", "calibrate", "--data", str(sample),
        "--batch-size", str(BATCH_SIZE), "--false-alarm-rate", str(FALSE_ALARM_RATE),
    )  # fmt: skip
    said.append(calibration)
    document = yaml.safe_load(declaration.read_text(encoding="utf-8"))
    document["attributes"]["drift"] = {
        **document["attributes"]["drift"],
        **_calibrated(calibration),
    }
    declaration.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    said.append(zoo.ok("--model", model.name, "check"))
    _git(zoo.project, "add", str(folder))
    _git(zoo.project, "commit", "-q", "-m", f"onboard {model.name}")
    for number in (1, 2):
        said.append(zoo.ok("--model", model.name, "materialize", model.tag(number)))
    zoo.said[model.name] = said


@pytest.fixture(scope="module")
def zoo(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zoo]:
    base = tmp_path_factory.mktemp("zoo")
    project = committed_project_copy(base / "project")
    env = {
        "LIFECYCLE_PROJECT_ROOT": str(project),
        "LIFECYCLE_HOME": str(base / "state"),
        "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
        "LIFECYCLE_REGISTRY_URL": str(demo_registry.repo),  # the demo models' registry
        "DAGSTER_HOME": str(dagster_home(base / "dagster_home")),
        "PYTHONPATH": str(project),
        # Models onboarded earlier are reproduced at their own, older commit: a worktree
        # whose environment uv builds from that commit's lock.
        "LIFECYCLE_UV": str(PROJECT_ROOT / ".tools" / "bin" / "uv"),
    }
    rng = np.random.default_rng(SEED)
    models = [generate(SEED, i, kind) for i, kind in enumerate(kinds()[:COUNT])]
    order = [models[i].name for i in rng.permutation(len(models))]
    zoo = Zoo(project=project, base=base, env=env, models=models, order=order)
    # The demo model first: the zoo's models join an instance that already has other runs.
    zoo.ok("--model", "breast_cancer", "materialize", "data-v1")
    inbox = base / "inbox"
    inbox.mkdir()
    by_name = {m.name: m for m in models}
    for name in order:
        _onboard(zoo, by_name[name], inbox)
    yield zoo


def _ids(zoo: Zoo) -> list[str]:
    return zoo.order


def _evaluation_predictions(zoo: Zoo, model: ZooModel, version: str) -> pd.DataFrame:
    from lifecycle_pipeline.assets.monitoring import load_stage
    from lifecycle_pipeline.resources.artifact_store import ArtifactStore

    declared = load_declaration(zoo.project / "models" / model.name / DECLARATION_FILE)
    with zoo.instance() as instance:
        report, _ = load_stage(
            instance, ArtifactStore(root=zoo.env["LIFECYCLE_ARTIFACT_ROOT"]),
            declared.asset("evaluation"), version,
        )  # fmt: skip
    return report.predictions


def _raw_rows(model: ZooModel, version: str, rows: np.ndarray, target: Path) -> Path:
    """The held-out rows exactly as the training file holds them (the same text for CSV,
    the same Arrow values for Parquet): production receives the training data's format."""
    frame = model.versions[version].drop(columns=[model.target]).iloc[rows]
    return model.write(frame.reset_index(drop=True), target)


def _package(zoo: Zoo, model: ZooModel, version: str) -> Path:
    declared = load_declaration(zoo.project / "models" / model.name / DECLARATION_FILE)
    with zoo.instance() as instance:
        meta = metadata_values(latest(instance, declared.key("deployment_package"), version))
    folder = Path(str(meta["artifact/uri"]))
    assert (folder / "predict.py").is_file(), meta
    return folder


def _output_columns(predictions: pd.DataFrame) -> list[str]:
    return [c for c in predictions.columns if c not in ("row_id", "row") and "flag" not in c]


def test_the_zoo_covers_every_kind_and_was_onboarded_in_a_random_order(zoo: Zoo) -> None:
    tasks = {m.kind.task for m in zoo.models}
    formats = {m.kind.fmt for m in zoo.models}
    targets = {m.kind.string_target for m in zoo.models}
    assert tasks == {"binary", "multiclass", "regression"}
    assert formats == {"csv", "parquet"} and targets == {True, False}
    for model in zoo.models:
        frame = model.versions[model.tag(1)]
        assert all(frame[c].isna().any() for c in model.features), "a feature without gaps"
    printed = zoo.said[zoo.order[0]][0].out
    assert "next steps" in printed


@pytest.mark.parametrize("index", range(COUNT))
def test_held_out_rows_score_identically_in_evaluation_predict_and_the_package(
    zoo: Zoo, index: int, tmp_path: Path
) -> None:
    model = next(m for m in zoo.models if m.name == zoo.order[index])
    version = model.tag(2)
    evaluated = _evaluation_predictions(zoo, model, version)
    rows = evaluated["row_id"].to_numpy()
    held_out = _raw_rows(model, version, rows, tmp_path / f"held_out{model.suffix}")
    gaps = model.versions[version].iloc[rows][list(model.features)].isna().any(axis=1)
    assert gaps.sum() > 0, "the held-out rows must include rows with missing values"

    via_cli = tmp_path / "cli.parquet"
    zoo.ok("--model", model.name, "predict", version, str(held_out), "--output", str(via_cli))
    package = _package(zoo, model, version)
    via_package = tmp_path / "package.parquet"
    done = subprocess.run(
        [sys.executable, "predict.py", str(held_out), str(via_package)],
        cwd=package, capture_output=True, text=True, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    expected = evaluated.drop(columns=["row_id"]).reset_index(drop=True)
    for produced in (pd.read_parquet(via_cli), pd.read_parquet(via_package)):
        produced = produced.reset_index(drop=True)
        for column in expected.columns:
            left, right = expected[column].to_numpy(), produced[column].to_numpy()
            if left.dtype.kind == "f":  # bit for bit, not approximately
                assert left.tobytes() == right.astype(left.dtype).tobytes(), column
            else:
                assert [str(v) for v in left] == [str(v) for v in right], column


@pytest.mark.parametrize("index", range(COUNT))
def test_golden_rows_verify_and_match_the_training_record(zoo: Zoo, index: int) -> None:
    model = next(m for m in zoo.models if m.name == zoo.order[index])
    version = model.tag(2)
    zoo.ok("--model", model.name, "verify", version)
    package = _package(zoo, model, version)
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    declared = load_declaration(zoo.project / "models" / model.name / DECLARATION_FILE)
    with zoo.instance() as instance:
        trained = metadata_values(latest(instance, declared.key("trained_model"), version))
    assert manifest["golden"]["prediction_digest"] == trained["model/prediction_digest"]
    golden = pq.read_table(package / "golden_inputs.parquet").to_pandas()
    assert golden.isna().any().any() or len(golden) < 5, "golden rows hold no missing value"


def test_each_card_names_the_true_previous_version(zoo: Zoo) -> None:
    """Models onboarded second and third (and after the demo model) name their own v1."""
    with zoo.instance() as instance:
        for name in zoo.order:
            declared = load_declaration(zoo.project / "models" / name / DECLARATION_FILE)
            first = metadata_values(latest(instance, declared.key("model_card"), f"{name}-v1"))
            second = metadata_values(latest(instance, declared.key("model_card"), f"{name}-v2"))
            assert first["previous_version"] == "none: first model version", name
            assert str(second["previous_version"]).startswith(f"{name}/trained_model@{name}-v1 "), (
                name,
                second["previous_version"],
            )


@pytest.mark.parametrize("index", range(COUNT))
def test_reproduce_says_identical(zoo: Zoo, index: int) -> None:
    name = zoo.order[index]
    said = zoo.ok("--model", name, "reproduce", f"{name}-v2")
    assert re.search(r"\bidentical\b", said.out), said.out


@pytest.mark.parametrize("index", range(COUNT))
def test_a_calm_batch_is_not_flagged_at_the_calibrated_thresholds(zoo: Zoo, index: int) -> None:
    name = zoo.order[index]
    said = zoo.ok("--model", name, "drift", "--batch", f"{name}-batch-001")
    assert "no drift" in said.out.lower() or "not drifted" in said.out.lower(), said.out
