"""Build the demo data registry: a git + DVC repository with a local DVC remote.

The registry mirrors what a team runs for real (DVC's data-registry pattern): each data
version and production batch is a commit with a tag; content lives in the DVC cache and a
remote outside git. The builder is idempotent: tags that already exist with the expected
content are left alone, and a tag that exists with other content is an error, never a move.

What is published, under which tag and at which path, is the sample-data stage's manifest
(``publish``, written by ``lifecycle_pipeline/sample_data.py``): this module knows no dataset.
One registry holds every sample model's data; each model's declaration selects its own tags
(``data.versions``, ``data.batches``) and paths (``data.path``, ``data.batch_path``).
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
from pathlib import Path, PurePosixPath
from typing import Any

from lifecycle_pipeline.errors import LifecycleError

MANIFEST = "manifest.json"


class RegistryBuildError(LifecycleError, RuntimeError):
    """The demo registry could not be built as asked."""


@dataclass(frozen=True)
class Publication:
    """One file to commit: ``source`` goes to ``target`` in the registry, tagged ``tag``."""

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
    # (One minute per commit; hours carry past 59 commits.)
    hours, minutes = divmod(int(count or 0), 60)
    date = f"2026-01-01T{hours:02d}:{minutes:02d}:00+0000"
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


def _relative(value: Any, what: str, manifest: Path) -> str:
    """A relative path that stays inside its root: the manifest must not reach elsewhere."""
    path = PurePosixPath(str(value))
    if not str(value) or path.is_absolute() or ".." in path.parts:
        raise RegistryBuildError(f"{manifest}: {what} {value!r} is not a relative path inside it")
    return path.as_posix()


def publications(sample_dir: Path) -> list[Publication]:
    """What the demo publishes, in commit order, from the sample-data manifest.

    The order is part of the registry's identity: commit dates follow the commit count, so
    publishing the same list in the same order gives the same commit ids on every machine.
    """
    manifest_path = sample_dir / MANIFEST
    if not manifest_path.exists():
        raise RegistryBuildError(
            f"{manifest_path} is missing: run `dvc repro` (or `make demo`) to prepare sample data."
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entries = manifest.get("publish") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not entries:
        raise RegistryBuildError(
            f"{manifest_path} lists nothing to publish (no `publish` table): it was written by an "
            "older sample-data stage; run `dvc repro` to regenerate it."
        )
    items = [
        Publication(
            tag=str(entry["tag"]),
            source=sample_dir / _relative(entry["file"], "file", manifest_path),
            target=_relative(entry["target"], "target", manifest_path),
            message=str(entry["message"]),
        )
        for entry in entries
    ]
    tags = [item.tag for item in items]
    repeated = sorted({t for t in tags if tags.count(t) > 1})
    if repeated:
        raise RegistryBuildError(f"{manifest_path}: tag(s) {repeated} listed more than once")
    missing = [str(item.source) for item in items if not item.source.is_file()]
    if missing:
        raise RegistryBuildError(
            f"{manifest_path} names file(s) that are not there: {missing}; run `dvc repro`."
        )
    return items


def build_demo_registry(sample_dir: Path, repo: Path, remote: Path) -> dict[str, str]:
    """Publish every sample version and batch; return tag -> md5. Safe to call repeatedly."""
    items = publications(sample_dir)
    if not (repo / ".dvc").exists():
        init_registry(repo, remote)
    return {item.tag: publish(repo, item) for item in items}
