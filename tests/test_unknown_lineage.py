"""Unknown is never data: a commit git could not read blocks packaging and promotion.

When git cannot run (not installed, or "detected dubious ownership" in a container whose
checkout belongs to another user) the code state used to say commit "unknown" and training,
packaging and promotion went on; governance wrote a missing fingerprint, md5 or commit as "".
Training may still record the gap (its record says why), but nothing is packaged or promoted
from it. Container images carry build-info.json instead of .git: that path keeps working.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lifecycle_pipeline.assets.packaging import PackageBuildError, check_packageable
from lifecycle_pipeline.governance import lineage_gaps
from lifecycle_pipeline.lineage.environment import BUILD_INFO, UNKNOWN, code_state, commit_gap
from lifecycle_pipeline.lineage.query import latest, metadata_values
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Registry,
    home_pipeline,
    lifecycle_cli,
)
from tests.reliability.cases import case

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _trained(code: dict[str, object]) -> SimpleNamespace:
    """What check_packageable reads of a trained model: its fingerprint and its lineage."""
    return SimpleNamespace(fingerprint=SimpleNamespace(combined="f" * 64), lineage={"code": code})


def _evaluation() -> SimpleNamespace:
    return SimpleNamespace(model_fingerprint="f" * 64, gates=[])


def test_git_that_cannot_run_is_recorded_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git is not installed
    state = code_state(tmp_path)
    assert state.commit == UNKNOWN and state.dirty
    assert "git could not be run" in state.to_dict()["commit_unreadable"]


def test_a_dubious_ownership_refusal_is_recorded_with_gits_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What git says in a container whose checkout belongs to another user (root cannot
    # be refused so here: git's answer is given as it is in that container).
    monkeypatch.setattr(
        "lifecycle_pipeline.lineage.environment._run_git",
        lambda root, *args: (None, f"fatal: detected dubious ownership in repository at '{root}'"),
    )
    state = code_state(tmp_path)
    assert state.commit == UNKNOWN
    assert "dubious ownership" in state.to_dict()["commit_unreadable"]


def test_a_model_whose_commit_could_not_be_read_is_not_packaged() -> None:
    fault = case("lineage", "commit git could not read")
    code = {
        "commit": UNKNOWN,
        "dirty": True,
        "commit_unreadable": "git: fatal: detected dubious ownership in repository at '/app'",
    }
    with pytest.raises(PackageBuildError) as refused:
        check_packageable("data-v1", _trained(code), _evaluation())  # type: ignore[arg-type]
    assert fault.shown_in(str(refused.value)), refused.value
    assert "dubious ownership" in str(refused.value)


def test_a_commit_from_build_info_is_packaged(tmp_path: Path) -> None:
    """An image has no .git: its build-info.json names the commit, which is a real one."""
    (tmp_path / BUILD_INFO).write_text(json.dumps({"commit": COMMIT}))
    state = code_state(tmp_path)
    assert state.commit == COMMIT and commit_gap(state.to_dict()) is None
    check_packageable("data-v1", _trained(state.to_dict()), _evaluation())  # type: ignore[arg-type]


def test_governance_names_every_lineage_field_that_is_missing() -> None:
    assert lineage_gaps(fingerprint="", data_md5="", commit=UNKNOWN) == [
        "trained_model: model/fingerprint is not recorded",
        "data_snapshot: dvc/md5 is not recorded",
        "trained_model: code/commit is 'unknown' (git could not read it when the model was "
        "trained): retrain where git can read the checkout, or build an image with "
        "build-info.json",
    ]
    assert lineage_gaps(fingerprint="f" * 64, data_md5="d" * 32, commit=COMMIT) == []


@pytest.mark.slow
def test_a_checkout_git_cannot_read_packages_nothing_and_promotion_says_why(
    registry_copy: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """End to end, with real git: the code checkout is not a repository (no .git, no
    build-info.json), so the real lifecycle job trains, records the gap, and refuses to package;
    then `lifecycle promote` exits 2 saying why, and nothing reaches the audit log."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.setenv("LIFECYCLE_PROJECT_ROOT", str(checkout))
    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(PROJECT_ROOT / "models"))
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "audit"))
    with home_pipeline(registry_copy.resource(), tmp_path) as pipeline:
        monkeypatch.setenv("DAGSTER_HOME", str(pipeline.instance.root_directory))
        result = pipeline.run("data-v1")
        assert not result.success
        failed = [e for e in result.all_events if e.is_step_failure]
        assert [e.step_key for e in failed] == [SAMPLE_MODEL.op("deployment_package")]
        assert "no commit holds" in str(failed[0].step_failure_data.error), failed
        trained = latest(pipeline.instance, SAMPLE["trained_model"], "data-v1")
        assert trained is not None and metadata_values(trained)["code/commit"] == UNKNOWN
        assert latest(pipeline.instance, SAMPLE["deployment_package"], "data-v1") is None
    capsys.readouterr()
    promote = ["promote", "data-v1", "--approver", "ana", "--reason", "ship it"]
    assert lifecycle_cli("--model", SAMPLE_MODEL.name, *promote) == 2
    err = capsys.readouterr().err
    assert f"recorded code/commit {UNKNOWN!r}" in err and "never packaged or promoted" in err, err
    assert not (tmp_path / "audit" / f"{SAMPLE_MODEL.name}.jsonl").exists()
