"""The code and environment a materialization ran with: commit, dirty flag, lock, libraries."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lifecycle_pipeline.lineage.hashing import sha256_file
from lifecycle_pipeline.settings import PACKAGE_DIR

LIBRARIES = ("dagster", "dvc", "numpy", "pandas", "scikit-learn", "scipy", "skops", "pyarrow")
LOCK_FILE = "uv.lock"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CodeState:
    commit: str
    dirty: bool
    source_digest: str
    lock_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "dirty": self.dirty,
            "source_digest": self.source_digest,
            "lock_hash": self.lock_hash,
        }


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """Digest of the package's Python sources: distinguishes uncommitted edits at one commit."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        if path.suffix in {".py", ".j2", ".yaml", ".toml"} and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_state(project_root: Path) -> CodeState:
    """Commit and dirty flag of the project checkout; 'unknown' outside a git checkout."""
    commit = _git(project_root, "rev-parse", "HEAD") or UNKNOWN
    status = _git(project_root, "status", "--porcelain", "--", "lifecycle_pipeline", LOCK_FILE)
    lock = project_root / LOCK_FILE
    return CodeState(
        commit=commit,
        dirty=bool(status) if status is not None else True,
        source_digest=source_digest(),
        lock_hash=sha256_file(lock) if lock.exists() else UNKNOWN,
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = UNKNOWN
    return versions


def machine() -> dict[str, str]:
    return {"platform": platform.platform(), "machine": platform.machine()}
