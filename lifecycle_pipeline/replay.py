"""Which package a replay scores with: the one that served, one a run made, or one handed
over by path, always verified, and tied to a recorded materialization unless the auditor says
it is not (``--unrecorded``), so a replay re-examines a governed decision, not a look-alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.governance import package_record, recorded_package
from lifecycle_pipeline.governance_log import GovernanceError, history
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import history as materializations
from lifecycle_pipeline.lineage.query import metadata_values
from lifecycle_pipeline.partitions import validate_partition_key, validate_run_id
from lifecycle_pipeline.resources.artifact_store import SHA_KEY, URI_KEY, ArtifactStore

if TYPE_CHECKING:
    from lifecycle_pipeline.package.verify import VerificationReport
    from lifecycle_pipeline.resources.signing import TrustedKeys


@dataclass(frozen=True)
class ReplayPackage:
    """The package a replay scores with, its verification, and where it came from."""

    path: Path
    sha256: str
    run_id: str | None  # the run that made it; None for a package this instance never recorded
    origin: str
    report: VerificationReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "package_sha256": self.sha256,
            "package_run_id": self.run_id,
            "package_uri": str(self.path),
            "origin": self.origin,
        }


def replay_package(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    log: AuditLog,
    version: str,
    public_key: TrustedKeys,
    run: str | None = None,
    package: Path | None = None,
    unrecorded: bool = False,
) -> ReplayPackage:
    """The package to replay one of ``version``'s decisions with, and its verification.

    ``run``: the package that run made. ``package``: a folder or zip someone hands over; it
    must be one this instance recorded for the version (found by its digest), because only
    then is it tied to checked lineage, unless ``unrecorded`` says the auditor knows it is not.
    Neither: the package that served the version last, else its newest. The caller scores
    only when ``report.ok``.
    """
    from lifecycle_pipeline.package.verify import verify_stored_package

    validate_partition_key(version)
    if unrecorded and package is None:
        raise GovernanceError(
            "--unrecorded applies to a package given with --package; without it, the replayed "
            "package is always one this instance recorded."
        )
    if package is not None:
        return _given_package(instance, model, version, public_key, package, unrecorded)
    if run is not None:
        validate_run_id(run, instance)  # before any storage call: an unknown id makes a file
        record, origin = _made_in(instance, model, version, run), f"--run {run}"
    else:
        served = [c for c in history(log) if c.version == version]
        if served:
            change = served[-1]
            origin = f"{change.action} #{change.seq}"
            record = recorded_package(instance, model, version, change.package_sha256)
            if record is None:
                raise GovernanceError(
                    f"the {version} package that served ({origin}, sha256 "
                    f"{change.package_sha256}) is not recorded in this instance "
                    f"({instance.root_directory}); replay it by path: --package "
                    f"{change.package_uri} --unrecorded."
                )
        else:
            record = package_record(instance, model, version, None)
            origin = "newest package; never promoted"
    values = metadata_values(record)
    return ReplayPackage(
        path=Path(str(values[URI_KEY])),
        sha256=str(values[SHA_KEY]),
        run_id=record.run_id,
        origin=origin,
        report=verify_stored_package(ArtifactStore(), record, public_key),
    )


def _made_in(instance: dg.DagsterInstance, model: LoadedDeclaration, version: str, run: str) -> Any:
    key = model.key("deployment_package")
    for record in reversed(
        instance.get_records_for_run(run, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    ):
        made = record.asset_materialization
        if made is not None and made.asset_key == key and made.partition == version:
            return record
    runs = [r.run_id for r in materializations(instance, key, version)]
    raise GovernanceError(
        f"run {run} made no deployment_package of {version} ({model.name}); the runs that "
        f"packaged {version}: {', '.join(runs) or 'none'}."
    )


def _given_package(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    version: str,
    public_key: TrustedKeys,
    package: Path,
    unrecorded: bool,
) -> ReplayPackage:
    """A package handed over by path: verified first, then found among the recorded ones."""
    from lifecycle_pipeline.package.runtime import load_manifest
    from lifecycle_pipeline.package.verify import opened, verify_package
    from lifecycle_pipeline.resources.codecs import tree_digest

    origin = f"--package {package}"
    report = verify_package(package, public_key)
    if not report.ok:  # nothing in it is trusted, not even the manifest naming its version
        return ReplayPackage(package, "", None, origin, report)
    with opened(package) as folder:
        manifest = load_manifest(folder)
        sha256 = tree_digest({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    made_for = (manifest.get("declaration", {}).get("name"), manifest.get("partition"))
    if made_for != (model.name, version):
        raise GovernanceError(
            f"{package} is the package of {made_for[0]} {made_for[1]}, not of {model.name} "
            f"{version}; replay it as that version (`lifecycle --model {made_for[0]} replay "
            f"{made_for[1]} --package ...`)."
        )
    record = recorded_package(instance, model, version, sha256)
    if record is None and not unrecorded:
        raise GovernanceError(
            f"{package} verifies, but it is not recorded in this instance: no "
            f"deployment_package of {model.name} {version} has sha256 {sha256}, so nothing ties "
            "it to checked lineage or to a run (it may have been re-signed, or come from "
            "another instance). Replay a recorded package (--run RUN_ID, or without --package "
            "the one that served), or pass --unrecorded to replay it anyway; the audit record "
            "then says it was unrecorded."
        )
    if record is None:
        origin += " (unrecorded: verified, but no materialization in this instance made it)"
    return ReplayPackage(package, sha256, record.run_id if record else None, origin, report)
