"""Factories for real collaborators: sample data, git + DVC registries, Dagster instances."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData

from lifecycle_pipeline.declaration import LoadedDeclaration, load_declaration
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.lineage.audit import AuditLog, Record
from lifecycle_pipeline.registry_demo import Publication, build_demo_registry, publish
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.registry import DataRegistry
from lifecycle_pipeline.resources.signing import PackageSigner
from lifecycle_pipeline.sample_data import SampleParams, generate

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_MODEL = load_declaration(PROJECT_ROOT / "models" / "breast_cancer")
DATASET_PATH = SAMPLE_MODEL.model.data.path
# The sample model's asset keys, by stage: SAMPLE["trained_model"] is breast_cancer/trained_model.
SAMPLE = {
    stage: SAMPLE_MODEL.key(stage)
    for stage in ("data_snapshot", "features", "trained_model", "evaluation", "model_card",
                  "deployment_package", "drift_monitor", "production_model")
}  # fmt: skip
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# The suite runs as the demo does: development keys, allowed explicitly (outside a deployment
# that says so, signing and the audit log refuse to start without configured keys). Tests of
# that refusal remove it; subprocesses inherit it.
os.environ.setdefault("LIFECYCLE_DEV_KEYS", "1")


def _import_evidently_quietly() -> None:
    """Evidently 0.7 warns while importing (numpy.core, invalid escapes, litestar deprecations).

    Its modules load lazily on the first report, so one tiny report runs here with warnings
    ignored; warnings raised later, while our code runs, still fail the tests.
    """
    import pandas as pd
    from evidently import Report
    from evidently.metrics import ValueDrift

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    Report([ValueDrift(column="x", method="psi")]).run(frame, frame).get_html_str(as_iframe=False)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _import_evidently_quietly()


def _xdist_group(item: pytest.Item) -> str | None:
    """The item's ``xdist_group`` name, as pytest-xdist derives it (several are joined)."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group, and start the slow work first.

    pytest-xdist 3.8 groups by suffixing ``item._nodeid`` with ``@group``; pytest 9 reads a
    node's id from ``item._id``, so the suffix was lost and every grouped test was scheduled
    alone: a group's shared fixture (one lifecycle run, one webserver, one deployment) was
    built on both workers, and a test reusing its group's state found none (pytest-xdist
    issue 1386). The suffix is set here where pytest reads it, unless xdist already did: drop
    this part once the locked pytest-xdist sets it itself.

    xdist sends the groups first (the most tests first), then single tests in collection
    order; modules with slow tests are moved ahead of the rest, whole (their module fixtures
    stay shared), so the quick tests fill in at the end and the two workers finish together.
    Only the xdist workers of a ``--dist loadgroup`` run are touched.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        group = _xdist_group(item)
        if group is not None and not item.nodeid.endswith(f"@{group}"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep tests away from the developer's .lifecycle (dev signing key, artifacts, registry)."""
    home = tmp_path_factory.mktemp("lifecycle_home")
    previous = os.environ.get("LIFECYCLE_HOME")
    os.environ["LIFECYCLE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("LIFECYCLE_HOME", None)
    else:
        os.environ["LIFECYCLE_HOME"] = previous


def own_audit_keys(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit key and development signing keys of the test's own under ``folder``, and no
    checkpoint witness or trusted keyring inherited from the environment."""
    key = folder / "audit.key"
    key.write_text("0" * 64)
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(key))
    monkeypatch.setenv("LIFECYCLE_HOME", str(folder / "home"))
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "1")
    for name in (
        "LIFECYCLE_AUDIT_CHECKPOINTS",
        "LIFECYCLE_SIGNING_KEY",
        "LIFECYCLE_SIGNING_PUBLIC_KEY",
        "LIFECYCLE_TRUSTED_KEYS",
    ):
        monkeypatch.delenv(name, raising=False)


def fast_training(model: LoadedDeclaration = SAMPLE_MODEL) -> dict[str, Any]:
    """Small forests keep the suite fast; determinism does not depend on the tree count."""
    return {"ops": {model.op("trained_model"): {"config": {"params": {"n_estimators": 40}}}}}


FAST_TRAINING = fast_training()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate(out, SampleParams.from_yaml(PROJECT_ROOT / "params.yaml"))
    return out


@dataclass
class Registry:
    """A real git + DVC registry with a local remote, built in a temporary folder."""

    repo: Path
    remote: Path

    def publish(self, tag: str, content: bytes, target: str = DATASET_PATH) -> str:
        source = self.repo.parent / f"{tag}.upload"
        source.write_bytes(content)
        return publish(self.repo, Publication(tag=tag, source=source, target=target, message=tag))

    def resource(self) -> DataRegistry:
        """The sample model's view of this registry (its declared paths and tag patterns)."""
        return DataRegistry.for_model(SAMPLE_MODEL, DataRegistry(url=str(self.repo)))


@pytest.fixture(scope="session")
def demo_registry(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The demo registry (data-v1, data-v2 and two batches). Tests must not add tags to it."""
    base = tmp_path_factory.mktemp("registry")
    registry = Registry(repo=base / "registry", remote=base / "remote")
    build_demo_registry(sample_dir, registry.repo, registry.remote)
    return registry


def copy_registry(source: Registry, base: Path) -> Registry:
    """A private copy of a registry (repository and remote) under ``base``."""
    copy = Registry(repo=base / "registry", remote=base / "remote")
    shutil.copytree(source.repo, copy.repo, symlinks=True)
    shutil.copytree(source.remote, copy.remote)
    # config.local (git-ignored) points pushes from the copy at the copy's own remote.
    (copy.repo / ".dvc" / "config.local").write_text(
        f"['remote \"local\"']\n    url = {copy.remote}\n", encoding="utf-8"
    )
    return copy


PROJECT_FILES = ("pyproject.toml", "uv.lock", "README.md", "lifecycle_pipeline", "models",
                 ".gitignore")  # fmt: skip
GIT_IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.org"]


def committed_project_copy(repo: Path) -> Path:
    """The project's sources committed into a fresh git repository at ``repo``.

    Lineage records the code commit and refuses to reproduce uncommitted code; runs started
    from this copy (``PYTHONPATH=repo``) are traceable to a clean commit, whatever the state
    of the working tree the tests run from.
    """
    import subprocess

    repo.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the project as it is"]):
        subprocess.run(["git", *GIT_IDENTITY, "-C", str(repo), *args], check=True)
    return repo


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def registry_copy(demo_registry: Registry, tmp_path: Path) -> Registry:
    """A private copy of the demo registry that a test may add or move tags in."""
    return copy_registry(demo_registry, tmp_path)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real SQLite-backed Dagster instance in a temporary DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as test_instance:
        yield test_instance


@dataclass
class Pipeline:
    """One model's definitions on a real instance; names are the model's (``key``, ``op``)."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    artifacts: Path
    model: LoadedDeclaration = SAMPLE_MODEL

    def key(self, stage: str) -> dg.AssetKey:
        return self.model.key(stage)

    def op(self, stage: str) -> str:
        return self.model.op(stage)

    def add(self, *keys: str) -> None:
        name = self.model.scoped("data_versions")
        known = set(self.instance.get_dynamic_partitions(name))
        new = [k for k in keys if k not in known]
        if new:
            self.instance.add_dynamic_partitions(name, new)

    def run(
        self, key: str, run_config: dict[str, Any] | None = None, selection: Any = None
    ) -> dg.ExecuteInProcessResult:
        self.add(key)
        job = self.defs.resolve_job_def(self.model.scoped("lifecycle"))
        config = fast_training(self.model) if run_config is None else run_config
        if selection is not None:
            return dg.materialize(
                self.defs.assets,  # type: ignore[arg-type]
                selection=selection,
                partition_key=key,
                instance=self.instance,
                resources=self.defs.resources,
                run_config=config,
                raise_on_error=False,
            )
        return job.execute_in_process(
            partition_key=key, instance=self.instance, run_config=config, raise_on_error=False
        )

    def drift(self, batch: str, config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        """Materialize drift_monitor for one production batch."""
        batches = self.model.scoped("production_batches")
        if batch not in set(self.instance.get_dynamic_partitions(batches)):
            self.instance.add_dynamic_partitions(batches, [batch])
        run_config = {"ops": {self.op("drift_monitor"): {"config": config}}} if config else None
        return self.defs.resolve_job_def(self.model.scoped("drift")).execute_in_process(
            partition_key=batch, instance=self.instance, run_config=run_config, raise_on_error=False
        )

    def tick(self, name: str, cursor: str | None = None) -> SensorExecutionData:
        """Evaluate one tick of a sensor from these definitions, as the daemon would (``name``
        without the model's prefix: ``new_data_version_sensor``)."""
        sensor = self.defs.resolve_sensor_def(self.model.scoped(name))
        # Entered and closed here: a context left to the garbage collector resets Dagster's
        # context-local instance state at a random later point, in another test.
        with (
            dg.build_sensor_context(
                instance=self.instance,
                instance_ref=self.instance.get_ref(),  # as the daemon does: partition adds resolve
                cursor=cursor,
                resources=self.defs.resources,
                definitions=self.defs,
            ) as context,
            # The daemon evaluates ticks inside this context; partition keys are checked there.
            dg.partition_loading_context(dynamic_partitions_store=self.instance),
        ):
            return sensor.evaluate_tick(context)


def dagster_home(folder: Path) -> Path:
    """A real DAGSTER_HOME (telemetry off) that the `lifecycle` CLI and `dagster` can open."""
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return folder


@contextmanager
def scratch_pipeline(
    registry: Registry,
    base: Path,
    store: type[ArtifactStore] = ArtifactStore,
    signer: PackageSigner | None = None,
    model: LoadedDeclaration | None = None,
) -> Iterator[Pipeline]:
    """A pipeline with its own SQLite instance and artifact root under ``base``.

    For module-scoped fixtures and tests that need an instance outside the ``instance`` fixture;
    ``store`` and ``signer`` put other collaborators in place of the defaults.
    """
    (base / "home").mkdir()
    model = model or SAMPLE_MODEL
    with dg.instance_for_test(temp_dir=str(base / "home")) as instance:
        defs = build_definitions(
            model=model,
            registry=DataRegistry.for_model(model, DataRegistry(url=str(registry.repo))),
            artifact_store=store(root=str(base / "artifacts")),
            signer=signer,
        )
        yield Pipeline(defs=defs, instance=instance, artifacts=base / "artifacts", model=model)


@contextmanager
def home_pipeline(registry: DataRegistry, base: Path) -> Iterator[Pipeline]:
    """A pipeline whose instance lives in a real DAGSTER_HOME (``base/dagster_home``, with its
    artifacts beside it), so that the `lifecycle` CLI pointed there reads the same instance."""
    home = dagster_home(base / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(
            model=SAMPLE_MODEL,
            registry=registry,
            artifact_store=ArtifactStore(root=str(base / "artifacts")),
        )
        yield Pipeline(defs=defs, instance=instance, artifacts=base / "artifacts")


@pytest.fixture
def pipeline_factory(
    instance: dg.DagsterInstance, tmp_path: Path
) -> Callable[[Registry], Pipeline]:
    def make(registry: Registry, artifact_root: str | None = None) -> Pipeline:
        artifacts = tmp_path / "artifacts"
        defs = build_definitions(
            model=SAMPLE_MODEL,
            registry=registry.resource(),
            artifact_store=ArtifactStore(root=artifact_root or str(artifacts)),
        )
        return Pipeline(defs=defs, instance=instance, artifacts=artifacts)

    return make


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``: proves nothing was touched."""
    from lifecycle_pipeline.lineage.hashing import sha256_file

    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


# Run by the project copy's python path: one lifecycle run, optionally of some stages only.
_TRAIN = """
import json, sys, dagster as dg
from lifecycle_pipeline.definitions import defs
job, partitions, key, config, keys = sys.argv[1:]
with dg.DagsterInstance.get() as instance:
    instance.add_dynamic_partitions(partitions, [key])
    done = defs.resolve_job_def(job).execute_in_process(
        partition_key=key, instance=instance, run_config=json.loads(config), raise_on_error=False,
        asset_selection=[dg.AssetKey(path) for path in json.loads(keys)] or None,
    )
sys.exit(0 if done.success else 1)
"""


def train_committed(
    project: Path, env: Mapping[str, str], version: str, stages: Sequence[str] = ()
) -> None:
    """Train the sample's ``version`` (``stages`` of its lifecycle, default all) with the code
    of ``project``, a committed copy, in its own process: the record then names that clean
    commit, which `lifecycle reproduce` and the reproduce job can rebuild whatever state the
    working tree the tests run from is in. ``env`` is the deployment's environment."""
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN, SAMPLE_MODEL.scoped("lifecycle"),
         SAMPLE_MODEL.scoped("data_versions"), version, json.dumps(fast_training()),
         json.dumps([SAMPLE_MODEL.key(stage).path for stage in stages])],
        cwd=project, env={**env, "PYTHONPATH": str(project)}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]


def reproduction_records(state: Path) -> list[Record]:
    """The sample's `reproduction` audit records under LIFECYCLE_HOME ``state``, verified."""
    log = AuditLog(state / "audit" / f"{SAMPLE_MODEL.name}.jsonl", SAMPLE_MODEL.name)
    return [r for r in log.records() if r.kind == "reproduction"] if log.path.exists() else []


def lifecycle_cli(*args: str) -> int:
    """`lifecycle ARGS` in this process. `--model` is process-wide there (it sets
    LIFECYCLE_MODEL), so the choice is undone afterwards, as a new process would start."""
    from lifecycle_pipeline.cli import main

    before = os.environ.get("LIFECYCLE_MODEL")
    try:
        return main(list(args))
    finally:
        if before is None:
            os.environ.pop("LIFECYCLE_MODEL", None)
        else:
            os.environ["LIFECYCLE_MODEL"] = before


def restamped(data: bytes) -> bytes:
    """The same skops file with every entry dated 1980-01-01 (still a valid skops file)."""
    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            copy.compress_type = info.compress_type
            out.writestr(copy, source.read(info))
    return target.getvalue()
