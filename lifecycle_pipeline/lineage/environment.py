"""The code and environment a materialization ran with: commit, dirty flag, lock, libraries."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lifecycle_pipeline.errors import SettingError
from lifecycle_pipeline.lineage.hashing import sha256_file
from lifecycle_pipeline.settings import PACKAGE_DIR

LIBRARIES = ("dagster", "dvc", "numpy", "pandas", "scikit-learn", "scipy", "skops", "pyarrow")
LOCK_FILE = "uv.lock"
# Written into container images, which carry no .git: the commit they were built from and the
# digest of the sources as built (tools: `lifecycle build-info`, deploy/Dockerfile).
BUILD_INFO = "build-info.json"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CodeState:
    commit: str
    dirty: bool
    source_digest: str
    lock_hash: str
    # Files that make the model but are not committed as they are (a declaration, its card
    # spec, a team's estimator module): named, so that a refusal can say which to commit.
    uncommitted: tuple[str, ...] = ()
    # Why git could not read the commit ("git: fatal: detected dubious ownership ..."): the
    # commit is then UNKNOWN, a gap that packaging and promotion refuse (``commit_gap``).
    commit_unreadable: str = ""

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "commit": self.commit,
            "dirty": self.dirty,
            "source_digest": self.source_digest,
            "lock_hash": self.lock_hash,
        }
        if self.uncommitted:  # absent when clean: a clean record's lineage hash is unchanged
            state["uncommitted"] = list(self.uncommitted)
        if self.commit_unreadable:  # absent when git answered, for the same reason
            state["commit_unreadable"] = self.commit_unreadable
        return state


_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # SHA-1 or SHA-256 object names


def commit_gap(code: Mapping[str, Any]) -> str | None:
    """Why a recorded code state names no commit (None when it names one): such a model's
    code is held by no commit, so it can be neither reproduced nor audited, and it is never
    packaged or promoted. The reason is git's own message when git could not be run."""
    commit = str(code.get("commit") or UNKNOWN)
    if _COMMIT.fullmatch(commit):
        return None
    why = code.get("commit_unreadable") or "no reason was recorded"
    return f"the model's code commit is {commit} ({why})"


def _run_git(root: Path, *args: str) -> tuple[str | None, str]:
    """git's output, or None and why git did not answer (its own first error line)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"git could not be run: {exc}"
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        return None, f"git: {first}"
    return result.stdout.strip(), ""


def _git(root: Path, *args: str) -> str | None:
    return _run_git(root, *args)[0]


def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """Digest of the package's Python sources: distinguishes uncommitted edits at one commit."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        if path.suffix in {".py", ".j2", ".yaml", ".toml"} and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_state(project_root: Path, model_files: Sequence[Path] = ()) -> CodeState:
    """Commit and dirty flag of the project checkout or, in an image, of its build.

    ``model_files`` are the files that make one model beyond the package (its folder, a
    team's estimator module): an untracked or edited one makes the state dirty and is named
    in ``uncommitted``, since the commit alone would not hold that model (a model trained
    before its folder was first committed could otherwise never be reproduced, though its
    record said "clean"). A model folder outside the checkout (``LIFECYCLE_MODELS_DIR``) is
    not the commit's to hold: a reproduction reads it from the same folder, and the recorded
    declaration sha256 then tells whether it is still the one trained.

    Outside git and without build information (or when git refuses, e.g. "dubious ownership")
    the commit is 'unknown', the state counts as dirty and ``commit_unreadable`` holds git's
    reason: such a model cannot be reproduced from its record, the record says why, and it is
    never packaged or promoted (``commit_gap``).
    """
    lock = project_root / LOCK_FILE
    lock_hash = sha256_file(lock) if lock.exists() else UNKNOWN
    digest = source_digest()
    commit, unreadable = _run_git(project_root, "rev-parse", "HEAD")
    if commit is None and (project_root / BUILD_INFO).is_file():
        built = json.loads((project_root / BUILD_INFO).read_text(encoding="utf-8"))
        # Sources edited inside a running container no longer match the commit's.
        dirty = built.get("source_digest") != digest or built.get("lock_hash") != lock_hash
        return CodeState(str(built.get("commit", UNKNOWN)), dirty, digest, lock_hash)
    root = project_root.resolve()
    inside = [
        path.resolve().relative_to(root).as_posix()
        for path in model_files
        if path.resolve().is_relative_to(root)
    ]
    status = _git(
        project_root,
        "status",
        "--porcelain",
        "--untracked-files=all",  # a new model folder is listed file by file, never "dir/"
        "--",
        "lifecycle_pipeline",
        LOCK_FILE,
        *inside,
    )
    if status is None:
        return CodeState(commit or UNKNOWN, True, digest, lock_hash, (), unreadable)
    changed = [line[3:] for line in status.splitlines() if line[3:]]
    ours = {p for p in changed if any(_covers(m, p) for m in inside)}
    return CodeState(
        commit=commit or UNKNOWN,
        dirty=bool(status),
        source_digest=digest,
        lock_hash=lock_hash,
        uncommitted=tuple(sorted(ours)),
        commit_unreadable=unreadable,
    )


def _covers(spec: str, path: str) -> bool:
    """Whether a pathspec given to git status (a file or a folder) covers ``path``."""
    return path == spec or path.startswith(spec.rstrip("/") + "/")


def model_files(model: Any) -> list[Path]:
    """What makes one declared model besides this package: its folder (declaration, card
    spec, anything beside them) and, when the estimator is a team's own class, the file of
    its module. Library estimators are pinned by the lock instead."""
    import importlib.util

    files = [Path(model.path).parent]
    module = str(model.model.estimator.class_).rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None  # the declaration's own validation names an estimator that does not import
    if spec is not None and spec.origin and "site-packages" not in Path(spec.origin).parts:
        files.append(Path(spec.origin))
    return files


def write_build_info(project_root: Path, commit: str) -> Path:
    """Record, at image build time, which commit these sources and this lock came from."""
    if len(commit) != 40 or not all(c in "0123456789abcdef" for c in commit):
        raise SettingError(
            f"commit {commit!r} is not a full git commit id; build the image with "
            "--build-arg GIT_COMMIT=$(git rev-parse HEAD) from a clean checkout."
        )
    lock = project_root / LOCK_FILE
    info = {
        "commit": commit,
        "source_digest": source_digest(),
        "lock_hash": sha256_file(lock) if lock.exists() else UNKNOWN,
    }
    target = project_root / BUILD_INFO
    target.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


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
