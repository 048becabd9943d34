"""Reproduction worktrees: list them and prune them.

Each reproduced older commit keeps a git worktree with an environment built from that
commit's lock (``reproduce.prepare_worktree``), so the next reproduction of it skips the
build. They are removed through git (``git worktree remove`` + ``prune``), so git forgets
them too and ``git worktree list`` holds no stale entries.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from lifecycle_pipeline.lineage.environment import UNKNOWN
from lifecycle_pipeline.reproduce import LAST_USED, ReproduceError, _git, worktree_cache


@dataclass(frozen=True)
class Worktree:
    """One reproduction worktree with its own environment, kept so that the next reproduction
    of the same commit skips the build; it stays until pruned."""

    path: Path
    commit: str  # "unknown" for a folder whose creation was interrupted
    last_used: datetime

    @cached_property
    def usage(self) -> tuple[int, int]:
        """Measured when first asked (a walk of the environment's files takes about a second):
        pruning measures only what it removes."""
        return _disk_usage(self.path)

    @property
    def size(self) -> int:
        """Bytes allocated on disk, each inode counted once."""
        return self.usage[0]

    @property
    def shared(self) -> int:
        """Of those, bytes hard-linked from outside (uv's cache), which removal does not free."""
        return self.usage[1]

    @property
    def freed(self) -> int:
        return self.size - self.shared


def _disk_usage(path: Path) -> tuple[int, int]:
    """Allocated bytes under ``path`` and the part also linked from outside it."""
    inodes: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [bytes, links, seen]
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            info = (Path(folder) / name).lstat()
            entry = inodes.setdefault((info.st_dev, info.st_ino), [info.st_blocks * 512, 0, 0])
            if stat.S_ISREG(info.st_mode):
                entry[1], entry[2] = info.st_nlink, entry[2] + 1
    size = sum(blocks for blocks, _, _ in inodes.values())
    return size, sum(blocks for blocks, links, seen in inodes.values() if links > seen)


def _last_used(path: Path) -> datetime:
    stamp = path / ".venv" / LAST_USED
    try:
        used = datetime.fromisoformat(stamp.read_text(encoding="utf-8").strip())
        return used if used.tzinfo else used.replace(tzinfo=UTC)
    except (OSError, ValueError):  # made before stamps existed, or interrupted
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def list_worktrees(cache: Path | None = None) -> list[Worktree]:
    """The reproduction worktrees under ``cache``, most recently used first."""
    cache = cache or worktree_cache()
    found = []
    for path in sorted(cache.iterdir()) if cache.is_dir() else []:
        if not path.is_dir():
            continue
        head = _git(path, "rev-parse", "HEAD") if (path / ".git").exists() else None
        commit = head.stdout.strip() if head is not None and head.returncode == 0 else UNKNOWN
        found.append(Worktree(path, commit, _last_used(path)))
    return sorted(found, key=lambda tree: tree.last_used, reverse=True)


def stale_worktree_entries(root: Path, cache: Path | None = None) -> list[str]:
    """Worktrees git still lists under ``cache`` whose folders are gone (`rm -rf .lifecycle`)."""
    cache = cache or worktree_cache()
    listed = _git(root, "worktree", "list", "--porcelain").stdout.splitlines()
    paths = [line.removeprefix("worktree ") for line in listed if line.startswith("worktree ")]
    return [p for p in paths if Path(p).parent == cache and not Path(p).exists()]


def parse_age(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` (what --older-than accepts)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if match is None:
        raise ReproduceError(
            f"--older-than {text!r}: expected a whole number and a unit (s, m, h, d or w), "
            "like 12h or 7d."
        )
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return timedelta(**{units[match[2]]: int(match[1])})


@dataclass(frozen=True)
class PruneResult:
    removed: list[Worktree]
    kept: list[Worktree]
    failed: list[tuple[Worktree, str]]  # the worktree and git's reason
    stale: list[str]  # git entries whose folders were already gone, now pruned

    def render(self) -> str:
        lines = [
            f"removed {t.commit[:12]}  {t.path}  freed {human_size(t.freed)}"
            + (
                f" ({human_size(t.shared)} more stays, hard-linked in uv's cache)"
                if t.shared
                else ""
            )
            for t in self.removed
        ]
        lines += [f"pruned stale git worktree entry {entry}" for entry in self.stale]
        lines += [f"NOT removed {t.path}: {reason}" for t, reason in self.failed]
        if not (self.removed or self.stale or self.failed):
            return f"nothing to prune ({_count(self.kept)} kept)"
        freed = human_size(sum(t.freed for t in self.removed))
        return "\n".join([*lines, f"freed {freed}; {_count(self.kept)} kept"])


def prune_worktrees(
    root: Path,
    cache: Path | None = None,
    keep: int | None = None,
    older_than: timedelta | None = None,
) -> PruneResult:
    """Remove reproduction worktrees through git (so `git worktree list` forgets them too).

    ``keep`` spares the most recently used; ``older_than`` spares those used since; neither
    given removes all of them. A later reproduction of a removed commit rebuilds its worktree.
    """
    if keep is not None and keep < 0:
        raise ReproduceError(f"--keep must be 0 or more; got {keep}.")
    trees = list_worktrees(cache)
    stale = stale_worktree_entries(root, cache)
    now = datetime.now(tz=UTC)
    candidates = trees[keep:] if keep is not None else trees
    if older_than is not None:
        candidates = [t for t in candidates if now - t.last_used > older_than]
    removed: list[Worktree] = []
    failed: list[tuple[Worktree, str]] = []
    for tree in candidates:
        _ = tree.usage  # measured while it is still there, to say what was freed
        if (tree.path / ".git").exists():
            done = _git(root, "worktree", "remove", "--force", str(tree.path))
            if done.returncode != 0:
                failed.append((tree, done.stderr.strip() or f"git exited {done.returncode}"))
                continue
        if tree.path.exists():  # a creation interrupted before git registered it
            shutil.rmtree(tree.path)
        removed.append(tree)
    _git(root, "worktree", "prune")
    kept = [t for t in trees if t not in removed]
    return PruneResult(removed, kept, failed, stale)


def render_worktrees(trees: list[Worktree], stale: list[str], cache: Path) -> str:
    """The --list-worktrees table: what each costs on disk and when a reproduction last used it."""
    from lifecycle_pipeline.lineage.query import render_table

    if not trees and not stale:
        return f"no reproduction worktrees under {cache}"
    rows: list[tuple[str, ...]] = [
        (
            t.commit[:12],
            human_size(t.size),
            human_size(t.freed),
            t.last_used.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            str(t.path),
        )
        for t in trees
    ]
    table = render_table(("commit", "size on disk", "freed by removal", "last used", "path"), rows)
    total = (
        f"{_count(trees)}, {human_size(sum(t.size for t in trees))} on disk, "
        f"{human_size(sum(t.freed for t in trees))} freed by `lifecycle reproduce --prune`"
    )
    lines = [
        f"git still lists {entry}, whose folder is gone (--prune forgets it)" for entry in stale
    ]
    return "\n".join([table, total, *lines])


def _count(trees: list[Worktree]) -> str:
    return f"{len(trees)} worktree" + ("" if len(trees) == 1 else "s")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
