"""`lifecycle reproduce` in a real temporary project repository with real commits.

The project's own sources are committed into a temporary git repository; versions are
trained there through Dagster's CLI (as a deployment would), and reproduced from later
commits. Nothing is faked: the worktree path builds the recorded commit's environment from
its own uv.lock with uv, and the scratch runs are real Dagster runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.reproduce import LAST_USED, prepare_worktree
from tests.conftest import (
    FAST_TRAINING,
    GIT_IDENTITY,
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Registry,
    committed_project_copy,
    copy_registry,
    tree_digest,
)
from tests.reliability.cases import case

# One worker builds the repository once; its tests then run in order on it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reproduce")]

TRAINING = Path("lifecycle_pipeline/assets/training.py")
REGISTRY = Path("lifecycle_pipeline/resources/registry.py")
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
        # The partition is added here (the instance is plain SQLite), saving a process start.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(SAMPLE_MODEL.scoped("data_versions"), [key])
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


def _materializations(home: Path) -> int:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return sum(
            len(instance.fetch_materializations(SAMPLE[stage], limit=100).records)
            for stage in ("data_snapshot", "features", "trained_model", "evaluation")
        )


def test_reproduce_at_the_current_commit_is_identical_and_lists_every_element(
    project: Project, trained_at_a: Path
) -> None:
    artifacts = trained_at_a.parent / f"{trained_at_a.name}_artifacts"
    before = tree_digest(artifacts), _materializations(trained_at_a)
    done = project.lifecycle(trained_at_a, "reproduce", "data-v1")
    assert done.returncode == 0, done.stdout + done.stderr
    # Run in the command's own process, yet in a scratch instance and artifact root: the
    # deployment's store and instance gained nothing.
    assert (tree_digest(artifacts), _materializations(trained_at_a)) == before
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


def _moved(source: Registry, base: Path, to: str = "data-v2") -> Registry:
    """A copy of ``source`` whose data-v1 tag was moved onto ``to``'s commit (other data)."""
    moved = copy_registry(source, base)
    _git(moved.repo, "tag", "-f", "data-v1", to)
    return moved


def test_version_from_an_earlier_commit_is_reproduced_in_its_own_worktree_from_its_data(
    project: Project, trained_at_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit_a = _git(project.repo, "rev-parse", "HEAD")
    _edit(project.repo, DECLARATION, "min_samples_leaf: 2", "min_samples_leaf: 3")
    _commit(project.repo, "B: larger leaves, declared")
    today = tmp_path / "home_b"
    project.train(today)  # what today's code makes of the same data
    # Since A was trained, its data tag was also moved onto other data (one reproduction
    # proves both: A's own code, in its worktree, reads A's own registry commit).
    recorded = _git(project.registry.repo, "rev-parse", "data-v1^{commit}")
    moved = _moved(project.registry, tmp_path)
    now = _git(moved.repo, "rev-parse", "data-v1^{commit}")
    assert now != recorded

    # First in the commit's own environment, built from its uv.lock (what a commit whose lock
    # differs from today's gets); the same lock held by this environment is the next case.
    monkeypatch.setenv("LIFECYCLE_REPRODUCE_ENVIRONMENT", "own")
    # As `make` exports it for the project's own .venv: it must not make uv compile every
    # module of the worktree's environment (only what its runs import gets cached).
    monkeypatch.setenv("UV_COMPILE_BYTECODE", "1")
    done = Project(project.repo, moved, project.state).lifecycle(
        trained_at_a, "reproduce", "data-v1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(done)
    assert report["method"] == "worktree"
    assert report["environment"] == "own"
    assert "its own environment, from its uv.lock" in done.stdout
    assert report["commit"] == commit_a
    assert Path(str(report["workdir"])).is_dir()
    assert report["verdict"] == "identical"  # identical to A's own record ...
    site = next((Path(str(report["workdir"])) / ".venv" / "lib").glob("python3*/site-packages"))
    assert (site / "dagster" / "__init__.py").is_file()
    # The webserver is installed but no reproduction imports it: nothing compiled it.
    assert (site / "dagster_webserver" / "__init__.py").is_file()
    assert not list((site / "dagster_webserver").rglob("*.pyc"))
    elements = _elements(report)
    # Measured by the run inside the worktree: its checkout is A, not today's B.
    assert elements["code.commit"]["reproduced"] == commit_a
    assert elements["code.dirty"]["reproduced"] is False
    # The moved tag neither changed the data read nor passed unsaid.
    said = f"tag data-v1 now points at {now}; this reproduction read the recorded commit {recorded}"
    assert said in done.stdout
    assert case("on-call", "reproduce: data tag moved since training").shown_in(done.stdout)
    assert report["notes"] == [said]
    assert report["data"] == {
        "tag": "data-v1", "registry": str(moved.repo), "recorded_commit": recorded,
        "tag_commit": now, "read_commit": recorded, "pinned": True,
        "read_md5": elements["data_md5"]["recorded"],
    }  # fmt: skip

    newer = project.lifecycle(today, "reproduce", "data-v1")  # B's record, at B: current path
    assert newer.returncode == 0, newer.stdout + newer.stderr
    b_report = _report(newer)
    b_elements = _elements(b_report)
    assert b_report["method"] == "current"
    # The tag has not moved in this registry: nothing pinned; the note names the commit read.
    assert len(b_report["notes"]) == 1  # type: ignore[arg-type]
    assert "where tag data-v1 still points" in str(b_report["notes"])
    assert b_report["data"]["pinned"] is False  # type: ignore[index]
    assert b_report["data"]["read_commit"] == recorded  # type: ignore[index]
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
    again = prepare_worktree(project.repo, commit_a, worktrees)
    assert str(again.path) == report["workdir"] and again.environment == "own"
    assert marker.stat().st_mtime_ns == synced

    # By default, this environment runs the commit's code: uv confirms it holds A's uv.lock
    # (unchanged since), so nothing is built, and the verdict and data read are the same.
    monkeypatch.delenv("LIFECYCLE_REPRODUCE_ENVIRONMENT")
    current = Project(project.repo, moved, project.state).lifecycle(
        trained_at_a, "reproduce", "data-v1"
    )
    assert current.returncode == 0, current.stdout + current.stderr
    shared = _report(current)
    assert (shared["method"], shared["environment"]) == ("worktree", "current")
    assert "in the current environment, which holds its uv.lock exactly" in current.stdout
    assert shared["workdir"] == report["workdir"] and shared["verdict"] == "identical"
    assert _elements(shared) == elements and shared["data"] == report["data"]
    assert marker.stat().st_mtime_ns == synced  # no uv sync


def test_recorded_registry_commit_gone_is_refused_naming_it(
    project: Project, trained_at_a: Path, tmp_path: Path
) -> None:
    recorded = _git(project.registry.repo, "rev-parse", "data-v1^{commit}")
    rewritten = copy_registry(project.registry, tmp_path)
    repo = rewritten.repo  # history rewritten: one new root commit, data-v1 tagged on it
    _git(repo, "checkout", "-q", "--orphan", "rewritten")
    _git(repo, "commit", "-q", "-m", "history rewritten")
    _git(repo, "branch", "-D", "main")
    for tag in _git(repo, "tag", "--list").split():
        _git(repo, "tag", "-d", tag)
    _git(repo, "tag", "data-v1")
    _git(repo, "reflog", "expire", "--expire=now", "--all")
    _git(repo, "gc", "-q", "--prune=now")
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", recorded]).returncode != 0

    done = Project(project.repo, rewritten, project.state).lifecycle(
        trained_at_a, "reproduce", "data-v1"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert case("on-call", "reproduce: recorded registry commit gone").shown_in(done.stderr)
    assert f"registry commit {recorded}" in done.stderr
    assert str(repo) in done.stderr
    assert f"git -C {repo} fetch" in done.stderr and f"tag -f data-v1 {recorded}" in done.stderr
    assert "report: " not in done.stdout  # refused before any run


def test_moved_tag_with_code_that_cannot_pin_is_refused_saying_how_to_restore(
    project: Project, tmp_path: Path
) -> None:
    clone = _clone(project, tmp_path)
    # Code from before registry pins: it reads every version by its tag.
    _edit(clone.repo, REGISTRY, '"LIFECYCLE_REGISTRY_PINS"', '"LIFECYCLE_REGISTRY_PINS_UNREAD"')
    old = _commit(clone.repo, "E: code that reads data by tag only")
    home = tmp_path / "home"
    clone.train(home)
    _edit(clone.repo, REGISTRY, '"LIFECYCLE_REGISTRY_PINS_UNREAD"', '"LIFECYCLE_REGISTRY_PINS"')
    _commit(clone.repo, "F: pins again")
    recorded = _git(project.registry.repo, "rev-parse", "data-v1^{commit}")
    moved = _moved(project.registry, tmp_path)
    now = _git(moved.repo, "rev-parse", "data-v1^{commit}")

    done = Project(clone.repo, moved, clone.state).lifecycle(home, "reproduce", "data-v1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"now points at {now}" in done.stderr and f"commit {old[:12]}" in done.stderr
    assert "reads data by tag" in done.stderr
    assert case("on-call", "reproduce: tag moved, code before pins").shown_in(done.stderr)
    assert f"git -C {moved.repo} tag -f data-v1 {recorded}" in done.stderr
    # Refused before building anything: no worktree of the old commit was made.
    assert not (clone.state / "reproduce" / "worktrees" / old[:16]).exists()


@pytest.mark.parametrize(
    ("pins", "says"),
    [
        ("{", "LIFECYCLE_REGISTRY_PINS is not JSON"),
        ('{"data-v1": "f3ec196"}', "must map tags to full 40-hex commit ids"),
        ('{"data-v1": "' + "0" * 40 + '"}', "It is the commit LIFECYCLE_REGISTRY_PINS pins"),
    ],
    ids=["not JSON", "short commit", "commit not in the registry"],
)
def test_a_pin_reads_the_pinned_commit_under_the_tag_and_a_bad_pin_is_refused(
    demo_registry: Registry, monkeypatch: pytest.MonkeyPatch, pins: str, says: str
) -> None:
    from lifecycle_pipeline.resources.registry import RegistryError

    registry = demo_registry.resource()
    v1, v2 = registry.resolve("data-v1"), registry.resolve("data-v2")
    monkeypatch.setenv("LIFECYCLE_REGISTRY_PINS", json.dumps({"data-v2": v1.commit}))
    pinned, raw = registry.read("data-v2")
    assert (pinned.key, pinned.commit, pinned.md5) == ("data-v2", v1.commit, v1.md5)
    assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == v1.md5  # v1's bytes
    assert registry.commit_of("data-v2") == v2.commit  # the tag itself is not rewritten
    monkeypatch.setenv("LIFECYCLE_REGISTRY_PINS", pins)
    with pytest.raises(RegistryError, match=says):
        registry.read("data-v1")


def _worktree_paths(repo: Path) -> list[str]:
    listed = _git(repo, "worktree", "list", "--porcelain").splitlines()
    return [line.removeprefix("worktree ") for line in listed if line.startswith("worktree ")]


def test_worktrees_are_listed_and_pruned_through_git(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a project copy of its own with two commits, each reproduced into a worktree: the
    module's other tests may run apart from this one (xdist rebuilds module state)."""
    from lifecycle_pipeline.cli import main

    repo = committed_project_copy(tmp_path / "repo")
    commit_a = _git(repo, "rev-parse", "HEAD")
    (repo / "NOTES.txt").write_text("a later commit\n", encoding="utf-8")
    commit_b = _commit(repo, "B: a later commit")
    state = tmp_path / "state"
    # In-process `lifecycle` (no process start-up per call), on that project and its state.
    monkeypatch.setenv("LIFECYCLE_HOME", str(state))
    monkeypatch.setenv("LIFECYCLE_UV", str(PROJECT_ROOT / ".tools" / "bin" / "uv"))
    monkeypatch.setenv("LIFECYCLE_PROJECT_ROOT", str(repo))

    def lifecycle(*args: str) -> tuple[int, str, str]:
        code = main(["--model", MODEL, "reproduce", *args])
        out, err = capsys.readouterr()
        return code, out, err

    worktrees = state / "reproduce" / "worktrees"

    def reproduced_at(commit: str, used: str) -> Path:
        """A worktree as a reproduction leaves it: checked out by git, with an environment
        folder stamped with its last use (housekeeping never looks inside the environment, so
        a small file stands in for the synced packages `prepare_worktree` would install)."""
        tree = worktrees / commit[:16]
        _git(repo, "worktree", "add", "-q", "--detach", str(tree), commit)
        (tree / ".venv").mkdir()
        (tree / ".venv" / "packages.bin").write_bytes(b"\0" * (3 << 20))
        (tree / ".venv" / LAST_USED).write_text(used, encoding="utf-8")
        return tree

    older = reproduced_at(commit_a, (datetime.now(tz=UTC) - timedelta(hours=1)).isoformat())
    newer = reproduced_at(commit_b, datetime.now(tz=UTC).isoformat())  # the newest

    code, out, err = lifecycle("--list-worktrees")
    assert code == 0, out + err
    lines = out.splitlines()
    row_a = next(x for x in lines if commit_a[:12] in x)
    row_b = next(x for x in lines if commit_b[:12] in x)
    assert str(older) in row_a and str(newer) in row_b
    assert lines.index(row_b) < lines.index(row_a)  # most recently used first
    assert all(" MB" in row or " GB" in row for row in (row_a, row_b))  # size on disk

    code, out, err = lifecycle("--prune", "--older-than", "1d")
    assert code == 0, out + err
    assert "nothing to prune (2 worktrees kept)" in out
    assert older.is_dir() and newer.is_dir()

    code, out, err = lifecycle("--prune", "--keep", "1")
    assert code == 0, out + err
    assert f"removed {commit_a[:12]}  {older}  freed " in out and "1 worktree kept" in out
    assert case("on-call", "reproduce: worktrees pruned, the newest kept").shown_in(out)
    assert not older.exists() and newer.is_dir()
    assert str(older) not in _worktree_paths(repo)
    assert str(newer) in _worktree_paths(repo)

    code, out, err = lifecycle("--prune")
    assert code == 0, out + err
    assert _worktree_paths(repo) == [str(repo)]
    assert lifecycle("--list-worktrees")[1].startswith("no reproduction worktrees under")

    refusals = {
        (): "--list-worktrees or --prune",
        ("data-v1", "--prune"): "take no version",
        ("--keep", "1"): "add --prune",
        ("--prune", "--older-than", "7"): "like 12h or 7d",
    }
    for wrong, says in refusals.items():
        code, out, err = lifecycle(*wrong)
        assert code == 2, wrong
        assert says in err, (wrong, err)


def test_make_clean_removes_reproduction_worktrees_from_git(tmp_path: Path) -> None:
    repo = committed_project_copy(tmp_path / "repo")
    (repo / "Makefile").write_bytes((PROJECT_ROOT / "Makefile").read_bytes())
    worktrees = repo / ".lifecycle" / "reproduce" / "worktrees"
    for name in ("first", "second"):
        _git(repo, "worktree", "add", "-q", "--detach", str(worktrees / name), "HEAD")
    shutil.rmtree(worktrees / "second")  # removed by hand: git still lists it
    assert len(_worktree_paths(repo)) == 3

    subprocess.run(["make", "-C", str(repo), "clean"], check=True, capture_output=True)
    assert _worktree_paths(repo) == [str(repo)]
    assert not (repo / ".lifecycle").exists()


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


def test_a_model_trained_before_its_folder_was_committed_is_refused_naming_the_file(
    project: Project, tmp_path: Path
) -> None:
    """The README says: train, then commit `models/<name>/`. Untracked files used to count as
    clean, so the record named a commit without the model, and reproduce ended in Dagster's
    "none of the assets are partitioned" traceback. Now the training is dirty, the record
    names the files, and reproduce refuses before running anything."""
    clone = _clone(project, tmp_path)
    _git(clone.repo, "rm", "-r", "-q", "--cached", str(DECLARATION.parent))
    _git(clone.repo, "commit", "-q", "-m", "E: the model folder not yet committed")
    assert (clone.repo / DECLARATION).is_file()
    home = tmp_path / "home"
    clone.train(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = latest(instance, SAMPLE["trained_model"], "data-v1")
        code = metadata_values(record)["lineage"]["code"]
    assert code["dirty"] is True
    assert code["uncommitted"] == [str(DECLARATION), str(DECLARATION.parent / "model_card.yaml")]

    _commit(clone.repo, "F: commit the model folder afterwards, as the README says")
    refused = clone.lifecycle(home, "reproduce", "data-v1")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert str(DECLARATION) in refused.stderr and "not committed" in refused.stderr
    assert "Traceback" not in refused.stderr and "CheckError" not in refused.stderr
    assert f"lifecycle --model {MODEL} materialize data-v1" in refused.stderr


def test_a_commit_without_the_trained_declaration_is_refused_before_running(
    tmp_path: Path,
) -> None:
    """Records made before model files counted as dirty say "clean" for a model whose folder
    was committed later, or edited before training: the commit is checked for the declaration
    with the recorded sha256 first, instead of failing deep in Dagster (or training another
    model)."""
    from types import SimpleNamespace

    from lifecycle_pipeline.reproduce import ReproduceError, _check_declaration_at

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README").write_text("x\n", encoding="utf-8")
    empty = _commit(repo, "no model yet")
    declaration = repo / "models" / "m" / "defs.yaml"
    declaration.parent.mkdir(parents=True)
    declaration.write_bytes(b"as trained\n")
    trained = {"declaration": {"sha256": hashlib.sha256(b"as trained\n").hexdigest()}}
    model = SimpleNamespace(path=declaration, name="m")

    with pytest.raises(ReproduceError, match=r"holds no models/m/defs\.yaml"):
        _check_declaration_at(repo, empty, model, trained, "m-v1")  # type: ignore[arg-type]
    declaration.write_bytes(b"edited before it was committed\n")
    edited = _commit(repo, "the model, edited")
    with pytest.raises(ReproduceError, match="is not the declaration m-v1 was trained with"):
        _check_declaration_at(repo, edited, model, trained, "m-v1")  # type: ignore[arg-type]
    declaration.write_bytes(b"as trained\n")
    same = _commit(repo, "the model as trained")
    _check_declaration_at(repo, same, model, trained, "m-v1")  # type: ignore[arg-type]


def test_a_failed_reproduction_run_names_its_stage_and_cause_not_a_traceback(
    tmp_path: Path,
) -> None:
    """The worktree reproduction runs Dagster's CLI in another interpreter; what it prints
    when a stage fails is read back as a reproduction failure naming the stage and the cause,
    with the full output kept in a file (here: a registry that does not exist)."""
    from lifecycle_pipeline.reproduce import STAGES, run_failure

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(SAMPLE_MODEL.scoped("data_versions"), ["data-v1"])
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(tmp_path / "state"),
        "LIFECYCLE_REGISTRY_URL": str(tmp_path / "no-such-registry"),
        "LIFECYCLE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "LIFECYCLE_EXECUTOR": "in_process",
    }
    selection = " or ".join(f"key:{SAMPLE_MODEL.asset(stage)}" for stage in STAGES)
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
         "lifecycle_pipeline.definitions", "--select", selection, "--partition", "data-v1"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout + done.stderr

    error = run_failure(SAMPLE_MODEL, "data-v1", done.stdout + done.stderr, tmp_path / "logs")

    message = str(error)
    assert message.startswith("the reproduction of data-v1 failed at stage data_snapshot: ")
    assert "no-such-registry" in message, message
    assert "Traceback" not in message and "\n" not in message
    logs = list((tmp_path / "logs").glob("breast_cancer-data-v1-failed-*.log"))
    assert len(logs) == 1 and logs[0].read_text(encoding="utf-8") == done.stdout + done.stderr
