"""Every identifier and path a user gives the CLI is checked before anything is opened.

Run ids and versions become file names and git revisions, so a crafted one must never reach
storage (an unknown run id once left an empty SQLite file behind, and `--run ../../../x` one
outside the instance); a missing input or an unwritable output is named before any work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.cli import main
from tests.conftest import SAMPLE_MODEL, dagster_home, tree_digest
from tests.reliability.cases import IDENTIFIERS, NEW_MODEL_NAMES, Fault


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with an instance whose storage exists, a regular file and a folder."""
    base = tmp_path_factory.mktemp("identifiers")
    home = dagster_home(base / "home" / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # storage created, as on a deployment in use
    (base / "file").write_text("a,b\n1,2\n")
    (base / "dir").mkdir()
    yield base


@pytest.mark.parametrize("fault", IDENTIFIERS, ids=[f.name for f in IDENTIFIERS])
def test_bad_identifier_is_refused_before_anything_is_created(
    world: Path,
    fault: Fault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LIFECYCLE_HOME", str(world / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(world / "home" / "dagster_home"))
    monkeypatch.setenv("LIFECYCLE_MODEL", SAMPLE_MODEL.name)
    places = {"{tmp}": str(world), "{file}": str(world / "file"), "{dir}": str(world / "dir")}
    argv = list(fault.value)
    for placeholder, value in places.items():
        argv = [a.replace(placeholder, value) for a in argv]
    before = tree_digest(world)  # the whole folder: a crafted id once escaped the instance
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fault.shown_in(err), err
    assert tree_digest(world) == before


@pytest.mark.parametrize("fault", NEW_MODEL_NAMES, ids=[f.name for f in NEW_MODEL_NAMES])
def test_new_model_name_is_refused_before_any_file_is_written(
    tmp_path: Path,
    fault: Fault,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`new-model NAME` writes ``models/NAME/``: a name holding ``..`` or an absolute path once
    wrote the declaration outside the models folder (only the last path part was checked)."""
    models = tmp_path / "project" / "models"
    models.mkdir(parents=True)
    data = tmp_path / "sample.csv"
    data.write_text("size,label\n1.5,0\n2.5,1\n3.5,0\n4.5,1\n")
    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(models))
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    before = tree_digest(tmp_path)
    name = fault.value.replace("{tmp}", str(tmp_path))
    assert main(["new-model", name, "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert fault.shown_in(err), err
    assert tree_digest(tmp_path) == before
