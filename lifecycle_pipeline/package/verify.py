"""Verify a deployment package: signature, every digest, schema, safe load, golden outputs.

Verification uses this library's own trusted code, not code from the package under test,
and reports every problem it finds with the file it concerns.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle_pipeline.package import runtime
from lifecycle_pipeline.resources.signing import SIGNATURE_FILE, SignatureError, verify_signature


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


def verify_package(package: Path, public_key: Path) -> VerificationReport:
    with opened(package) as folder:
        return _verify_folder(folder, public_key, str(package))


def verify_stored_package(store: Any, record: Any, public_key: Path) -> VerificationReport:
    """A recorded package as the artifact store holds it, verified against ``public_key``.

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
            report = _verify_folder(folder, public_key, label)
            # Name files as they are in the stored zip, not in a folder that is gone afterwards.
            inside = f"{label}!"
            report.passed = [p.replace(f"{folder}/", inside) for p in report.passed]
            report.problems = [p.replace(f"{folder}/", inside) for p in report.problems]
    report.passed.insert(0, "folder files match the recorded digests; the zip holds exactly them")
    return report


def _verify_folder(folder: Path, public_key: Path, label: str) -> VerificationReport:
    report = VerificationReport(package=label)
    try:
        manifest = runtime.load_manifest(folder)
    except runtime.PackageError as exc:
        report.problems.append(str(exc))
        return report
    try:
        verify_signature(folder, public_key)
        report.passed.append(f"signature {SIGNATURE_FILE} verifies with {public_key.name}")
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
    try:
        model = runtime.load_model(folder, manifest)
        report.passed.append("model.skops loads with the explicit trusted-type list")
    except Exception as exc:  # any failure to load is a verification failure, reported by name
        report.problems.append(f"{folder / 'model.skops'}: cannot be loaded safely: {exc}")
        return report
    schema = json.loads((folder / "input_schema.json").read_text())
    expected = [c["name"] for c in schema["columns"]]
    actual = [str(c) for c in getattr(model, "feature_names_in_", [])]
    if expected != actual:
        report.problems.append(
            f"{folder / 'input_schema.json'}: columns {expected} differ from the model's {actual}"
        )
    else:
        report.passed.append(f"input schema matches the model's {len(expected)} features")
    recorded, recomputed = runtime.golden_digest(folder)
    if recorded != recomputed:
        report.problems.append(
            f"{folder / 'golden_inputs.parquet'}: prediction digest {recomputed[:16]} differs from "
            f"the recorded {recorded[:16]}"
        )
    else:
        report.passed.append(f"golden inputs reproduce prediction digest {recorded[:16]}")
    return report
