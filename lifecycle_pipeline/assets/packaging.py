"""Lifecycle stage 6: the signed, self-contained deployment package."""

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version, upstream_metadata
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.records import EvaluationReport, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.package import build as build_module
from lifecycle_pipeline.package import runtime as runtime_module
from lifecycle_pipeline.package import verify as verify_module
from lifecycle_pipeline.package.build import (
    ENTRY_POINT,
    PACKAGE_KIND,
    PackageBuildError,
    PackageInputs,
    build_files,
)
from lifecycle_pipeline.package.verify import verify_stored_package
from lifecycle_pipeline.partitions import DATA_VERSIONS
from lifecycle_pipeline.resources.artifact_store import (
    ARCHIVE_KEY,
    ArtifactStore,
    recorded_materialization,
)
from lifecycle_pipeline.resources.signing import PackageSigner, public_key_id, trusted_public_key
from lifecycle_pipeline.settings import Settings

# Runs the package's own predict.py in a fresh, isolated interpreter (-I: no user site, no
# environment overrides, no current directory on sys.path) in which importing
# lifecycle_pipeline is impossible, so parity proves the package needs nothing of ours.
PARITY_RUNNER = """
import runpy, sys
sys.modules["lifecycle_pipeline"] = None
package, source, target = sys.argv[1:4]
sys.argv = [package + "/predict.py", source, target, "--out-of-range", "warn"]
runpy.run_path(package + "/predict.py", run_name="__main__")
"""


class PackagingConfig(dg.Config):
    """How permissive the package's input validation is."""

    range_tolerance: float = Field(
        default=0.25,
        ge=0.0,
        le=10.0,
        description="Allowed margin beyond the training range, as a fraction of that range.",
    )


def parity(
    package: Path, features: FeatureSet, evaluation: EvaluationReport, scratch: Path
) -> dg.AssetCheckResult:
    """Score the held-out split with the package in a separate process; compare bit for bit."""
    source, target = scratch / "parity_input.parquet", scratch / "parity_output.parquet"
    features.test[list(features.feature_columns)].to_parquet(source, index=False)
    result = subprocess.run(
        [sys.executable, "-I", "-c", PARITY_RUNNER, str(package), str(source), str(target)],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        return dg.AssetCheckResult(
            check_name="prediction_parity",
            passed=False,
            description="The package could not score the held-out split: "
            f"{result.stderr.strip()[-1500:]}",
        )
    produced = pd.read_parquet(target)
    expected = evaluation.predictions
    same_probability = np.ascontiguousarray(produced["probability"], "<f8").tobytes() == (
        np.ascontiguousarray(expected["probability"], "<f8").tobytes()
    )
    same_labels = produced["label"].to_numpy().tolist() == expected["label"].to_numpy().tolist()
    differing = int(
        (produced["probability"].to_numpy() != expected["probability"].to_numpy()).sum()
    )
    return dg.AssetCheckResult(
        check_name="prediction_parity",
        passed=same_probability and same_labels,
        metadata={"rows": len(produced), "differing_rows": differing},
        description=(
            f"Package in a separate process reproduced all {len(produced)} evaluation "
            "predictions bit for bit."
            if same_probability and same_labels
            else f"{differing} of {len(produced)} probabilities differ from evaluation's "
            "(dev/prod parity broken)."
        ),
    )


@dg.asset(
    partitions_def=DATA_VERSIONS,
    group_name="deployment",
    kinds={"sklearn", "skops"},
    owners=OWNERS,
    tags={"lifecycle/stage": "6-deployment"},
    io_manager_key=IO_MANAGER_KEY,
    code_version=code_version(sys.modules[__name__], build_module, runtime_module, verify_module),
    # No automation condition on purpose: eager would package a model whose gates failed (the
    # evaluation materialization is recorded before its blocking checks run), and Dagster 1.13's
    # check conditions (all_deps_blocking_checks_passed) read one status per check across all
    # partitions, so one failing version blocks every other. The lifecycle job packages after
    # its blocking checks pass, and the asset refuses a failing model itself.
    check_specs=[
        dg.AssetCheckSpec(
            "prediction_parity",
            asset="deployment_package",
            blocking=True,
            description="The package, alone in a separate process, reproduces evaluation's "
            "predictions bit for bit.",
        ),
    ],
)
def deployment_package(
    context: dg.AssetExecutionContext,
    config: PackagingConfig,
    signer: PackageSigner,
    trained_model: TrainedModel,
    evaluation: EvaluationReport,
    features: FeatureSet,
    model_card: FileTree,
) -> Iterator[dg.Output[FileTree] | dg.AssetCheckResult]:
    """Signed, self-contained handoff: model, schemas, lock, docs, golden I/O and entry point."""
    if evaluation.model_fingerprint != trained_model.fingerprint.combined:
        raise PackageBuildError(
            f"evaluation scored model {evaluation.model_fingerprint[:16]} but trained_model is "
            f"{trained_model.fingerprint.combined[:16]}; re-run evaluation for this model."
        )
    failed = [gate.describe() for gate in evaluation.gates if not gate.passed]
    if failed:
        raise PackageBuildError(
            f"data version {context.partition_key!r}: the model failed its evaluation gates "
            f"({'; '.join(failed)}); a failing model is never packaged. Retrain or revise the "
            "gates in review."
        )
    lock_path = Settings.from_env().project_root / "uv.lock"
    if not lock_path.is_file():
        raise PackageBuildError(
            f"{lock_path} not found: a package must carry its environment lock."
        )
    _, public = signer.key_pair()
    inputs = PackageInputs(
        partition=context.partition_key,
        model=trained_model,
        features=features,
        evaluation=evaluation,
        documentation=model_card,
        lock=lock_path.read_bytes(),
        range_tolerance=config.range_tolerance,
        public_key_id=public_key_id(public),
    )
    with tempfile.TemporaryDirectory(prefix="lifecycle-package-") as scratch:
        folder = Path(scratch) / "package"
        build_module.write_folder(build_files(inputs), folder)
        signer.sign(folder)  # verifies the fresh signature; package_verifies checks the store
        parity_result = parity(folder, features, evaluation, Path(scratch))
        files = build_module.read_folder(folder)
    yield dg.Output(
        FileTree(kind=PACKAGE_KIND, files=files, entry="manifest.json"),
        metadata={
            "files": dg.MetadataValue.json({n: sha256_bytes(d) for n, d in sorted(files.items())}),
            "signature/public_key_id": dg.MetadataValue.text(inputs.public_key_id),
            "model/fingerprint": dg.MetadataValue.text(trained_model.fingerprint.combined),
            "golden/prediction_digest": dg.MetadataValue.text(
                trained_model.fingerprint.predictions
            ),
            "golden/rows": dg.MetadataValue.int(len(trained_model.golden_inputs)),
            "env/lock_sha256": dg.MetadataValue.text(sha256_bytes(inputs.lock)),
            "entry_point": dg.MetadataValue.text(f"python {ENTRY_POINT} INPUT OUTPUT"),
            "input_schema/columns": dg.MetadataValue.int(len(features.feature_columns)),
            **upstream_metadata(
                trained_model.source, evaluation.source, features.source, model_card.source
            ),
        },
    )
    yield parity_result


@dg.asset_check(
    asset=deployment_package,
    name="package_verifies",
    blocking=True,
    partitions_def=DATA_VERSIONS,
    description="The package as the artifact store holds it (folder digests and the zip, "
    "re-read) verifies against the trusted public key: signature, every file digest, input "
    "schema, safe load and golden outputs.",
)
def package_verifies(
    context: dg.AssetCheckExecutionContext, artifact_store: dg.ResourceParam[ArtifactStore]
) -> dg.AssetCheckResult:
    """Independent of the signing step: the stored bytes, and the key verifiers trust.

    Signing already verified the fresh folder with the signer's own key pair; that cannot
    catch a signer configured with the wrong key, or bytes that changed on their way into the
    store. This re-reads what the run recorded and verifies it with ``trusted_public_key()``,
    the key `lifecycle verify` and promotion use (`lifecycle verify VERSION` repeats it later).
    """
    record = recorded_materialization(
        context.instance,
        dg.AssetKey("deployment_package"),
        context.partition_key,
        context.run.run_id,
    )
    if record is None:  # this run's package, else (a re-execution of the check) the latest
        raise PackageBuildError(
            f"deployment_package@{context.partition_key} has no materialization to verify."
        )
    public = trusted_public_key()
    report = verify_stored_package(artifact_store, record, public)
    return dg.AssetCheckResult(
        passed=report.ok,
        description=report.render(),
        metadata={
            "problems": len(report.problems),
            "run_id": record.run_id,
            "archive": str(record.asset_materialization.metadata[ARCHIVE_KEY].value),
            "trusted_public_key_id": public_key_id(public),
        },
    )
