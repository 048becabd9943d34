"""The data registry resolves keys to commit + md5 and serves verified bytes through DVC."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lifecycle_pipeline.resources.registry import DataRegistry, RegistryError
from tests.conftest import Registry
from tests.reliability.cases import case


def test_resolve_and_read_match_the_published_file(
    demo_registry: Registry, sample_dir: Path
) -> None:
    source = (sample_dir / "versions" / "data-v2" / "breast_cancer.csv").read_bytes()
    version, raw = demo_registry.resource().read("data-v2")
    assert raw == source
    assert version.md5 == hashlib.md5(source, usedforsecurity=False).hexdigest()
    assert len(version.commit) == 40
    assert version.size == len(source)


def test_versions_lists_data_tags_in_commit_order(demo_registry: Registry) -> None:
    assert demo_registry.resource().versions() == ["data-v1", "data-v2"]


def test_read_is_pinned_not_the_working_copy(registry_copy: Registry) -> None:
    """Editing the registry's working copy must not change what a tag serves."""
    registry = registry_copy.resource()
    before, raw_before = registry.read("data-v1")
    (registry_copy.repo / "data" / "breast_cancer.csv").write_text("edited,in,place\n")
    after, raw_after = registry.read("data-v1")
    assert (after.md5, raw_after) == (before.md5, raw_before)


def test_read_falls_back_to_the_dvc_remote(registry_copy: Registry) -> None:
    shutil.rmtree(registry_copy.repo / ".dvc" / "cache")
    version, raw = registry_copy.resource().read("data-v1")
    assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == version.md5


def test_missing_remote_object_names_the_version_and_md5(registry_copy: Registry) -> None:
    fault = case("registry reference", "missing remote object")
    version = registry_copy.resource().resolve("data-v1")
    shutil.rmtree(registry_copy.repo / ".dvc" / "cache")
    shutil.rmtree(registry_copy.remote)
    with pytest.raises(RegistryError) as error:
        registry_copy.resource().read("data-v1")
    assert fault.shown_in(str(error.value)), error.value
    assert f"(md5 {version.md5})" in str(error.value)


def test_file_not_tracked_by_dvc_is_refused(registry_copy: Registry) -> None:
    fault = case("registry reference", "file not tracked by DVC")
    registry = DataRegistry(url=str(registry_copy.repo), dataset_path="data/.gitignore")
    with pytest.raises(RegistryError) as error:
        registry.resolve("data-v1")
    assert fault.shown_in(str(error.value)), error.value


def test_unknown_registry_is_a_clear_error(tmp_path: Path) -> None:
    fault = case("registry reference", "unknown registry")
    nowhere = tmp_path / "nowhere"
    with pytest.raises(RegistryError) as error:
        DataRegistry(url=str(nowhere)).resolve("data-v1")
    assert fault.shown_in(str(error.value)), error.value
    assert repr(str(nowhere)) in str(error.value)
