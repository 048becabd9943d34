"""The component loader shows a team's broken declaration, and fails loudly on our own defect.

A model whose ``defs.yaml`` does not load (a typo, YAML that does not parse, an estimator that
does not import) is the team's to fix: it is shown as ``BROKEN DECLARATION`` and the other
models load. A defect in this package (any other exception while building a model's
definitions) used to be shown the same way, so every model read "BROKEN DECLARATION" while the
code location loaded green with no working model; it now fails the loading, naming the model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

import lifecycle_pipeline.definitions
from lifecycle_pipeline.component import ModelBuildError, load_models
from lifecycle_pipeline.declaration import models_dir
from tests.reliability.cases import case


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A copy of the project's model folders (breast_cancer and diabetes)."""
    folder = tmp_path / "models"
    shutil.copytree(models_dir(), folder)
    return folder


def _asset_keys(definitions: dg.Definitions) -> set[dg.AssetKey]:
    """The keys a model's own definitions declare (resolving them needs the shared resources
    that ``build_definitions`` adds)."""
    keys: set[dg.AssetKey] = set()
    for asset in definitions.assets or []:
        if isinstance(asset, dg.AssetsDefinition):
            keys |= set(asset.keys)
        elif isinstance(asset, dg.AssetSpec | dg.SourceAsset):
            keys.add(asset.key)
    return keys


def test_a_defect_in_our_code_fails_loading_naming_the_model(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = case("declaration", "defect in the package's code")

    def defect(*args: object, **kwargs: object) -> None:
        raise TypeError("model_definitions() got an unexpected keyword argument 'cron'")

    monkeypatch.setattr(lifecycle_pipeline.definitions, "model_definitions", defect)
    with pytest.raises(ModelBuildError) as raised:
        load_models(models, models.parent)
    message = str(raised.value)
    assert fault.shown_in(message), message
    assert f"{models / 'breast_cancer'}" in message
    assert isinstance(raised.value.__cause__, TypeError)  # the traceback is the defect's own


def test_a_typo_shows_that_model_broken_and_the_others_load(models: Path) -> None:
    fault = case("declaration", "typo beside a valid model")
    declaration = models / "diabetes" / "defs.yaml"
    text = declaration.read_text()
    assert "\n  out_of_range: flag\n" in text
    declaration.write_text(text.replace("\n  out_of_range: flag\n", "\n  out_of_rnge: flag\n"))
    found = load_models(models, models.parent)
    assert [b.name for b in found.broken] == ["diabetes"]
    assert fault.shown_in(found.broken[0].error), found.broken[0].error
    keys = {key.to_user_string() for d in found.definitions for key in _asset_keys(d)}
    assert "breast_cancer/deployment_package" in keys
    assert not any(key.startswith("diabetes/") for key in keys)


def test_an_estimator_module_that_fails_to_import_is_the_declarations_problem(
    models: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A team's own estimator module is the team's code: an error raised while importing it
    (not only ImportError) is shown on that model, not raised as our defect."""
    (tmp_path / "team_estimators.py").write_text("raise RuntimeError('team module is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    declaration = models / "breast_cancer" / "defs.yaml"
    text = declaration.read_text()
    assert "class: sklearn.ensemble.RandomForestClassifier" in text
    declaration.write_text(
        text.replace("sklearn.ensemble.RandomForestClassifier", "team_estimators.Forest", 1)
    )
    found = load_models(models, models.parent)
    assert [b.name for b in found.broken] == ["breast_cancer"]
    assert "cannot import module 'team_estimators'" in found.broken[0].error
    assert "team module is broken" in found.broken[0].error


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("\nattributes:\n", "\natributes:\n", "atributes"),
        ("\nattributes:\n", "\nattributes: [\n", "while parsing"),
        ("type: lifecycle_pipeline.LifecycleModel", "type: lifecycle_pipeline.NoSuch", "NoSuch"),
    ],
    ids=["top-level typo", "YAML that does not parse", "type naming no component"],
)
def test_a_file_level_error_in_one_model_leaves_the_others_loaded(
    models: Path, old: str, new: str, named: str
) -> None:
    """Dagster parses every defs.yaml under a tree's root on first use: with one tree for the
    whole folder, one model's file-level error made every model broken."""
    declaration = models / "diabetes" / "defs.yaml"
    text = declaration.read_text()
    assert old in text
    declaration.write_text(text.replace(old, new, 1))
    found = load_models(models, models.parent)
    assert [b.name for b in found.broken] == ["diabetes"]
    assert named in found.broken[0].error
    keys = {key.to_user_string() for d in found.definitions for key in _asset_keys(d)}
    assert "breast_cancer/deployment_package" in keys
