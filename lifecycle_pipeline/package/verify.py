"""Verify a deployment package: signature, every digest, schema, safe load, golden outputs.

Verification uses this library's own trusted code, not code from the package under test,
and reports every problem it finds with the file it concerns.
"""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lifecycle_pipeline.package import environment, runtime
from lifecycle_pipeline.resources.codecs import LEGACY_TRUSTED_TYPES
from lifecycle_pipeline.resources.signing import (
    SIGNATURE_FILE,
    SignatureError,
    TrustedKeys,
    verify_signed,
)

# Packages of this format predate recorded trusted types and per-task outputs.
LEGACY_FORMAT = "lifecycle-package/1"


@dataclass
class VerificationReport:
    package: str
    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [f"package {self.package}"]
        lines += [f"  ok    {p}" for p in self.passed]
        lines += [f"  FAIL  {p}" for p in self.problems]
        lines.append("verified" if self.ok else f"NOT VERIFIED: {len(self.problems)} problem(s)")
        return "\n".join(lines)


@contextmanager
def opened(package: Path) -> Iterator[Path]:
    """A package folder, or a package archive extracted to a temporary folder."""
    if package.is_dir():
        yield package
        return
    if not zipfile.is_zipfile(package):
        raise runtime.PackageError(f"{package}: neither a package folder nor a package archive.")
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(package) as archive:
        for member in archive.namelist():
            if "/" in member or member.startswith(".") or member in ("", ".."):
                raise runtime.PackageError(f"{package}: unexpected archive member {member!r}.")
        archive.extractall(scratch)
        yield Path(scratch)


def verify_package(package: Path, keys: TrustedKeys) -> VerificationReport:
    """A package folder or archive, its signature verified with the trusted key whose id its
    manifest records (``keys``: a keyring, or one public key trusted alone)."""
    with opened(package) as folder:
        return _verify_folder(folder, keys, str(package))


def verify_stored_package(store: Any, record: Any, keys: TrustedKeys) -> VerificationReport:
    """A recorded package as the artifact store holds it, verified against ``keys``.

    The folder's files are read back and checked against the digests the materialization
    recorded, the zip beside it must hold exactly those files, and the zip is then verified
    (signature, manifest, schema, safe load, golden outputs). A store problem is reported as
    a problem of the package, not raised, so a check or `lifecycle verify` can say it.
    """
    from lifecycle_pipeline.errors import LifecycleError

    entry = record.asset_materialization.metadata.get("artifact/archive")
    label = str(entry.value) if entry is not None else f"run {record.run_id}"
    try:
        archive = store.read_archive(record)
    except LifecycleError as exc:
        return VerificationReport(package=label, problems=[f"stored package: {exc}"])
    with tempfile.TemporaryDirectory(prefix="lifecycle-verify-") as scratch:
        stored = Path(scratch) / "package.zip"
        stored.write_bytes(archive)
        with opened(stored) as folder:
            report = _verify_folder(folder, keys, label)
            # Name files as they are in the stored zip, not in a folder that is gone afterwards.
            inside = f"{label}!"
            report.passed = [p.replace(f"{folder}/", inside) for p in report.passed]
            report.problems = [p.replace(f"{folder}/", inside) for p in report.problems]
    report.passed.insert(0, "folder files match the recorded digests; the zip holds exactly them")
    return report


def _verify_folder(folder: Path, keys: TrustedKeys, label: str) -> VerificationReport:
    report = VerificationReport(package=label)
    try:
        manifest = runtime.load_manifest(folder)
    except runtime.PackageError as exc:
        report.problems.append(str(exc))
        return report
    signing = manifest.get("signing")
    recorded = signing.get("public_key_id") if isinstance(signing, dict) else None
    try:  # the key the manifest names; a package from before key ids: the configured one
        used = verify_signed(folder, keys, None if recorded is None else str(recorded))
        report.passed.append(f"signature {SIGNATURE_FILE} verifies with {used.name}")
    except SignatureError as exc:
        report.problems.append(str(exc))
    listed = set(manifest["files"])
    present = {p.name for p in folder.iterdir() if p.is_file()} - {"manifest.json", SIGNATURE_FILE}
    for name in sorted(present - listed):
        report.problems.append(f"{folder / name}: file is not listed in manifest.json")
    intact = True
    for name in sorted(listed):
        try:
            runtime.read_file(folder, name, manifest)
        except runtime.PackageError as exc:
            report.problems.append(str(exc))
            intact = False
    if intact:
        report.passed.append(f"{len(listed)} file digests match manifest.json")
    if not intact:
        return report
    manifest = _legacy(manifest)
    try:
        model = runtime.load_model(folder, manifest)
        reviewed = manifest["model"]["trusted_types"]
        report.passed.append(f"model.skops loads with exactly the reviewed types {reviewed}")
    except Exception as exc:  # any failure to load is a verification failure, reported by name
        report.problems.append(f"{folder / 'model.skops'}: cannot be loaded safely: {exc}")
        return report
    schema = runtime.read_json(folder, "input_schema.json", manifest)
    expected = [c["name"] for c in schema["columns"]]
    names = getattr(model, "feature_names_in_", None)
    actual = [str(c) for c in names] if names is not None else None
    if actual is None:  # a team's estimator need not record names; the golden digest still binds
        report.passed.append(
            "the model records no feature names; the input schema is bound by the golden outputs"
        )
    elif expected != actual:
        report.problems.append(
            f"{folder / 'input_schema.json'}: columns {expected} differ from the model's {actual}"
        )
    else:
        report.passed.append(f"input schema matches the model's {len(expected)} features")
    recorded, recomputed = runtime.golden_digest(folder, manifest, model)
    if recorded != recomputed:
        report.problems.append(
            f"{folder / 'golden_inputs.parquet'}: prediction digest {recomputed[:16]} differs from "
            f"the recorded {recorded[:16]}"
        )
    else:
        report.passed.append(f"golden inputs reproduce prediction digest {recorded[:16]}")
    if manifest.get("format") != LEGACY_FORMAT:
        _verify_golden_outputs(folder, manifest, model, schema, report)
    _verify_requirements(folder, manifest, report)
    return report


def _requirement_hashes(text: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, hashes) of a requirements file in the form the build writes."""
    found: dict[str, tuple[str, set[str]]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        tokens = line.split("#", 1)[0].split()
        if tokens:
            name, _, version = tokens[0].partition("==")
            hashes = {t.removeprefix("--hash=") for t in tokens[1:] if t.startswith("--hash=")}
            found[name.lower()] = (version, hashes)
    return found


def _verify_requirements(
    folder: Path, manifest: dict[str, Any], report: VerificationReport
) -> None:
    """requirements.txt pins what the manifest records, each at a version and with artifact
    hashes the package's own uv.lock holds, so what a user installs is the lineage's lock.
    Packages before format 3 carry no requirements and are not held to this."""
    recorded = (manifest.get("environment") or {}).get("requirements")
    if recorded is None:
        return
    path = folder / runtime.REQUIREMENTS_FILE
    pinned = _requirement_hashes(runtime.read_file(folder, path.name, manifest).decode("utf-8"))
    versions = {n: v for n, (v, _) in pinned.items()}
    if versions != recorded:
        differing = sorted(
            f"{n}: {versions.get(n, 'absent')} (manifest.json: {recorded.get(n, 'absent')})"
            for n in set(versions) | set(recorded)
            if versions.get(n) != recorded.get(n)
        )
        report.problems.append(
            f"{path}: pins differ from manifest.json's environment.requirements: {differing}"
        )
        return
    try:
        entries = environment.locked_packages(runtime.read_file(folder, "uv.lock", manifest))
    except environment.LockError as exc:
        report.problems.append(f"{folder / 'uv.lock'}: {exc}")
        return
    locked = {(e["name"], e["version"]): environment.artifact_hashes(e) for e in entries}
    wrong = [
        f"{name}=={version}"
        for name, (version, hashes) in sorted(pinned.items())
        if not hashes or not hashes <= locked.get((name, version), set())
    ]
    if wrong:
        report.problems.append(
            f"{path}: {wrong} are not pinned with hashes of the package's uv.lock"
        )
    else:
        report.passed.append(
            f"{path.name}: {len(pinned)} pins, each at uv.lock's version with its artifact hashes"
        )


def _legacy(manifest: dict[str, Any]) -> dict[str, Any]:
    """A format-1 manifest completed with what that format implied, so old versions (a
    rollback target) still verify: a binary classifier whose only extra type was the forest's
    tree. The package's own predict.py of that format carries the same list."""
    if manifest.get("format") != LEGACY_FORMAT:
        return manifest
    model = {**manifest.get("model", {}), "trusted_types": list(LEGACY_TRUSTED_TYPES)}
    return {**manifest, "model": model, "task": "binary"}


def _verify_golden_outputs(
    folder: Path,
    manifest: dict[str, Any],
    model: Any,
    schema: dict[str, Any],
    report: VerificationReport,
) -> None:
    """Every golden row passes input validation and scores exactly to golden_outputs.parquet.

    Scored with the 'flag' policy: golden rows include held-out rows, which may lie outside
    the training range but never outside the declared domain.
    """
    from lifecycle_pipeline.package.build import differing_columns

    output = runtime.read_json(folder, "output_schema.json", manifest)
    if output.get("task") != manifest.get("task"):
        report.problems.append(
            f"{folder / 'output_schema.json'}: task {output.get('task')!r} differs from "
            f"manifest.json's {manifest.get('task')!r}"
        )
        return
    golden = pd.read_parquet(
        io.BytesIO(runtime.read_file(folder, "golden_inputs.parquet", manifest))
    )
    recorded = pd.read_parquet(
        io.BytesIO(runtime.read_file(folder, "golden_outputs.parquet", manifest))
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", runtime.OutOfRangeWarning)
            scored = runtime.score(model, schema, output, golden, "flag")
    except (runtime.InputError, runtime.PackageError) as exc:
        report.problems.append(f"{folder / 'golden_inputs.parquet'}: not scored: {exc}")
        return
    differing = differing_columns(recorded, scored.drop(columns=[runtime.FLAG_COLUMN]))
    if differing:
        report.problems.append(
            f"{folder / 'golden_outputs.parquet'}: {differing} differ from what the package "
            "computes on its golden inputs"
        )
    else:
        report.passed.append(
            f"all {len(golden)} golden rows pass input validation and reproduce "
            "golden_outputs.parquet"
        )
