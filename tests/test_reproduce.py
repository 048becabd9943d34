"""`lifecycle reproduce` in a real temporary project repository with real commits.

The project's own sources are committed into a temporary git repository; versions are
trained there through Dagster's CLI (as a deployment would), and reproduced from later
commits. Nothing is faked: the worktree path builds the recorded commit's environment from
its own uv.lock with uv, and the scratch runs are real Dagster runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.reproduce import prepare_worktree
from tests.conftest import (
    FAST_TRAINING,
    GIT_IDENTITY,
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Registry,
    committed_project_copy,
)

# One worker builds the repository once; its tests then run in order on it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reproduce")]

TRAINING = Path("lifecycle_pipeline/assets/training.py")
MODEL = SAMPLE_MODEL.name
DECLARATION = Path("models/breast_cancer/defs.yaml")
SELECTION = " or ".join(
    f"key:{SAMPLE[stage].to_user_string()}"  # key:breast_cancer/data_snapshot ...
    for stage in ("data_snapshot", "features", "trained_model", "evaluation")
)
IDENTITY = GIT_IDENTITY


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *IDENTITY, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _edit(repo: Path, path: Path, old: str, new: str) -> None:
    text = (repo / path).read_text(encoding="utf-8")
    assert old in text, f"{path} no longer contains {old!r}; update this test"
    (repo / path).write_text(text.replace(old, new), encoding="utf-8")


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@dataclass
class Project:
    repo: Path
    registry: Registry
    state: Path  # LIFECYCLE_HOME: worktrees, reports, audit log

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env |= {
            "DAGSTER_HOME": str(home),
            "LIFECYCLE_HOME": str(self.state),
            "LIFECYCLE_REGISTRY_URL": str(self.registry.repo),
            "LIFECYCLE_ARTIFACT_ROOT": str(home.parent / f"{home.name}_artifacts"),
            "PYTHONPATH": str(self.repo),  # this checkout's code, not the installed one
            "LIFECYCLE_UV": str(PROJECT_ROOT / ".tools" / "bin" / "uv"),
        }
        return env

    def train(self, home: Path, key: str = "data-v1") -> None:
        """Materialize the stages through evaluation for ``key`` at the current checkout."""
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
        env = self.env(home)
        add = "import dagster as dg, sys; dg.DagsterInstance.get().add_dynamic_partitions("
        subprocess.run(
            [sys.executable, "-c", add + "sys.argv[2], [sys.argv[1]])", key,
             SAMPLE_MODEL.scoped("data_versions")],
            cwd=self.repo, env=env, check=True,
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
             "lifecycle_pipeline.definitions", "--select", SELECTION, "--partition", key,
             "--config-json", json.dumps(FAST_TRAINING)],
            cwd=self.repo, env=env, check=True, capture_output=True,
        )  # fmt: skip

    def lifecycle(self, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """`lifecycle --model breast_cancer ARGS` (the project declares two models)."""
        return subprocess.run(
            [sys.executable, "-m", "lifecycle_pipeline.cli", "--model", MODEL, *args],
            cwd=self.repo, env=self.env(home), capture_output=True, text=True, check=False,
        )  # fmt: skip


def _report(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    line = next(x for x in done.stdout.splitlines() if x.startswith("report: "))
    report: dict[str, object] = json.loads(Path(line.removeprefix("report: ")).read_text())
    return report


def _elements(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in report["elements"]}  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def project(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("project")
    repo = committed_project_copy(base / "repo")
    return Project(repo=repo, registry=demo_registry, state=base / "state")


@pytest.fixture(scope="session")
def trained_at_a(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("a") / "home"
    project.train(home)
    return home


def test_reproduce_at_the_current_commit_is_identical_and_lists_every_element(
    project: Project, trained_at_a: Path
) -> None:
    done = project.lifecycle(trained_at_a, "reproduce", "data-v1")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(done)
    assert report["method"] == "current"
    assert report["verdict"] == "identical"
    assert report["model"] == MODEL
    assert f"reproduction of {MODEL} data-v1 (run " in done.stdout
    path = next(x for x in done.stdout.splitlines() if x.startswith("report: "))
    assert Path(path.removeprefix("report: ")).name.startswith(f"{MODEL}-data-v1-")
    elements = _elements(report)
    assert set(elements) == {
        "data_md5", "declaration.sha256", "code.commit", "code.dirty", "code.lock_hash",
        "code.source_digest", "config_hash", "fingerprint.state", "fingerprint.predictions",
        "fingerprint.combined",
    }  # fmt: skip
    # "current" is chosen only when commit, dirty flag and lock equal the record, so those
    # rows prove nothing here; what the re-run itself produced must match: data read through
    # DVC, the sources, the resolved config and the model.
    measured = ["data_md5", "declaration.sha256", "code.source_digest", "config_hash",
                "fingerprint.state", "fingerprint.predictions", "fingerprint.combined"]  # fmt: skip
    for name in measured:
        assert elements[name]["recorded"] == elements[name]["reproduced"], name
    with dg.DagsterInstance.from_config(str(trained_at_a)) as instance:
        recorded = metadata_values(latest(instance, SAMPLE["trained_model"], "data-v1"))
    assert elements["fingerprint.combined"]["recorded"] == recorded["model/fingerprint"]
    assert elements["data_md5"]["reproduced"] == project.registry.resource().resolve("data-v1").md5
    for name in elements:
        assert name in done.stdout  # the printed report shows each element too
    assert "verdict: identical" in done.stdout
    # The reproduction is evidence: it is in the audit trail, which verifies.
    audit = project.lifecycle(trained_at_a, "audit", "verify")
    assert audit.returncode == 0, audit.stderr
    assert f"{MODEL}: {project.state / 'audit' / 'breast_cancer.jsonl'}: " in audit.stdout


def test_version_from_an_earlier_commit_is_reproduced_in_its_own_worktree(
    project: Project, trained_at_a: Path, tmp_path: Path
) -> None:
    commit_a = _git(project.repo, "rev-parse", "HEAD")
    _edit(project.repo, DECLARATION, "min_samples_leaf: 2", "min_samples_leaf: 3")
    _commit(project.repo, "B: larger leaves, declared")
    today = tmp_path / "home_b"
    project.train(today)  # what today's code makes of the same data

    done = project.lifecycle(trained_at_a, "reproduce", "data-v1")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(done)
    assert report["method"] == "worktree"
    assert report["commit"] == commit_a
    assert Path(str(report["workdir"])).is_dir()
    assert report["verdict"] == "identical"  # identical to A's own record ...
    elements = _elements(report)
    # Measured by the run inside the worktree: its checkout is A, not today's B.
    assert elements["code.commit"]["reproduced"] == commit_a
    assert elements["code.dirty"]["reproduced"] is False
    newer = project.lifecycle(today, "reproduce", "data-v1")  # B's record, at B: current path
    assert newer.returncode == 0, newer.stdout + newer.stderr
    b_elements = _elements(_report(newer))
    assert _report(newer)["method"] == "current"
    # ... and not to today's: B's declaration gives another model.
    assert (
        elements["declaration.sha256"]["reproduced"]
        != b_elements["declaration.sha256"]["reproduced"]
    )
    assert (
        elements["fingerprint.combined"]["reproduced"]
        != b_elements["fingerprint.combined"]["reproduced"]
    )
    # A second reproduction reuses the worktree and its environment (no second uv sync).
    marker = Path(str(report["workdir"])) / ".venv" / ".lifecycle-synced-lock"
    synced = marker.stat().st_mtime_ns
    worktrees = project.state / "reproduce" / "worktrees"
    again, _ = prepare_worktree(project.repo, commit_a, worktrees)
    assert str(again) == report["workdir"]
    assert marker.stat().st_mtime_ns == synced


def _clone(project: Project, tmp_path: Path) -> Project:
    repo = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project.repo), str(repo)], check=True)
    return Project(repo=repo, registry=project.registry, state=tmp_path / "state")


def test_unseeded_estimator_is_reported_different_naming_the_fingerprint(
    project: Project, tmp_path: Path
) -> None:
    clone = _clone(project, tmp_path)
    _edit(clone.repo, TRAINING, 'params["random_state"] = seed', 'params["random_state"] = None')
    _commit(clone.repo, "C: forgot the seed")
    home = tmp_path / "home"
    clone.train(home)
    done = clone.lifecycle(home, "reproduce", "data-v1")
    assert done.returncode == 1, done.stdout + done.stderr
    report = _report(done)
    assert report["method"] == "current"
    assert not report["identical"]
    assert "fingerprint.combined" in str(report["verdict"])
    elements = _elements(report)
    assert not elements["fingerprint.state"]["same"]
    assert elements["data_md5"]["same"] and elements["config_hash"]["same"]
    assert "different: " in done.stdout and "fingerprint.combined" in done.stdout


def test_dirty_and_unreachable_commits_are_refused_saying_what_is_missing(
    project: Project, tmp_path: Path
) -> None:
    clone = _clone(project, tmp_path)
    _edit(clone.repo, TRAINING, "Estimator random_state.", "Estimator random_state (edited).")
    dirty = tmp_path / "dirty"
    clone.train(dirty)  # trained from an uncommitted edit
    refused = clone.lifecycle(dirty, "reproduce", "data-v1")
    assert refused.returncode == 2
    assert "uncommitted changes" in refused.stderr and "cannot be reproduced" in refused.stderr

    lost = _commit(clone.repo, "D: a commit that will be lost")
    gone = tmp_path / "gone"
    clone.train(gone)
    _git(clone.repo, "reset", "-q", "--hard", "HEAD~1")
    _git(clone.repo, "reflog", "expire", "--expire=now", "--all")
    _git(clone.repo, "gc", "-q", "--prune=now")
    refused = clone.lifecycle(gone, "reproduce", "data-v1")
    assert refused.returncode == 2
    assert f"commit {lost}" in refused.stderr and "not reachable" in refused.stderr
    assert "git fetch origin" in refused.stderr
