"""A local registry's cached file is read without DVC, and gives what DVC gives.

Each test pins down the fast path (``DataRegistry._open_local``): a read it serves must equal
DVC's, byte for byte and field for field; a read it cannot serve must reach DVC and end in
DVC's answer, so no error message changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lifecycle_pipeline.lineage.records import ResolvedVersion
from lifecycle_pipeline.resources.registry import PINS_VARIABLE, DataRegistry, RegistryError
from tests.conftest import DATASET_PATH, GIT_IDENTITY, PROJECT_ROOT, Registry
from tests.reliability.cases import case


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *GIT_IDENTITY, "-C", str(repo), *args],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _cache_file(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def _refuse_dvc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read that reaches DVC fails the test: the read must be served by the fast path."""

    def refuse(self: DataRegistry, rev: str) -> Any:
        raise AssertionError(f"{rev!r} was read through DVC, not from the local cache")

    monkeypatch.setattr(DataRegistry, "_filesystem", refuse)


@pytest.fixture
def without_dvc(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_dvc(monkeypatch)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each read was served by the fast path: a read left to DVC must first have been
    offered to it, and a read of the same registry's cached data-v1 must be served by it."""
    answers: list[bool] = []
    original = DataRegistry._open_local

    def spy(self: DataRegistry, key: str, rev: str, path: str) -> Any:
        answer = original(self, key, rev, path)
        answers.append(answer is not None)
        return answer

    monkeypatch.setattr(DataRegistry, "_open_local", spy)
    return answers


def _read_through_dvc(registry: DataRegistry, key: str, path: str) -> tuple[ResolvedVersion, bytes]:
    resolved, handle = registry._open_through_dvc(key, registry._revision(key), path)
    try:
        return resolved, handle.read()
    finally:
        handle.close()


@pytest.mark.parametrize("key", ["data-v1", "data-v2"])
def test_the_local_read_gives_dvcs_version_and_bytes(
    demo_registry: Registry, sample_dir: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = demo_registry.resource()
    dvc, dvc_raw = _read_through_dvc(registry, key, DATASET_PATH)
    _refuse_dvc(monkeypatch)
    local, raw = registry.read(key)
    assert local == dvc
    assert raw == dvc_raw == (sample_dir / "versions" / key / "breast_cancer.csv").read_bytes()
    assert local.registry == str(demo_registry.repo)
    assert local.commit == _git(demo_registry.repo, "rev-parse", f"{key}^{{commit}}")


_FRESH_READ = """
import json, sys
from lifecycle_pipeline.resources.registry import DataRegistry
version, raw = DataRegistry(url=sys.argv[1], dataset_path=sys.argv[2]).read("data-v1")
dvc = sorted(m for m in sys.modules if m.split(".")[0] in ("dvc", "dvc_data", "dvc_objects"))
print(json.dumps({"md5": version.md5, "size": len(raw), "dvc": dvc}))
"""


def test_a_fresh_interpreter_reads_a_local_registry_without_importing_dvc(
    demo_registry: Registry,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_READ, str(demo_registry.repo), DATASET_PATH],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["dvc"] == []
    assert answer["md5"] == demo_registry.resource().resolve("data-v1").md5


def test_a_pinned_key_is_read_at_its_pinned_commit(
    registry_copy: Registry, monkeypatch: pytest.MonkeyPatch, without_dvc: None
) -> None:
    repo = registry_copy.repo
    recorded = _git(repo, "rev-parse", "data-v1^{commit}")
    _git(repo, "tag", "-f", "data-v1", "data-v2")  # the tag moved after a model was trained
    moved, moved_raw = registry_copy.resource().read("data-v1")
    assert moved.commit != recorded

    monkeypatch.setenv(PINS_VARIABLE, json.dumps({"data-v1": recorded}))
    pinned, raw = registry_copy.resource().read("data-v1")
    assert pinned.commit == recorded
    assert pinned.md5 == hashlib.md5(raw, usedforsecurity=False).hexdigest() != moved.md5
    assert raw == _cache_file(repo, pinned.md5).read_bytes() != moved_raw


def test_altered_cache_bytes_are_refused(registry_copy: Registry, without_dvc: None) -> None:
    registry = registry_copy.resource()
    with registry.open("data-v1") as (resolved, _):
        pass
    cached = _cache_file(registry_copy.repo, resolved.md5)
    original = cached.read_bytes()
    cached.chmod(0o644)  # DVC stores cache files read-only
    cached.write_bytes(original.replace(b"1", b"2", 1))  # same size, other content
    with registry.open("data-v1") as (again, stream), pytest.raises(RegistryError) as error:
        stream.verify()
    assert again == resolved
    assert str(error.value) == (
        f"Data version 'data-v1': {DATASET_PATH!r} read with md5 "
        f"{hashlib.md5(cached.read_bytes(), usedforsecurity=False).hexdigest()}, but DVC "
        f"records {resolved.md5}; the cache or remote is corrupted."
    )


def test_a_cache_miss_is_fetched_by_dvc_from_the_remote(
    registry_copy: Registry, served: list[bool]
) -> None:
    registry = registry_copy.resource()
    resolved, _ = registry.read("data-v1")
    _cache_file(registry_copy.repo, resolved.md5).unlink()
    version, raw = registry.read("data-v1")
    assert served == [True, False]
    assert version == resolved
    assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == resolved.md5
    remote = registry_copy.remote / "files" / "md5" / resolved.md5[:2] / resolved.md5[2:]
    assert raw == remote.read_bytes()


def test_a_cache_miss_with_no_remote_copy_gives_dvcs_error(
    registry_copy: Registry, served: list[bool]
) -> None:
    fault = case("registry reference", "missing remote object")
    resolved, _ = registry_copy.resource().read("data-v1")
    _cache_file(registry_copy.repo, resolved.md5).unlink()
    (registry_copy.remote / "files" / "md5" / resolved.md5[:2] / resolved.md5[2:]).unlink()
    with pytest.raises(RegistryError) as error:
        registry_copy.resource().read("data-v1")
    assert served == [True, False]
    assert fault.shown_in(str(error.value)), error.value
    assert f"(md5 {resolved.md5})" in str(error.value)


def test_a_tag_without_a_pointer_for_the_path_gives_todays_error(
    registry_copy: Registry, served: list[bool]
) -> None:
    repo = registry_copy.repo
    _git(repo, "tag", "data-v0", _git(repo, "rev-list", "--max-parents=0", "HEAD"))
    registry_copy.resource().read("data-v1")
    with pytest.raises(RegistryError) as error:
        registry_copy.resource().read("data-v0")
    assert served == [True, False]
    assert str(error.value).startswith(
        f"data.path is {DATASET_PATH!r}, but tag 'data-v0' of registry {str(repo)!r} has no "
        "such file; the tag holds "
    ), error.value


def test_a_file_git_tracks_and_dvc_does_not_gives_todays_error(
    demo_registry: Registry, served: list[bool]
) -> None:
    fault = case("registry reference", "file not tracked by DVC")
    demo_registry.resource().read("data-v1")
    with pytest.raises(RegistryError) as error:
        demo_registry.resource().read("data-v1", "data/.gitignore")
    assert served == [True, False]
    assert fault.shown_in(str(error.value)), error.value


_POINTERS = {
    "DVC 2 (no hash: md5)": "outs:\n- md5: {md5}\n  size: {size}\n  path: breast_cancer.csv\n",
    "a directory": "outs:\n- md5: {md5}.dir\n  size: {size}\n  hash: md5\n"
    "  path: breast_cancer.csv\n",
    "two outputs": "outs:\n- md5: {md5}\n  size: {size}\n  hash: md5\n  path: breast_cancer.csv\n"
    "- md5: {md5}\n  size: {size}\n  hash: md5\n  path: other.csv\n",
    "another file's name": "outs:\n- md5: {md5}\n  size: {size}\n  hash: md5\n  path: other.csv\n",
    "not cached": "outs:\n- md5: {md5}\n  size: {size}\n  hash: md5\n  path: breast_cancer.csv\n"
    "  cache: false\n",
    "a working directory": "wdir: ..\nouts:\n- md5: {md5}\n  size: {size}\n  hash: md5\n"
    "  path: breast_cancer.csv\n",
}


@pytest.mark.parametrize("pointer", sorted(_POINTERS))
def test_pointers_other_than_one_cached_dvc3_file_are_left_to_dvc(
    registry_copy: Registry, pointer: str
) -> None:
    repo, registry = registry_copy.repo, registry_copy.resource()
    resolved = registry.resolve("data-v1")
    assert registry._open_local("data-v1", "data-v1", DATASET_PATH) is not None
    text = _POINTERS[pointer].format(md5=resolved.md5, size=resolved.size)
    (repo / f"{DATASET_PATH}.dvc").write_text(text, encoding="utf-8")
    _git(repo, "commit", "-q", "-am", pointer)
    _git(repo, "tag", "data-v9")
    assert registry._open_local("data-v9", "data-v9", DATASET_PATH) is None


@pytest.mark.parametrize("config", ["config", "config.local"])
def test_a_cache_configured_elsewhere_is_left_to_dvc(
    registry_copy: Registry, tmp_path: Path, config: str
) -> None:
    registry = registry_copy.resource()
    assert registry._open_local("data-v1", "data-v1", DATASET_PATH) is not None
    with (registry_copy.repo / ".dvc" / config).open("a", encoding="utf-8") as settings:
        settings.write(f"[cache]\n    dir = {tmp_path / 'elsewhere'}\n")
    assert registry._open_local("data-v1", "data-v1", DATASET_PATH) is None
