"""The project as a new user gets it: `dvc repro`/`dvc status` work, and the demo is rerunnable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.lineage.query import latest
from tests.conftest import PROJECT_ROOT
from tests.doc_commands import DEMO_TEST, DRIFT_TEST, run_and_check

# One worker, in file order: the drift test reuses the instance the demo test populated.
pytestmark = pytest.mark.xdist_group("project")

CANCER_TAGS = ("data-v1", "data-v2", "batch-001", "batch-002")
DIABETES_TAGS = ("diabetes-v1", "diabetes-v2", "diabetes-batch-001", "diabetes-batch-002")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's committed (and not-ignored) files in a fresh git repository."""
    target = tmp_path_factory.mktemp("project") / "lifecycle"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        source = PROJECT_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        _run(args, target, env)
    return target


def _env(project: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "LIFECYCLE_PROJECT_ROOT": str(project),
        "LIFECYCLE_HOME": str(project / ".lifecycle"),
        # `make test` exports the developer's DAGSTER_HOME; the copy must use its own.
        "DAGSTER_HOME": str(project / ".lifecycle" / "dagster_home"),
    }


@pytest.mark.slow
def test_dvc_repro_regenerates_exactly_the_locked_sample_data(project_copy: Path) -> None:
    env = _env(project_copy)
    dvc = str(Path(sys.executable).with_name("dvc"))
    _run([dvc, "repro"], project_copy, env)
    status = _run([dvc, "status"], project_copy, env)
    assert "up to date" in status.stdout
    # Deterministic generation: the regenerated outputs hash to what dvc.lock records.
    diff = _run(["git", "status", "--porcelain", "dvc.lock"], project_copy, env)
    assert diff.stdout.strip() == "", "dvc.lock is stale: run `dvc repro` and commit dvc.lock"
    manifest = json.loads((project_copy / "data" / "sample" / "manifest.json").read_text())
    # Both sample models, the original breast-cancer tags first (their commits stay the same).
    assert [entry["tag"] for entry in manifest["publish"]] == [*CANCER_TAGS, *DIABETES_TAGS]
    for entry in manifest["publish"]:
        raw = (project_copy / "data" / "sample" / entry["file"]).read_bytes()
        if entry["tag"].startswith("diabetes-"):
            assert raw[:4] == b"PAR1" and entry["target"].endswith(".parquet"), entry
        else:
            assert entry["target"].endswith(".csv"), entry


@pytest.mark.slow
def test_demo_runs_twice_and_the_second_run_reproduces(project_copy: Path) -> None:
    env = _env(project_copy)
    dvc = str(Path(sys.executable).with_name("dvc"))
    lifecycle = str(Path(sys.executable).with_name("lifecycle"))
    _run([dvc, "repro"], project_copy, env)
    first = _run([lifecycle, "demo"], project_copy, env)
    tags_before = _run(
        ["git", "-C", ".lifecycle/registry", "show-ref", "--tags"], project_copy, env
    ).stdout
    second = _run([lifecycle, "demo"], project_copy, env)
    tags_after = _run(
        ["git", "-C", ".lifecycle/registry", "show-ref", "--tags"], project_copy, env
    ).stdout

    assert tags_before == tags_after
    published = {line.rsplit("/", 1)[-1] for line in tags_after.splitlines()}
    assert published == {*CANCER_TAGS, *DIABETES_TAGS}
    for output in (first.stdout, second.stdout):
        assert "data-v1" in output and "data-v2" in output
        assert "diabetes-v1" in output and "diabetes-v2" in output
        assert "FAIL" not in output
        assert output.index("== model breast_cancer ==") < output.index("== model diabetes ==")
    # Both declared models, into one shared instance; the second run reproduces the first.
    for prefix, columns in (("data-v", 8), ("diabetes-v", 6)):
        first_rows = [line for line in first.stdout.splitlines() if line.startswith(prefix)]
        second_rows = [line for line in second.stdout.splitlines() if line.startswith(prefix)]
        assert len(second_rows) == 2, second.stdout
        # Same fingerprints, and the reproducibility check compared against the first run.
        for before, after in zip(first_rows, second_rows, strict=True):
            assert before.split()[:columns] == after.split()[:columns]
            assert " yes " in after and "PASS" in after
    verdicts = {
        line.split()[0]: line.split()[1:3]
        for line in second.stdout.splitlines()
        if line.split() and "batch-00" in line.split()[0]
    }
    assert verdicts["batch-001"][:2] == ["no", "drift"]
    assert verdicts["batch-002"][0] == "drift"
    assert verdicts["diabetes-batch-001"][:2] == ["no", "drift"]
    assert verdicts["diabetes-batch-002"][0] == "drift"
    assert "sex, bmi, s5" in second.stdout  # the diabetes batch's shifted columns, named
    # One Dagster instance for every model (no instance per model), each model's partitions
    # under its own names.
    home = project_copy / ".lifecycle" / "dagster_home"
    assert (home / "dagster.yaml").exists()
    assert not (project_copy / ".lifecycle" / "models").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for model, tags in (("breast_cancer", CANCER_TAGS), ("diabetes", DIABETES_TAGS)):
            versions = instance.get_dynamic_partitions(f"{model}_data_versions")
            batches = instance.get_dynamic_partitions(f"{model}_production_batches")
            assert (*versions, *batches) == tags, model
            for version in versions:
                assert latest(instance, [model, "deployment_package"], version), (model, version)


@pytest.mark.slow
def test_drift_by_hand_for_a_registry_batch_and_a_file(project_copy: Path) -> None:
    env = _env(project_copy)
    lifecycle = str(Path(sys.executable).with_name("lifecycle"))
    if not (project_copy / ".lifecycle" / "dagster_home").exists():
        _run([str(Path(sys.executable).with_name("dvc")), "repro"], project_copy, env)
        _run([lifecycle, "demo"], project_copy, env)

    # With two models declared, a command for one model must say which.
    unnamed = subprocess.run(
        [lifecycle, "drift", "--batch", "batch-002"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unnamed.returncode == 2, unnamed.stderr
    assert "Which model? Pass --model NAME" in unnamed.stderr
    assert "declared: breast_cancer, diabetes" in unnamed.stderr

    # The two commands of docs/drift.md's "By hand", read from the page.
    tagged, adhoc = (
        outcome.output
        for outcome in run_and_check(DRIFT_TEST, "docs/drift.md", project_copy, env, {})
    )
    assert "Batch batch-002: drift; drift share 0.100" in tagged
    assert "mean_texture, mean_smoothness, worst_texture" in tagged and "against data-v2" in tagged
    report = Path(tagged.split("report: ")[1].split()[0])
    assert report.is_file() and report.name == "report.html"

    assert ": no drift; drift share 0.000" in adhoc and "against data-v1" in adhoc
    assert "not recorded in the Dagster instance" in adhoc
    assert Path(adhoc.split("report: ")[1].split()[0]).is_file()

    missing = subprocess.run(
        [lifecycle, "--model", "breast_cancer", "drift", "--batch", "batch-404"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "Registry revision 'batch-404' cannot be opened" in missing.stderr


@pytest.mark.slow
def test_the_docs_commands_run_on_the_demo_instance(project_copy: Path, tmp_path: Path) -> None:
    """The shell commands of docs/ that need a demo instance, read from their pages and run on
    the one the demo test left (tests/doc_commands.py says which, with each placeholder's
    value): the state each page assumes is set up here, cheapest first, without a new run."""
    env = _env(project_copy)
    lifecycle = str(Path(sys.executable).with_name("lifecycle"))
    if not (project_copy / ".lifecycle" / "dagster_home").exists():
        _run([str(Path(sys.executable).with_name("dvc")), "repro"], project_copy, env)
        _run([lifecycle, "demo"], project_copy, env)
    context = {"bin": str(Path(sys.executable).parent), "tmp": str(tmp_path), "now": ""}

    def promote(model: str, version: str, approver: str) -> None:
        promotion = [lifecycle, "--model", model, "promote", version, "--approver", approver]
        _run([*promotion, "--reason", "the docs' commands"], project_copy, env)

    def run(page: str, cwd: Path = project_copy, environ: dict[str, str] = env) -> None:
        started = time.perf_counter()
        run_and_check(DEMO_TEST, page, cwd, environ, context)
        print(f"{page}: {time.perf_counter() - started:.1f} s")  # shown with -rP

    # The status table docs/many-models.md shows: breast_cancer on data-v1, diabetes on v2.
    promote("breast_cancer", "data-v1", "alice")
    promote("diabetes", "diabetes-v2", "bob")
    run("docs/many-models.md")
    run("docs/deployment-package.md")
    # The runbook's model serves data-v2 after data-v1 (rollback has a version to go back to).
    promote("breast_cancer", "data-v2", "bob")
    complaint = datetime.now(UTC) + timedelta(seconds=1)  # after the promotion, to the second
    context["now"] = complaint.strftime("%Y-%m-%dT%H:%M:%SZ")
    run("docs/runbooks/model-misbehaves.md")
    (tmp_path / "openssl-keys").mkdir()
    run("docs/governance.md")
    # A deployment's keyring already trusts the key in use (here the development key).
    keyring = tmp_path / "keyring"
    current = project_copy / ".lifecycle" / "keys" / "signing-key.pub"
    _run([lifecycle, "keys", "trust", str(current), "--keyring", str(keyring)], project_copy, env)
    run("docs/runbooks/rotating-keys.md", environ={**env, "LIFECYCLE_TRUSTED_KEYS": str(keyring)})
    scratch = tmp_path / "deployment"  # its key commands write into the working folder
    scratch.mkdir()
    run("docs/deployment.md", cwd=scratch)
    run("docs/drift.md")
    # A writer killed mid-record: half a record at the end of the audit log.
    with (project_copy / ".lifecycle" / "audit" / "breast_cancer.jsonl").open("ab") as log:
        log.write(b'{"seq": 99, "kind": "promot')
    run("docs/runbooks/run-died.md")
    # A damaged instance: the event index cut short.
    with (project_copy / ".lifecycle" / "dagster_home" / "history" / "runs" / "index.db").open(
        "r+b"
    ) as index:
        index.truncate(4096)
    run("docs/runbooks/damaged-instance.md")
