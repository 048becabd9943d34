"""`lifecycle reproduce` identifies the model and reads its records without importing the
declared estimator's library or DVC in its own process, and gives up no check for that.

A reproduction runs the recorded commit's code and declaration in its own process, so the CLI
loads today's declaration with every structural check but without the estimator checks
(``estimator_checks=False``); a registry in a local folder resolves tags and commits with
plain git, giving DVC's answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lifecycle_pipeline.declaration import (
    DeclarationError,
    LoadedDeclaration,
    load_declaration,
)
from lifecycle_pipeline.errors import ExitCode
from lifecycle_pipeline.resources.registry import DataRegistry, RegistryError
from tests.conftest import Registry
from tests.reliability.cases import COMPONENT, DECLARATION, case, declaration

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT_ROOT / "models" / "breast_cancer"
GIT_IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.org"]

# Today's declaration with an estimator that cannot be validated: the misspelled parameter
# is only found by constructing the estimator.
MISSPELLED_PARAM = ("params: {n_estimators: 10}", "params: {n_estimatorz: 10}")
GATE_THE_TASK_LACKS = case("declaration", "gate on a metric the task lacks")
MODULE_MISSING = case("declaration", "estimator module missing")


def _declared(folder: Path, *edits: tuple[str, str]) -> Path:
    """The reliability suite's small valid declaration with ``edits``, as a model folder."""
    text = DECLARATION
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "defs.yaml"
    path.write_text(COMPONENT + textwrap.indent(text, "  "), encoding="utf-8")
    return path


def _fresh(code: str, *args: str) -> dict[str, object]:
    """What ``code`` prints as its last line (JSON), run by a new interpreter of this
    environment: modules imported by earlier tests cannot hide an import there."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_LOAD = """
import json, sys
from lifecycle_pipeline.declaration import load_declaration
checks = sys.argv[2] == "on"
loaded = load_declaration(sys.argv[1], estimator_checks=checks)
print(json.dumps({"name": loaded.name, "checked": loaded.estimator_checked,
                  "sklearn": "sklearn" in sys.modules}))
"""


def test_a_structural_load_of_the_sample_does_not_import_scikit_learn() -> None:
    structural = _fresh(_LOAD, str(SAMPLE), "off")
    assert structural == {"name": "breast_cancer", "checked": False, "sklearn": False}
    full = _fresh(_LOAD, str(SAMPLE), "on")
    assert full == {"name": "breast_cancer", "checked": True, "sklearn": True}


def test_the_estimator_is_validated_by_default_and_only_then(tmp_path: Path) -> None:
    for name, edits in (
        ("misspelled", [MISSPELLED_PARAM]),
        ("missing", list(MODULE_MISSING.value)),
    ):
        path = _declared(tmp_path / name, *edits)
        with pytest.raises(DeclarationError, match=r"defs\.yaml:2\d: estimator\.") as refused:
            load_declaration(path)
        if name == "misspelled":
            assert "['n_estimatorz'] are not parameters of" in str(refused.value)
        structural = load_declaration(path, estimator_checks=False)
        assert structural.name == "toy" and not structural.estimator_checked
        # Using it for anything that builds the estimator validates it first, fully.
        with pytest.raises(DeclarationError) as again:
            structural.estimator_validated()
        assert str(again.value) == str(refused.value)


def test_a_structural_error_is_refused_with_the_same_message_either_way(tmp_path: Path) -> None:
    path = tmp_path / "gate" / "defs.yaml"
    path.parent.mkdir()
    path.write_text(declaration(GATE_THE_TASK_LACKS), encoding="utf-8")
    with pytest.raises(DeclarationError) as full:
        load_declaration(path)
    with pytest.raises(DeclarationError) as structural:
        load_declaration(path, estimator_checks=False)
    assert str(structural.value) == str(full.value)
    assert GATE_THE_TASK_LACKS.shown_in(str(structural.value)), str(structural.value)


def test_a_structural_load_is_never_a_cached_verdict(tmp_path: Path) -> None:
    """`lifecycle status` trusts cached verdicts: one that skipped the estimator checks must
    not become one."""
    from lifecycle_pipeline.declaration import _Verdicts

    path = _declared(tmp_path / "models" / "toy", MISSPELLED_PARAM)
    verdicts = _Verdicts(tmp_path / "models", tmp_path / "verdicts.json")
    verdicts.record("toy", load_declaration(path, estimator_checks=False))
    assert not verdicts.changed and not verdicts.valid("toy")


def test_estimator_validated_refuses_a_file_changed_since_it_was_loaded(tmp_path: Path) -> None:
    path = _declared(tmp_path / "toy")
    structural = load_declaration(path, estimator_checks=False)
    path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(DeclarationError, match="changed while this command ran"):
        structural.estimator_validated()
    assert isinstance(load_declaration(path).estimator_validated(), LoadedDeclaration)


def _reproduce(tmp_path: Path, declaration_file: Path) -> subprocess.CompletedProcess[str]:
    """`lifecycle --model FILE reproduce data-v1` against an empty instance."""
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "LIFECYCLE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    env.pop("LIFECYCLE_MODEL", None)
    return subprocess.run(
        [sys.executable, "-m", "lifecycle_pipeline.cli", "--model", str(declaration_file),
         "reproduce", "data-v1"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_reproduce_refuses_a_structurally_broken_declaration_with_its_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gate" / "defs.yaml"
    path.parent.mkdir()
    path.write_text(declaration(GATE_THE_TASK_LACKS), encoding="utf-8")
    with pytest.raises(DeclarationError) as loading:
        load_declaration(path)
    done = _reproduce(tmp_path, path)
    assert done.returncode == ExitCode.REFUSED, done.stdout + done.stderr
    assert str(loading.value) in done.stderr
    assert "Traceback" not in done.stderr


def test_reproduce_reads_past_an_estimator_that_does_not_validate_today(tmp_path: Path) -> None:
    """An on-call engineer can reproduce an old version whatever today's estimator says: the
    command gets as far as the records (none here), not refused by the declaration."""
    path = _declared(tmp_path / "toy", MISSPELLED_PARAM)
    done = _reproduce(tmp_path, path)
    assert done.returncode == ExitCode.REFUSED, done.stdout + done.stderr
    assert "'data-v1' has no toy trained_model in this instance" in done.stderr
    assert "n_estimatorz" not in done.stderr


class _ThroughDvc(DataRegistry):
    """The registry as it resolved revisions before: always through DVC."""

    def _local_commit_of(self, rev: str) -> tuple[bool, str | None]:
        return False, None


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _answers(url: Path, rev: str) -> tuple[tuple[bool, str | None], str | None, str | None]:
    """What git alone says, then what commit_of and the DVC path say."""
    registry, dvc = DataRegistry(url=str(url)), _ThroughDvc(url=str(url))
    return registry._local_commit_of(rev), registry.commit_of(rev), dvc.commit_of(rev)


def test_commit_of_answers_with_git_what_dvc_answers(registry_copy: Registry) -> None:
    repo = registry_copy.repo
    v1, v2 = (
        _git(repo, "rev-parse", "data-v1^{commit}"),
        _git(repo, "rev-parse", "data-v2^{commit}"),
    )
    assert v1 != v2
    lost = "0123456789abcdef" * 2 + "01234567"
    for rev, expected in (
        ("data-v1", v1),  # what reproduce passes: the version's tag...
        (v1, v1),  # ...and the recorded commit id
        (v2[:10], v2),
        ("data-v404", None),  # a deleted tag
        (lost, None),  # a commit lost to a rewritten history
    ):
        by_git, answer, by_dvc = _answers(repo, rev)
        assert by_git == (True, expected), rev
        assert answer == by_dvc == expected, rev


def test_commit_of_finds_a_branch_that_only_a_remote_has_as_dvc_does(
    registry_copy: Registry, tmp_path: Path
) -> None:
    _git(registry_copy.repo, "branch", "side", "data-v1")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "--quiet", str(registry_copy.repo), str(clone))
    side = _git(registry_copy.repo, "rev-parse", "side")
    by_git, answer, by_dvc = _answers(clone, "side")
    assert by_git == (True, side)
    assert answer == by_dvc == side


def test_commit_of_a_folder_that_is_no_registry_fails_as_before(tmp_path: Path) -> None:
    """What git cannot answer is DVC's to answer: the same RegistryError, word for word."""
    plain = tmp_path / "plain"
    plain.mkdir()
    registry, dvc = DataRegistry(url=str(plain)), _ThroughDvc(url=str(plain))
    assert registry._local_commit_of("data-v1") == (False, None)
    with pytest.raises(RegistryError) as now:
        registry.commit_of("data-v1")
    with pytest.raises(RegistryError) as before:
        dvc.commit_of("data-v1")
    assert str(now.value) == str(before.value)


def test_commit_of_a_local_registry_does_not_import_dvc(demo_registry: Registry) -> None:
    code = """
import json, sys
from lifecycle_pipeline.resources.registry import DataRegistry
commit = DataRegistry(url=sys.argv[1]).commit_of("data-v1")
print(json.dumps({"commit": commit, "dvc": "dvc" in sys.modules}))
"""
    found = _fresh(code, str(demo_registry.repo))
    assert found == {
        "commit": _git(demo_registry.repo, "rev-parse", "data-v1^{commit}"),
        "dvc": False,
    }
