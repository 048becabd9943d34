"""Lifecycle stage 6: the signed, self-contained deployment package of one declared model.

The asset and its checks are built per declaration: the package's schemas, outputs and
wording come from it, and its sha256 is part of the asset's code version.
"""

import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

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

# Runs the package's own predict.py in a fresh, isolated interpreter (-I: no user site, no
# environment overrides, no current directory on sys.path) in which importing
# lifecycle_pipeline is impossible, so parity proves the package needs nothing of ours. The
# held-out rows lie inside the declared domain (the contract checked them), so under the 'flag'
# policy every one of them is scored, whatever the declared policy. The interpreter starts
# before the package exists and imports the libraries every predict.py imports (most of its
# ~2 s start: skops.io loads all of scikit-learn) while the package is built and signed; it
# then reads the package's path from stdin, and predict.py runs its own imports as it would
# alone (a library missing here fails there, by name).
PARITY_RUNNER = """
import json, runpy, sys
sys.modules["lifecycle_pipeline"] = None
for name in ("numpy", "pandas", "pyarrow.parquet", "skops.io", "threadpoolctl"):
    try:
        __import__(name)
    except ImportError:
        pass
package, source, target = json.loads(sys.stdin.readline())
sys.argv = [package + "/predict.py", source, target, "--out-of-range", "flag"]
runpy.run_path(package + "/predict.py", run_name="__main__")
"""


class ParityInterpreter:
    """The parity check's separate interpreter, started early (see ``PARITY_RUNNER``)."""

    def __init__(self, scratch: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", PARITY_RUNNER],
            cwd=scratch,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def score(self, package: Path, source: Path, target: Path) -> tuple[int, str]:
        """Run the package's predict.py on ``source``; its exit status and stderr."""
        request = json.dumps([str(package), str(source), str(target)]) + "\n"
        _, stderr = self.process.communicate(request, timeout=600)
        return self.process.returncode, stderr

    def __enter__(self) -> "ParityInterpreter":
        return self

    def __exit__(self, *_: object) -> None:
        """A package that failed to build leaves no interpreter waiting for it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def parity(
    package: Path,
    features: FeatureSet,
    evaluation: EvaluationReport,
    scratch: Path,
    interpreter: ParityInterpreter | None = None,
) -> dg.AssetCheckResult:
    """Score the held-out split with the package in a separate process; compare bit for bit.

    Every column evaluation recorded for the task (all but the row id) must be identical,
    floats to the last bit, row for row. ``interpreter``: one started before the package was
    built; without it, one is started now.
    """
    source, target = scratch / "parity_input.parquet", scratch / "parity_output.parquet"
    features.test[list(features.feature_columns)].to_parquet(source, index=False)
    if interpreter is None:
        with ParityInterpreter(scratch) as fresh:
            returncode, stderr = fresh.score(package, source, target)
    else:
        returncode, stderr = interpreter.score(package, source, target)
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
