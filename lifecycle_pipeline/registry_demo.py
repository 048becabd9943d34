"""Build the demo data registry: a git + DVC repository with a local DVC remote.

The registry mirrors what a team runs for real (DVC's data-registry pattern): each data
version and production batch is a commit with a tag; content lives in the DVC cache and a
remote outside git. The builder is idempotent: tags that already exist with the expected
content are left alone, and a tag that exists with other content is an error, never a move.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lifecycle_pipeline.errors import LifecycleError

DATASET_PATH = "data/breast_cancer.csv"


class RegistryBuildError(LifecycleError, RuntimeError):
    """The demo registry could not be built as asked."""


@dataclass(frozen=True)
class Publication:
    tag: str
    source: Path
    target: str
    message: str


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC logs hints meant for interactive users ("you can now commit..."); not ours."""
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _git(repo: Path, *args: str) -> str:
    # A fixed identity and a date derived from the commit count make the demo registry's
    # commits identical on every machine, so its commit ids can be compared and documented.
    count = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    date = f"2026-01-01T00:{int(count or 0):02d}:00+0000"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "lifecycle demo",
        "GIT_AUTHOR_EMAIL": "demo@lifecycle.invalid",
        "GIT_COMMITTER_NAME": "lifecycle demo",
        "GIT_COMMITTER_EMAIL": "demo@lifecycle.invalid",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
    }
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise RegistryBuildError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _tags(repo: Path) -> set[str]:
    return set(filter(None, _git(repo, "tag", "--list").splitlines()))


def init_registry(repo: Path, remote: Path) -> None:
    """Create an empty git + DVC repository whose default remote is ``remote``."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    repo.mkdir(parents=True, exist_ok=True)
    remote.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "commit.gpgsign", "false")
    with _quiet_dvc():
        Repo.init(str(repo))
    # DVC resolves a relative local remote against .dvc/, so the registry and its remote stay
    # movable as a pair and the committed config (hence every commit id) is location-free.
    relative = os.path.relpath(remote.resolve(), (repo / ".dvc").resolve())
    (repo / ".dvc" / "config").write_text(
        "[core]\n    remote = local\n    analytics = false\n    autostage = true\n"
        f"['remote \"local\"']\n    url = {Path(relative).as_posix()}\n",
        encoding="utf-8",
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Initialise data registry")


def publish(repo: Path, item: Publication) -> str:
    """Commit ``item.source`` at ``item.target`` through DVC, tag it, push it; return the md5."""
    from dvc.repo import Repo

    expected = _md5(item.source)
    if item.tag in _tags(repo):
        dvc_file = _git(repo, "show", f"{item.tag}:{item.target}.dvc")
        if f"md5: {expected}" not in dvc_file:
            raise RegistryBuildError(
                f"Tag {item.tag!r} already exists in {repo} with other content than "
                f"{item.source} (md5 {expected}); refusing to move a published data version. "
                "Publish the new data under a new tag."
            )
        return expected
    destination = repo / item.target
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(item.source, destination)
    with Repo(str(repo)) as dvc_repo, _quiet_dvc():
        dvc_repo.add(str(destination))
        _git(repo, "commit", "-q", "-m", item.message)
        _git(repo, "tag", item.tag)
        dvc_repo.push()
    return expected


def build_demo_registry(sample_dir: Path, repo: Path, remote: Path) -> dict[str, str]:
    """Publish the sample versions and batches; return tag -> md5. Safe to call repeatedly."""
    manifest_path = sample_dir / "manifest.json"
    if not manifest_path.exists():
        raise RegistryBuildError(
            f"{manifest_path} is missing: run `dvc repro` (or `make demo`) to prepare sample data."
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if not (repo / ".dvc").exists():
        init_registry(repo, remote)
    items = [
        Publication(
            tag=version,
            source=sample_dir / "versions" / version / manifest["dataset_file"],
            target=DATASET_PATH,
            message=f"Data version {version}",
        )
        for version in manifest["versions"]
    ] + [
        Publication(
            tag=batch,
            source=sample_dir / "batches" / f"{batch}.csv",
            target=f"batches/{batch}.csv",
            message=f"Production batch {batch}",
        )
        for batch in manifest["batches"]
    ]
    return {item.tag: publish(repo, item) for item in items}
