"""Real collaborators for the figures: git + DVC registries, a temporary project repository.

Built the way ``tests/conftest.py`` and ``tests/test_reproduce.py`` build them, with
``lifecycle_pipeline.registry_demo``; only the 200-version registry of figure 5 writes its
later versions' ``.dvc`` files and cache objects directly (the same bytes ``dvc add`` and
``dvc push`` write), because 200 DVC publications would take longer than the figure itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from bench.plain import SAMPLE_MODEL
from lifecycle_pipeline.registry_demo import Publication, init_registry, publish

PROJECT_FILES = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "lifecycle_pipeline",
    "models",
    ".gitignore",
)
IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@lifecycle.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@lifecycle.invalid",
}


def git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **IDENTITY}
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def registry_with(csv: Path, base: Path, tag: str = "data-v1") -> Path:
    """A git + DVC registry under ``base`` whose ``tag`` holds ``csv`` (DVC add, commit, push)."""
    repo = base / "registry"
    init_registry(repo, base / "remote")
    publish(
        repo, Publication(tag=tag, source=csv, target=SAMPLE_MODEL.model.data.path, message=tag)
    )
    return repo


def _store(cache_root: Path, data: bytes) -> str:
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    target = cache_root / "files" / "md5" / md5[:2] / md5[2:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return md5


def many_version_registry(
    base: Path, contents: list[bytes], published: int
) -> tuple[Path, list[str]]:
    """A registry with one tag per entry of ``contents`` (data-v001, ...), oldest first.

    The first ``published`` versions go through DVC (add, commit, tag, push); the rest get the
    same ``.dvc`` file, cache object and remote object written directly, one commit and tag
    each, with increasing commit dates so the registry's oldest-first order is well defined.
    """
    repo, remote = base / "registry", base / "remote"
    init_registry(repo, remote)
    tags = [f"data-v{index:03d}" for index in range(1, len(contents) + 1)]
    upload = base / "upload.csv"
    for tag, data in zip(tags[:published], contents[:published], strict=True):
        upload.write_bytes(data)
        publish(
            repo,
            Publication(tag=tag, source=upload, target=SAMPLE_MODEL.model.data.path, message=tag),
        )
    folder, name = SAMPLE_MODEL.model.data.path.rsplit("/", 1)
    for index, (tag, data) in enumerate(zip(tags, contents, strict=True)):
        if index < published:
            continue
        md5 = _store(repo / ".dvc" / "cache", data)
        _store(remote, data)
        (repo / folder / f"{name}.dvc").write_text(
            f"outs:\n- md5: {md5}\n  size: {len(data)}\n  hash: md5\n  path: {name}\n",
            encoding="utf-8",
        )
        date = f"2026-02-01T{index // 60:02d}:{index % 60:02d}:00+0000"
        git(repo, "add", f"{folder}/{name}.dvc")
        git(repo, "commit", "-q", "-m", tag, date=date)
        git(repo, "tag", tag)
    return repo, tags


def project_repository(root: Path, target: Path) -> Path:
    """A git repository holding the project's sources (as tests/test_reproduce.py builds it)."""
    target.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, target / name)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "A: the project as it is")
    return target


def commit_change(repo: Path) -> str:
    """Commit B: larger leaves declared for the sample model (its estimator parameters live
    in its defs.yaml), so that A's versions need the worktree path."""
    path = repo / "models" / SAMPLE_MODEL.name / SAMPLE_MODEL.path.name
    text = path.read_text(encoding="utf-8")
    old = "min_samples_leaf: 2"
    if text.count(old) != 1:
        raise RuntimeError(f"{path} no longer contains {old!r} once; update bench/scenarios.py")
    path.write_text(text.replace(old, "min_samples_leaf: 3"), encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "B: larger leaves, declared")
    return git(repo, "rev-parse", "HEAD")
