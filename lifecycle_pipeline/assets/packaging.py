"""Lifecycle stage 6: the signed, self-contained deployment package of one declared model.

The asset and its checks are built per declaration: the package's schemas, outputs and
wording come from it, and its sha256 is part of the asset's code version.
"""

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import dagster as dg
import numpy as np
import pandas as pd

from lifecycle_pipeline.assets.common import (
    IO_MANAGER_KEY,
    OWNERS,
    code_version,
    setting,
    upstream_metadata,
)
from lifecycle_pipeline.assets.features import ROW_ID
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.lineage.environment import commit_gap
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.records import EvaluationReport, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.package import build as build_module
from lifecycle_pipeline.package import environment as environment_module
from lifecycle_pipeline.package import readme as readme_module
from lifecycle_pipeline.package import runtime as runtime_module
from lifecycle_pipeline.package import verify as verify_module
from lifecycle_pipeline.package.build import (
    ENTRY_USAGE,
    PACKAGE_KIND,
    PackageBuildError,
    PackageInputs,
    build_files,
)
from lifecycle_pipeline.package.runtime import FLAG_COLUMN
from lifecycle_pipeline.package.verify import verify_stored_package
from lifecycle_pipeline.resources.artifact_store import (
    ARCHIVE_KEY,
    ArtifactStore,
    recorded_materialization,
)
from lifecycle_pipeline.resources.codecs import trusted_types
from lifecycle_pipeline.resources.signing import PackageSigner, public_key_id, trusted_keys
from lifecycle_pipeline.settings import Settings

# The package's own predict.py runs in a process that is not this one and in which importing
# lifecycle_pipeline is impossible, so parity proves the package needs nothing of ours. That
# process is forked, one per check, from a zygote: an isolated interpreter (-I: no user site,
# no environment overrides, no current directory on sys.path) that imported only the libraries
# every predict.py imports. Importing them is most of a fresh interpreter's ~2 s start
# (skops.io loads all of scikit-learn), and every lifecycle run in a long-lived process (the
# tests, `lifecycle demo`, a code location executing in process) paid it again for each package.
# A forked child starts from that import state and nothing else: whatever a check's predict.py
# imports or changes dies with the child, and a library missing here still fails there, by name.
# The held-out rows lie inside the declared domain (the contract checked them), so under the
# 'flag' policy every one of them is scored, whatever the declared policy.
PARITY_ZYGOTE = """
import json, os, runpy, sys, traceback
sys.modules["lifecycle_pipeline"] = None
for name in ("numpy", "pandas", "pyarrow.parquet", "skops.io", "threadpoolctl"):
    try:
        __import__(name)
    except ImportError:
        pass
for line in sys.stdin:
    package, source, target, cwd, errors = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(cwd)
            fd = os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_RDWR), 0)
            os.dup2(2, 1)
            sys.argv = [package + "/predict.py", source, target, "--out-of-range", "flag"]
            runpy.run_path(package + "/predict.py", run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\\n")
    sys.stdout.flush()
"""


# Variables that name this project's, Dagster's, DVC's, git's or the test runner's state: they
# change between runs (a test's folders, a run's instance) and predict.py reads none of them, so
# a change in them does not need a new zygote. Any other change does (e.g. thread counts).
_NOT_FOR_PREDICT = ("LIFECYCLE_", "DAGSTER_", "DVC_", "GIT_", "PYTEST_", "AWS_")


def _environment_key() -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in os.environ.items() if not k.startswith(_NOT_FOR_PREDICT))


class _Zygote:
    """The parity zygote of this process, reused by every check while the environment
    predict.py could read stays the same; one at a time (a replaced one exits when its stdin
    is closed, and so does the last one when this process exits)."""

    _current: ClassVar["_Zygote | None"] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.environment = _environment_key()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", PARITY_ZYGOTE],
            cwd=tempfile.gettempdir(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @classmethod
    def started(cls) -> "_Zygote":
        """The zygote for the current environment, started if there is none, it died, or the
        environment changed (the replaced one is told to exit and reaped)."""
        with cls._lock:
            zygote = cls._current
            if zygote is not None and (
                zygote.process.poll() is not None or zygote.environment != _environment_key()
            ):
                zygote.stop()
                zygote = None
            if zygote is None:
                zygote = cls._current = cls()
            return zygote

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the zygote's loop ends at end of input
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def run(self, request: list[str], timeout: float) -> int:
        """The exit status of predict.py run in a child forked for ``request``."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self._lock:
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
            except BrokenPipeError as exc:
                raise RuntimeError(self._died()) from exc
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            line = self.process.stdout.readline() if ready else ""
        if not ready:
            self.process.kill()
            raise TimeoutError(f"the parity check did not finish within {timeout:.0f} s")
        if not line:
            raise RuntimeError(self._died())
        return int(json.loads(line))

    def _died(self) -> str:
        return (
            f"the parity interpreter (pid {self.process.pid}) exited with status "
            f"{self.process.wait()} before answering; see the run's log above"
        )


class ParityInterpreter:
    """The parity check's separate process: its libraries are imported (once, by the zygote)
    while the package is built and signed; ``score`` forks it for the package."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.zygote = _Zygote.started()

    def score(self, package: Path, source: Path, target: Path) -> tuple[int, str]:
        """Run the package's predict.py on ``source``; its exit status and stderr."""
        errors = self.scratch / "parity_stderr.txt"
        request = [str(package), str(source), str(target), str(self.scratch), str(errors)]
        returncode = self.zygote.run(request, timeout=600)
        stderr = errors.read_text(encoding="utf-8", errors="replace") if errors.exists() else ""
        errors.unlink(missing_ok=True)
        return returncode, stderr

    def __enter__(self) -> "ParityInterpreter":
        return self

    def __exit__(self, *_: object) -> None:
        """Nothing to stop: the zygote waits for the next package, a child never outlives its
        check (``score`` waits for it)."""


def parity(
    package: Path,
    features: FeatureSet,
    evaluation: EvaluationReport,
    scratch: Path,
    interpreter: ParityInterpreter | None = None,
) -> dg.AssetCheckResult:
    """Score the held-out split with the package in a separate process; compare bit for bit.

    Every column evaluation recorded for the task (all but the row id) must be identical,
    floats to the last bit, row for row. ``interpreter``: one taken before the package was
    built; without it, one is taken now (both fork from this process's zygote).
    """
    source, target = scratch / "parity_input.parquet", scratch / "parity_output.parquet"
    features.test[list(features.feature_columns)].to_parquet(source, index=False)
    returncode, stderr = (interpreter or ParityInterpreter(scratch)).score(package, source, target)
    if returncode != 0:
        return dg.AssetCheckResult(
            check_name="prediction_parity",
            passed=False,
            description=f"The package could not score the held-out split: {stderr.strip()[-1500:]}",
        )
    produced = pd.read_parquet(target)
    expected = evaluation.predictions.drop(columns=[ROW_ID], errors="ignore")
    columns = list(expected.columns)
    missing = [c for c in columns if c not in produced.columns]
    if missing or len(produced) != len(expected):
        return dg.AssetCheckResult(
            check_name="prediction_parity",
            passed=False,
            metadata={"rows": len(produced), "expected_rows": len(expected)},
            description=f"The package produced {len(produced)} row(s) with columns "
            f"{list(produced.columns)}; evaluation has {len(expected)} with {columns}.",
        )
    differs = np.zeros(len(expected), dtype=bool)
    for name in columns:
        ours, theirs = produced[name].to_numpy(), expected[name].to_numpy()
        if ours.dtype.kind == "f" and theirs.dtype.kind == "f":
            # Bit patterns, not ==: a one-ulp difference is a parity failure.
            differs |= np.ascontiguousarray(ours, "<f8").view("<u8") != (
                np.ascontiguousarray(theirs, "<f8").view("<u8")
            )
        else:
            differs |= np.asarray(
                [a != b for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)], dtype=bool
            )
    differing = int(differs.sum())
    flagged = int((produced[FLAG_COLUMN] > 0).sum()) if FLAG_COLUMN in produced.columns else 0
    return dg.AssetCheckResult(
        check_name="prediction_parity",
        passed=differing == 0,
        metadata={
            "rows": len(produced),
            "differing_rows": differing,
            "columns": columns,
            "flagged_rows": flagged,
        },
        description=(
            f"Package in a separate process reproduced all {len(produced)} evaluation "
            f"predictions ({', '.join(columns)}) bit for bit; {flagged} row(s) flagged outside "
            "the training range."
            if differing == 0
            else f"{differing} of {len(produced)} rows differ from evaluation's {columns} "
            "(dev/prod parity broken)."
        ),
    )


def check_packageable(
    partition: str, trained_model: TrainedModel, evaluation: EvaluationReport
) -> None:
    """Only the model evaluation scored, only one whose code a commit holds, and only one that
    passed every gate, is packaged."""
    if evaluation.model_fingerprint != trained_model.fingerprint.combined:
        raise PackageBuildError(
            f"evaluation scored model {evaluation.model_fingerprint[:16]} but trained_model is "
            f"{trained_model.fingerprint.combined[:16]}; re-run evaluation for this model."
        )
    gap = commit_gap(trained_model.lineage.get("code", {}))
    if gap:
        raise PackageBuildError(
            f"data version {partition!r}: {gap}; a model whose code no commit holds is never "
            "packaged. Let git read the checkout (for a checkout owned by another user: `git "
            "config --global --add safe.directory PATH`), or build an image with "
            "build-info.json (`lifecycle build-info`), then retrain."
        )
    failed = [gate.describe() for gate in evaluation.gates if not gate.passed]
    if failed:
        raise PackageBuildError(
            f"data version {partition!r}: the model failed its evaluation gates "
            f"({'; '.join(failed)}); a failing model is never packaged. Retrain or revise the "
            "gates in review."
        )


def build_deployment_package(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The deployment_package asset of one declared model (with its parity check)."""

    @dg.asset(
        key=model.key("deployment_package"),
        ins=model.inputs("trained_model", "evaluation", "features", "model_card"),
        partitions_def=model.data_versions,
        group_name=model.name,
        kinds={"sklearn", "skops"},
        owners=OWNERS,
        tags={"lifecycle/stage": "6-deployment"},
        io_manager_key=IO_MANAGER_KEY,
        code_version=code_version(
            sys.modules[__name__],
            build_module,
            environment_module,
            readme_module,
            runtime_module,
            verify_module,
            declaration=model,
        ),
        # No automation condition on purpose: eager would package a model whose gates failed
        # (the evaluation materialization is recorded before its blocking checks run), and
        # Dagster 1.13's check conditions (all_deps_blocking_checks_passed) read one status per
        # check across all partitions, so one failing version blocks every other. The lifecycle
        # job packages after its blocking checks pass, and the asset refuses a failing model.
        check_specs=[
            dg.AssetCheckSpec(
                "prediction_parity",
                asset=model.key("deployment_package"),
                blocking=True,
                description="The package, alone in a separate process, reproduces evaluation's "
                "predictions bit for bit.",
            ),
        ],
    )
    def deployment_package(
        context: dg.AssetExecutionContext,
        signer: PackageSigner,
        trained_model: TrainedModel,
        evaluation: EvaluationReport,
        features: FeatureSet,
        model_card: FileTree,
    ) -> Iterator[dg.Output[FileTree] | dg.AssetCheckResult]:
        """Signed, self-contained handoff: model, schemas, pinned requirements, lock, docs,
        golden I/O, entry point, README."""
        check_packageable(context.partition_key, trained_model, evaluation)
        lock_path = Settings.from_env().project_root / "uv.lock"
        if not lock_path.is_file():
            raise PackageBuildError(
                f"{lock_path} not found: a package must carry its environment lock."
            )
        _, public = signer.signing_pair()  # refused for a key the keyring revoked
        inputs = PackageInputs(
            partition=context.partition_key,
            declaration=model,
            model=trained_model,
            features=features,
            evaluation=evaluation,
            documentation=model_card,
            lock=lock_path.read_bytes(),
            public_key_id=public_key_id(public),
        )
        with (
            tempfile.TemporaryDirectory(prefix="lifecycle-package-") as scratch,
            ParityInterpreter(Path(scratch)) as interpreter,
        ):
            folder = Path(scratch) / "package"
            build_module.write_folder(build_files(inputs), folder)
            signer.sign(folder)  # verifies the fresh signature; package_verifies checks the store
            parity_result = parity(folder, features, evaluation, Path(scratch), interpreter)
            files = build_module.read_folder(folder)
        yield dg.Output(
            FileTree(kind=PACKAGE_KIND, files=files, entry="manifest.json"),
            metadata={
                "files": dg.MetadataValue.json(
                    {n: sha256_bytes(d) for n, d in sorted(files.items())}
                ),
                "signature/public_key_id": dg.MetadataValue.text(inputs.public_key_id),
                "model/fingerprint": dg.MetadataValue.text(trained_model.fingerprint.combined),
                "model/trusted_types": dg.MetadataValue.json(trusted_types(trained_model.lineage)),
                "declaration/name": dg.MetadataValue.text(model.name),
                "declaration/sha256": dg.MetadataValue.text(model.sha256),
                "task": dg.MetadataValue.text(model.model.contract.task),
                "out_of_range": dg.MetadataValue.text(model.model.out_of_range),
                "golden/prediction_digest": dg.MetadataValue.text(
                    trained_model.fingerprint.predictions
                ),
                "golden/rows": setting(len(trained_model.golden_inputs)),
                "env/lock_sha256": dg.MetadataValue.text(sha256_bytes(inputs.lock)),
                "entry_point": dg.MetadataValue.text(ENTRY_USAGE),
                "input_schema/columns": setting(len(features.feature_columns)),
                **upstream_metadata(
                    trained_model.source, evaluation.source, features.source, model_card.source
                ),
            },
        )
        yield parity_result

    return deployment_package


def build_package_verifies(model: LoadedDeclaration) -> dg.AssetChecksDefinition:
    """The package_verifies check of one declared model's deployment_package."""

    def package_verifies(
        context: dg.AssetCheckExecutionContext, artifact_store: dg.ResourceParam[ArtifactStore]
    ) -> dg.AssetCheckResult:
        """Independent of the signing step: the stored bytes, and the key verifiers trust.

        Signing already verified the fresh folder with the signer's own key pair; that cannot
        catch a signer configured with the wrong key, or bytes that changed on their way into
        the store. This re-reads what the run recorded and verifies it with
        ``trusted_keys()``, the keys `lifecycle verify` and promotion use (`lifecycle
        verify VERSION` repeats it later).
        """
        record = recorded_materialization(
            context.instance,
            model.key("deployment_package"),
            context.partition_key,
            context.run.run_id,
        )
        if record is None:  # this run's package, else (a re-execution of the check) the latest
            raise PackageBuildError(
                f"deployment_package@{context.partition_key} has no materialization to verify."
            )
        keys = trusted_keys()
        report = verify_stored_package(artifact_store, record, keys)
        return dg.AssetCheckResult(
            passed=report.ok,
            description=report.render(),
            metadata={
                "problems": len(report.problems),
                "run_id": record.run_id,
                "archive": str(record.asset_materialization.metadata[ARCHIVE_KEY].value),
                "trusted_public_key_id": ", ".join(sorted(keys.trusted)),
            },
        )

    # Checks on partitions are a Dagster preview, used on purpose: quiet for every caller.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.asset_check(
            asset=model.key("deployment_package"),
            name="package_verifies",
            blocking=True,
            partitions_def=model.data_versions,
            description=f"The {model.name} package as the artifact store holds it (folder digests "
            "and the zip, re-read) verifies against the trusted public key: signature, every file "
            "digest, input schema, safe load with the reviewed types, golden outputs.",
        )(package_verifies)
