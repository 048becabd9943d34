"""Which environment a worktree reproduction runs in, and the guard on where its code comes from.

A recorded commit whose uv.lock the running environment holds exactly runs in that
environment (uv checks, changing nothing); any other lock gets the commit's own environment.
Either way the code imported must be the worktree's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle_pipeline.reproduce import (
    ReproduceError,
    _current_environment_serves,
    _materialize,
    prepare_worktree,
)
from tests.conftest import PROJECT_ROOT, SAMPLE_MODEL


def _checkout(folder: Path, lock: str) -> Path:
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", folder / "pyproject.toml")
    (folder / "uv.lock").write_text(lock, encoding="utf-8")
    return folder


def test_the_running_environment_serves_only_the_lock_it_holds(tmp_path: Path) -> None:
    lock = (PROJECT_ROOT / "uv.lock").read_text(encoding="utf-8")
    same = _checkout(tmp_path / "same", lock)
    assert _current_environment_serves(same, PROJECT_ROOT)
    # The same lock with one package pinned to another version (its files renamed to match).
    [installed] = re.findall(r'name = "six"\nversion = "([^"]+)"', lock)
    other = lock.replace(
        f'name = "six"\nversion = "{installed}"', 'name = "six"\nversion = "1.16.0"'
    ).replace(f"six-{installed}", "six-1.16.0")
    assert other != lock
    moved = _checkout(tmp_path / "moved", other)
    assert not _current_environment_serves(moved, PROJECT_ROOT)
    assert not _current_environment_serves(_checkout(tmp_path / "none", ""), PROJECT_ROOT)
    unlocked = tmp_path / "unlocked"
    unlocked.mkdir()
    assert not _current_environment_serves(unlocked, PROJECT_ROOT)  # no uv.lock at all


def test_a_run_that_would_import_this_package_from_elsewhere_is_refused(tmp_path: Path) -> None:
    """A 'worktree' without the package: the interpreter finds the installed one instead."""
    workdir = tmp_path / "worktree"
    workdir.mkdir()
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(ReproduceError, match="would import lifecycle_pipeline from") as refused:
        _materialize(
            workdir, Path(sys.executable), SAMPLE_MODEL, "data-v1", {}, scratch,
            same_environment=True,
        )  # fmt: skip
    assert "would not run the recorded commit's code" in str(refused.value)
    assert not (scratch / "artifacts").exists()  # refused before anything ran


def test_an_unknown_environment_choice_is_refused_before_any_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_REPRODUCE_ENVIRONMENT", "mine")
    cache = tmp_path / "worktrees"
    with pytest.raises(ReproduceError, match=r"LIFECYCLE_REPRODUCE_ENVIRONMENT='mine': use 'auto'"):
        prepare_worktree(PROJECT_ROOT, "0" * 40, cache)
    assert not cache.exists()
