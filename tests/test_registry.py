"""The data registry resolves keys to commit + md5 and serves verified bytes through DVC; the
demo registry holds every sample model's data, each at the paths its declaration names."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lifecycle_pipeline.declaration import LoadedDeclaration, load_declaration, models_dir
from lifecycle_pipeline.registry_demo import (
    Publication,
    RegistryBuildError,
    build_demo_registry,
    publications,
    publish,
)
from lifecycle_pipeline.resources.registry import DataRegistry, RegistryError
from tests.conftest import Registry
from tests.reliability.cases import case

SAMPLE_MODELS = ("breast_cancer", "diabetes")


def _model(name: str) -> LoadedDeclaration:
    return load_declaration(models_dir() / name)


def _registry(registry: Registry, model: str = "breast_cancer") -> DataRegistry:
    """The registry as ``model``'s declaration reads it (its path, tags and batch files)."""
    return DataRegistry.for_model(_model(model), DataRegistry(url=str(registry.repo)))


def _tag_commits(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "show-ref", "--tags"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    ("model", "key", "file"),
    [
        ("breast_cancer", "data-v2", "versions/data-v2/breast_cancer.csv"),
        ("diabetes", "diabetes-v2", "versions/diabetes-v2/diabetes.parquet"),
    ],
)
def test_resolve_and_read_match_the_published_file(
    demo_registry: Registry, sample_dir: Path, model: str, key: str, file: str
) -> None:
    source = (sample_dir / file).read_bytes()
    version, raw = _registry(demo_registry, model).read(key)
    assert raw == source
    assert version.md5 == hashlib.md5(source, usedforsecurity=False).hexdigest()
    assert len(version.commit) == 40
    assert version.size == len(source)


def test_each_model_lists_only_its_own_tags_in_commit_order(demo_registry: Registry) -> None:
    cancer, diabetes = _registry(demo_registry), _registry(demo_registry, "diabetes")
    assert cancer.versions() == ["data-v1", "data-v2"]
    assert cancer.batches() == ["batch-001", "batch-002"]
    assert diabetes.versions() == ["diabetes-v1", "diabetes-v2"]
    assert diabetes.batches() == ["diabetes-batch-001", "diabetes-batch-002"]


def test_a_diabetes_batch_is_served_as_parquet_from_its_declared_path(
    demo_registry: Registry, sample_dir: Path
) -> None:
    version, raw = _registry(demo_registry, "diabetes").read_batch("diabetes-batch-002")
    assert version.path == "batches/diabetes-batch-002.parquet"
    assert raw[:4] == raw[-4:] == b"PAR1"
    assert raw == (sample_dir / "batches" / "diabetes-batch-002.parquet").read_bytes()


def test_every_publication_lands_where_one_declaration_reads_it(sample_dir: Path) -> None:
    """The sample stage's publish table and the models' declarations name the same paths."""
    declared = {name: _model(name).model.data for name in SAMPLE_MODELS}
    items = publications(sample_dir)
    assert len(items) == 8
    for item in items:
        readers = [
            (name, data.path)
            for name, data in declared.items()
            if fnmatch.fnmatchcase(item.tag, data.versions)
        ] + [
            (name, data.batch_path.format(key=item.tag))
            for name, data in declared.items()
            if fnmatch.fnmatchcase(item.tag, data.batches)
        ]
        assert len(readers) == 1, f"{item.tag} matches {readers}: exactly one model must read it"
        assert item.target == readers[0][1], (item.tag, item.target, readers)


def test_the_breast_cancer_tags_are_published_first_so_their_commits_never_change(
    sample_dir: Path,
) -> None:
    """Commit dates follow the commit count: anything published before the original four tags
    would give them new commit ids, and every recorded lineage would point elsewhere."""
    tags = [item.tag for item in publications(sample_dir)]
    assert tags[:4] == ["data-v1", "data-v2", "batch-001", "batch-002"]
    assert tags[4:] == ["diabetes-v1", "diabetes-v2", "diabetes-batch-001", "diabetes-batch-002"]


def test_rebuilding_is_a_no_op_and_a_changed_file_never_moves_a_tag(
    registry_copy: Registry, sample_dir: Path, tmp_path: Path
) -> None:
    before = _tag_commits(registry_copy.repo)
    first = build_demo_registry(sample_dir, registry_copy.repo, registry_copy.remote)
    assert _tag_commits(registry_copy.repo) == before
    published = (sample_dir / "versions" / "diabetes-v1" / "diabetes.parquet").read_bytes()
    assert first["diabetes-v1"] == hashlib.md5(published, usedforsecurity=False).hexdigest()

    edited = tmp_path / "edited.parquet"
    edited.write_bytes(b"not the published content")
    item = Publication("diabetes-v1", edited, "data/diabetes.parquet", "rewrite")
    with pytest.raises(RegistryBuildError, match="refusing to move a published data version"):
        publish(registry_copy.repo, item)
    assert _tag_commits(registry_copy.repo) == before


def test_a_manifest_without_a_publish_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"versions": ["data-v1"]}))
    with pytest.raises(RegistryBuildError, match="no `publish` table"):
        publications(tmp_path)


def test_read_is_pinned_not_the_working_copy(registry_copy: Registry) -> None:
    """Editing the registry's working copy must not change what a tag serves."""
    registry = _registry(registry_copy)
    before, raw_before = registry.read("data-v1")
    (registry_copy.repo / "data" / "breast_cancer.csv").write_text("edited,in,place\n")
    after, raw_after = registry.read("data-v1")
    assert (after.md5, raw_after) == (before.md5, raw_before)


def test_read_falls_back_to_the_dvc_remote(registry_copy: Registry) -> None:
    shutil.rmtree(registry_copy.repo / ".dvc" / "cache")
    version, raw = _registry(registry_copy).read("data-v1")
    assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == version.md5


def test_missing_remote_object_names_the_version_and_md5(registry_copy: Registry) -> None:
    fault = case("registry reference", "missing remote object")
    version = _registry(registry_copy).resolve("data-v1")
    shutil.rmtree(registry_copy.repo / ".dvc" / "cache")
    shutil.rmtree(registry_copy.remote)
    with pytest.raises(RegistryError) as error:
        _registry(registry_copy).read("data-v1")
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
        DataRegistry(url=str(nowhere), dataset_path="data/breast_cancer.csv").resolve("data-v1")
    assert fault.shown_in(str(error.value)), error.value
    assert repr(str(nowhere)) in str(error.value)
