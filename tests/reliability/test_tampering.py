"""A package or store can hold hostile bytes; none of them is ever unpickled."""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

from lifecycle_pipeline.package import runtime
from tests.conftest import PROJECT_ROOT, Registry, scratch_pipeline
from tests.reliability.cases import case


class _Payload:
    """Unpickling this writes a file: proof that a loader executed pickle bytes."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))  # unpickling calls open(): the file appears


@pytest.fixture(scope="module", params=[("data-v1", None), ("diabetes-v1", "diabetes")])
def package(
    demo_registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Path:
    """A real package of each demo model (the second: regression with a categorical)."""
    from lifecycle_pipeline.declaration import load_declaration
    from lifecycle_pipeline.lineage.query import latest, metadata_values

    key, name = request.param
    model = load_declaration(PROJECT_ROOT / "models" / name) if name else None
    base = tmp_path_factory.mktemp("tampering")
    with scratch_pipeline(demo_registry, base, model=model) as pipeline:
        assert pipeline.run(key).success
        record = latest(pipeline.instance, pipeline.key("deployment_package"), key)
        return Path(metadata_values(record)["artifact/uri"])


def test_a_pickle_in_a_package_is_never_unpickled(package: Path, tmp_path: Path) -> None:
    """Even with the manifest re-hashed to match, a pickle is refused before it is read."""
    fault = case("tampering", "package: pickle as model")
    copy = tmp_path / "package"
    shutil.copytree(package, copy)
    marker = tmp_path / "unpickled.txt"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)  # the payload works: loading it does write the marker
    assert marker.exists()
    marker.unlink()
    (copy / "model.skops").write_bytes(payload)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.skops"] = hashlib.sha256(payload).hexdigest()
    with pytest.raises(runtime.PackageError) as error:
        runtime.load_model(copy, manifest)
    assert fault.shown_in(str(error.value)), error.value
    assert not marker.exists()


LOADERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("dill", "load"),
    ("dill", "loads"),
    ("joblib", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}


def test_no_code_path_can_load_a_pickle() -> None:
    """No module of the product calls a pickle loader or lets numpy or skops trust pickles."""
    fault = case("tampering", "pickle loaders in the code")
    found: list[str] = []
    for path in sorted((PROJECT_ROOT / "lifecycle_pipeline").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            libraries = {"pickle", "cloudpickle", "dill", "joblib"}
            if isinstance(node, ast.Import) and libraries & {a.name for a in node.names}:
                found.append(f"{path.name}:{node.lineno}: imports a pickle library")
            # From them, only what cannot load (joblib's parallel_config pins fitting threads).
            if (
                isinstance(node, ast.ImportFrom)
                and node.module in libraries
                and {a.name for a in node.names} - {"parallel_config"}
            ):
                found.append(f"{path.name}:{node.lineno}: imports a pickle library's loader")
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if (
                isinstance(function, ast.Attribute)
                and isinstance(function.value, ast.Name)
                and (function.value.id, function.attr) in LOADERS
            ):
                found.append(f"{path.name}:{node.lineno}: {function.value.id}.{function.attr}")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{path.name}:{node.lineno}: allow_pickle")
                if (
                    keyword.arg == "trusted"
                    and isinstance(keyword.value, ast.Constant)
                    and keyword.value.value is True
                ):
                    found.append(f"{path.name}:{node.lineno}: trusted=True")
    assert fault.shown_in(f"pickle loaders called in lifecycle_pipeline/: {found}"), found
