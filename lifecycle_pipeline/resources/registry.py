"""The data registry: a git + DVC repository whose tags name data versions.

Data is only ever read at a pinned revision, through DVC or, for a local registry whose file
is in its own DVC cache, through the same pointer read with plain git, so a moved working copy
or an uncommitted edit in the registry can never leak into a model. The commit and DVC md5
behind a revision are returned with the bytes, and the bytes are checked against that md5.

A reproduction pins a tag to the commit it was recorded at (``LIFECYCLE_REGISTRY_PINS``), so
a moved tag cannot change what a past model is judged on, and the run config, hence the
recorded config hash, stays the one the version was trained with.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import dagster as dg
import yaml
from pydantic import Field

from lifecycle_pipeline.errors import LifecycleError

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.lineage.records import ResolvedVersion
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.settings import Settings


class RegistryError(LifecycleError, RuntimeError):
    """The registry cannot resolve or serve a data version."""


# `lifecycle reproduce` looks for this quoted name in a past commit's copy of this file to
# tell whether that commit's code honours pins; keep the assignment spelled this way.
PINS_VARIABLE = "LIFECYCLE_REGISTRY_PINS"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_ABBREVIATED = re.compile(r"[0-9a-fA-F]{4,39}")
_MD5 = re.compile(r"[0-9a-f]{32}")
_BLOB_HEADER = re.compile(rb"[0-9a-f]{40,64} blob (\d+)")
# Keys a DVC 3 `dvc add` pointer's output may carry that do not change where its bytes are
# or what they are; any other key (a directory listing, `cache: false`) is left to DVC.
_PLAIN_OUT_KEYS = frozenset(
    {"md5", "size", "hash", "path", "isexec", "cloud", "remote", "push", "persist", "desc",
     "type", "labels", "meta"}
)  # fmt: skip


def _git_environment(folder: Path) -> dict[str, str]:
    """git's environment for asking the repository at ``folder`` and no other: the overrides
    a git hook sets (GIT_DIR and the like) are dropped, as libgit2 under DVC ignores them, and
    no repository above the folder is searched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {"GIT_CEILING_DIRECTORIES": str(folder.parent), "LC_ALL": "C"}


def _configures_cache(text: str) -> bool:
    """Whether a DVC config (configobj INI) has a ``cache`` section, which moves the cache
    away from ``.dvc/cache`` or changes how it is used."""
    headers = (line.strip() for line in text.splitlines())
    return any(
        header.startswith("[")
        and header.strip("[]").strip().strip("'\"").strip().lower() == "cache"
        for header in headers
    )


def registry_pins(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tag -> commit pins from ``LIFECYCLE_REGISTRY_PINS`` (JSON), read when data is read.

    Set by `lifecycle reproduce` for its scratch run only: a deployment that sets it reads
    every pinned tag at that commit, which each data_snapshot records as ``git/commit``.
    """
    raw = (os.environ if environ is None else environ).get(PINS_VARIABLE, "").strip()
    if not raw:
        return {}
    example = '{"data-v1": "<40-hex commit>"}'
    try:
        pins = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{PINS_VARIABLE} is not JSON ({exc}); expected {example}, or unset it."
        ) from exc
    if not isinstance(pins, dict) or not all(
        isinstance(tag, str) and isinstance(commit, str) and _COMMIT.fullmatch(commit)
        for tag, commit in pins.items()
    ):
        raise RegistryError(
            f"{PINS_VARIABLE} must map tags to full 40-hex commit ids, like {example}; "
            f"got {raw[:200]!r}. Fix or unset it."
        )
    return {str(tag): str(commit) for tag, commit in pins.items()}


def means_not_stored(exc: BaseException) -> bool:
    """Whether an error opening or reading registry content means the content cannot be had:
    a file or a remote that cannot be read (``OSError``: missing cache file, refused
    connection) or DVC's own refusal (``DvcException``). Anything else (a ``TypeError``, a
    ``MemoryError``) is a defect or the machine, and is raised as itself so that the CLI
    reports it as one (exit 3) instead of sending the operator to `dvc push` (exit 2)."""
    from dvc.exceptions import DvcException  # only once something failed: DVC is slow to import

    return isinstance(exc, OSError | DvcException)


class VerifiedStream:
    """A registry file read once, front to back, with its md5 computed on the way.

    Readers (Arrow's CSV reader among them) call ``read``; whatever they leave unread is
    drained by ``verify``, which compares the digest with the one DVC recorded.
    """

    def __init__(
        self,
        handle: Any,
        resolved: ResolvedVersion,
        not_stored: Callable[[Exception], RegistryError],
    ) -> None:
        self._handle = handle
        self._resolved = resolved
        self._not_stored = not_stored
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        try:
            chunk: bytes = self._handle.read(size)
        except Exception as exc:
            if not means_not_stored(exc):
                raise  # a defect (TypeError) or the machine (MemoryError): not the registry's
            raise self._not_stored(exc) from exc  # the cache file vanished, the remote failed
        self._md5.update(chunk)
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True

    def verify(self) -> None:
        """Read what is left, then refuse bytes that are not the recorded ones."""
        while self.read(1 << 22):
            pass
        actual = self._md5.hexdigest()
        if actual != self._resolved.md5:
            raise RegistryError(
                f"Data version {self._resolved.key!r}: {self._resolved.path!r} read with md5 "
                f"{actual}, but DVC records {self._resolved.md5}; the cache or remote is "
                "corrupted."
            )


class DataRegistry(dg.ConfigurableResource):
    """A git + DVC data registry (DVC's data-registry pattern) read at pinned revisions."""

    url: str | None = Field(
        default=None,
        description="Registry git URL or path; default: the declaration's data.registry ('demo': "
        "$LIFECYCLE_REGISTRY_URL, else the demo registry under LIFECYCLE_HOME).",
    )
    dataset_path: str = Field(
        default="",
        description="Path of the dataset file inside the registry (declared: data.path).",
    )
    version_pattern: str = Field(
        default="data-v*", description="Glob over tag names that marks a tag as a data version."
    )
    batch_pattern: str = Field(
        default="batch-*", description="Glob over tag names that marks a production batch."
    )
    batch_path: str = Field(
        default="batches/{key}.csv", description="Path of a batch's file; {key} is its tag."
    )
    remote: str | None = Field(
        default=None, description="DVC remote name to fetch from; default the registry's own."
    )

    @classmethod
    def for_model(cls, model: LoadedDeclaration, given: DataRegistry | None = None) -> DataRegistry:
        """The registry a declaration names; fields set on ``given`` (a deployment's or a test's
        resource) win over the declaration, which wins over the defaults."""
        data = model.model.data
        explicit = given.model_dump(exclude_unset=True) if given is not None else {}
        declared: dict[str, Any] = {
            # A given URL wins: the declared one (which may be an error) is not even resolved.
            "url": explicit.get("url") or data.registry_url(),
            "dataset_path": data.path,
            "version_pattern": data.versions,
            "batch_pattern": data.batches,
            "batch_path": data.batch_path,
        }
        return cls(**{k: v for k, v in declared.items() if v is not None} | explicit)

    @staticmethod
    def of(context: Any, model: LoadedDeclaration) -> DataRegistry:
        """The model's registry from an asset's or a sensor's context (its resource is
        ``<model>_registry``, required by key so that each model reads its own)."""
        registry: DataRegistry = getattr(context.resources, model.registry_key)
        return registry

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().registry_url

    def _filesystem(self, rev: str) -> Any:
        """A DVC filesystem pinned at ``rev``; it opens lazily, so errors surface on first use."""
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        from dvc.api import DVCFileSystem
        from dvc.exceptions import DvcException

        config = {"core": {"remote": self.remote}} if self.remote else None
        try:
            return DVCFileSystem(self.resolved_url(), rev=rev, config=config)
        except (DvcException, OSError, ValueError) as exc:
            raise self._unreachable(rev, exc) from exc

    def _unreachable(self, rev: str, exc: Exception) -> RegistryError:
        pinned = [tag for tag, commit in registry_pins().items() if commit == rev]
        remedy = (
            f"It is the commit {PINS_VARIABLE} pins {pinned[0]!r} to: fetch that commit into "
            "the registry, or unset the pin."
            if pinned
            else "Check that the tag exists in the registry (git tag --list) or remove the "
            "partition."
        )
        return RegistryError(
            f"Registry revision {rev!r} cannot be opened in registry {self.resolved_url()!r}: "
            f"{type(exc).__name__}: {exc}. {remedy}"
        )

    def _revision(self, key: str) -> str:
        """The revision a key is read at: its pinned commit, else the tag itself."""
        return registry_pins().get(key, key)

    def commit_of(self, rev: str) -> str | None:
        """The commit a tag or commit id names in the registry; None when it holds no such
        revision (a deleted tag, a commit lost to a rewritten history).

        A registry in a local folder is asked with plain git (``_local_commit_of``): DVC's
        import alone is ~0.4 s of every `lifecycle reproduce`, which only needs this answer.
        Whatever git cannot answer for certain goes to DVC, which answers or refuses as
        before."""
        answered, commit = self._local_commit_of(rev)
        if answered:
            return commit
        from dvc.exceptions import DvcException
        from dvc.scm import RevError

        fs = self._filesystem(rev)
        try:
            return str(fs.repo.scm.resolve_rev(rev))
        except RevError:
            return None
        except (DvcException, OSError, ValueError) as exc:
            raise self._unreachable(rev, exc) from exc

    def _local_commit_of(self, rev: str) -> tuple[bool, str | None]:
        """``(True, commit or None)`` when the registry is a git repository in a local folder
        and git tells the answer, as DVC would (``scmrepo``'s ``resolve_rev``): the revision
        (tag, branch, full or abbreviated commit id, any rev-parse expression) peeled to its
        commit, else the branch of that name on exactly one remote, else None. ``(False,
        None)`` for anything else (a URL, no git, a folder that is not a repository root, an
        unreadable or ambiguous revision), which ``commit_of`` leaves to DVC so that its
        answers and errors stay the ones it always gave.

        Only the repository at the folder itself is asked (GIT_CEILING_DIRECTORIES), never
        one found above it, and git's environment overrides (GIT_DIR and the like, set when
        this runs inside a git hook) are dropped, as libgit2 under DVC ignores them too."""
        url = self.resolved_url()
        if not rev or rev.startswith("-") or ":" in rev or not Path(url).is_dir():
            return False, None  # ':' names a path in a tree, where ^{commit} would not peel
        folder = Path(url).resolve()
        env = _git_environment(folder)

        def git(*args: str) -> subprocess.CompletedProcess[str] | None:
            try:
                return subprocess.run(
                    ["git", "--no-replace-objects", "-C", str(folder), *args],
                    capture_output=True, text=True, env=env, check=False,
                )  # fmt: skip
            except OSError:  # no git on PATH
                return None

        if _ABBREVIATED.fullmatch(rev):  # git picks the one commit among objects sharing
            # the prefix (the ^{commit} hint), libgit2 calls that ambiguous: DVC says
            shared = git("rev-parse", f"--disambiguate={rev}")
            if shared is None or shared.returncode != 0 or len(shared.stdout.split()) > 1:
                return False, None
        found = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if found is None or found.returncode not in (0, 1) or found.stderr.strip():
            return False, None  # not a repository here, unreadable, ambiguous: DVC says
        if found.returncode == 0:
            commit = found.stdout.strip()
            return (True, commit) if _COMMIT.fullmatch(commit) else (False, None)
        other = git("rev-parse", "--verify", "--quiet", f"{rev}^{{object}}")
        if other is None or other.returncode != 1 or other.stderr.strip():
            return False, None  # it names a tree or blob, or git failed: DVC says
        remotes = git("remote")
        if remotes is None or remotes.returncode != 0:
            return False, None
        names = [f"refs/remotes/{name}/{rev}" for name in remotes.stdout.split()]
        if not names:
            return True, None
        listed = git("for-each-ref", "--format=%(refname) %(objectname)", *names)
        if listed is None or listed.returncode != 0:
            return False, None
        wanted = set(names)  # for-each-ref also matches refs below these; keep exact names
        shas = {
            sha
            for name, _, sha in (line.partition(" ") for line in listed.stdout.splitlines())
            if name in wanted
        }
        if len(shas) > 1:
            return False, None  # ambiguous: DVC refuses it
        return True, shas.pop() if shas else None

    def resolve(self, key: str, path: str | None = None) -> ResolvedVersion:
        """Resolve a key to its commit and DVC md5 without reading the data."""
        validate_partition_key(key)
        rev = self._revision(key)
        return self._resolve_with(self._filesystem(rev), key, rev, path or self.dataset_path)

    def _resolve_with(self, fs: Any, key: str, rev: str, path: str) -> ResolvedVersion:
        from dvc.scm import SCMError

        try:
            info = fs.info(path)
        except FileNotFoundError as exc:
            raise RegistryError(
                f"{self._field_of(path)} is {path!r}, but tag {key!r} of registry "
                f"{self.resolved_url()!r} has no such file; the tag holds "
                f"{self._files_at(fs)}. Correct {self._field_of(path)} in the declaration, "
                "or publish the file at that path under the tag."
            ) from exc
        except (SCMError, OSError, ValueError) as exc:
            raise self._unreachable(rev, exc) from exc
        md5 = (info.get("dvc_info") or {}).get("md5")
        if not md5:
            raise RegistryError(
                f"{path!r} at {key!r} is not tracked by DVC (no md5 in its .dvc "
                "file); publish data with `dvc add` so it is versioned by content."
            )
        commit = fs.repo.scm.resolve_rev(rev)
        return ResolvedVersion(
            key=key,
            registry=self.resolved_url(),
            path=path,
            commit=str(commit),
            md5=str(md5),
            size=int(info.get("size") or 0),
        )

    def _field_of(self, path: str) -> str:
        """The declaration key a registry path came from, so that an error names what to fix."""
        if path == self.dataset_path:
            return "data.path"
        if fnmatch.fnmatchcase(path, self.batch_path.replace("{key}", "*")):
            return "data.batch_path"
        return "the path"

    @staticmethod
    def _files_at(fs: Any, shown: int = 20) -> str:
        """The data files a revision holds (git's and DVC's, dot files left out), for an error
        that must say where the data is when it is not where the declaration says."""
        try:
            found = [str(p).lstrip("/") for p in fs.find("/", detail=False)]
        except (OSError, ValueError) as exc:  # the listing is a hint; the error stands without it
            return f"files that could not be listed ({type(exc).__name__}: {exc})"
        files = [p for p in found if not any(part.startswith(".") for part in p.split("/"))]
        if not files:
            return "no data files"
        more = f" and {len(files) - shown} more" if len(files) > shown else ""
        return ", ".join(repr(p) for p in sorted(files)[:shown]) + more

    @contextmanager
    def open(
        self, key: str, path: str | None = None
    ) -> Iterator[tuple[ResolvedVersion, VerifiedStream]]:
        """The resolved version and a stream of its bytes, hashed as they are read.

        A caller that parses as it reads never holds the whole file (at 1M rows the CSV is as
        large as the frame made from it); ``VerifiedStream.verify`` then says whether the
        bytes were the ones DVC recorded, and must be called before anything read is used.

        A local registry whose file is in its own DVC cache is read without DVC
        (``_open_local``): importing DVC and asking its filesystem cost ~0.48 s before the
        first byte of every read, the demo's, the tests' and a deployment's with a clone.
        Whatever that cannot serve goes through DVC (``_open_through_dvc``), which answers
        or refuses as it always did; both give the same version and the same checked bytes.
        """
        validate_partition_key(key)
        path = path or self.dataset_path
        if not path:
            raise RegistryError(
                "No dataset path: declare data.path in the model declaration (or set "
                "resources.registry.config.dataset_path)."
            )
        rev = self._revision(key)
        resolved, handle = self._open_local(key, rev, path) or self._open_through_dvc(
            key, rev, path
        )
        try:
            yield (
                resolved,
                VerifiedStream(handle, resolved, lambda exc: self._not_stored(resolved, exc)),
            )
        finally:
            handle.close()

    def _open_through_dvc(self, key: str, rev: str, path: str) -> tuple[ResolvedVersion, Any]:
        """``path`` at ``rev`` resolved and opened by DVC, which fetches from the remote what
        the cache lacks and gives every error the registry is known for."""
        fs = self._filesystem(rev)
        resolved = self._resolve_with(fs, key, rev, path)
        try:
            handle = fs.open(path, "rb")
        except Exception as exc:
            if not means_not_stored(exc):
                raise
            raise self._not_stored(resolved, exc) from exc
        return resolved, handle

    def _open_local(self, key: str, rev: str, path: str) -> tuple[ResolvedVersion, BinaryIO] | None:
        """``path`` at ``rev`` resolved and opened as DVC would, with plain git and a file
        read, when the registry is a local git + DVC repository, the file's DVC 3 pointer is
        committed at that revision and its content is in the registry's own cache; None for
        anything else, which ``open`` leaves to DVC so that its answers and errors stay the
        ones it always gave. No answer is decided here, not even "no such file".

        The pointer is read at the revision's commit, never in the working tree, and the cache
        is content-addressed: the bytes are checked against the pointer's md5 as they are read,
        so a file served from here is the recorded data. A ``cache`` section in the registry's
        DVC config (a cache elsewhere, or shared) sends the read to DVC as well."""
        url = self.resolved_url()
        parts = path.split("/")
        if "\n" in path or "\\" in path or any(p in ("", ".", "..") for p in parts):
            return None  # DVC normalises such paths; git's <commit>:<path> would not
        answered, commit = self._local_commit_of(rev)
        if not answered or commit is None:
            return None
        folder = Path(url).resolve()
        for config in (folder / ".dvc" / "config", folder / ".dvc" / "config.local"):
            try:
                if _configures_cache(config.read_text(encoding="utf-8")):
                    return None
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError):
                return None
        blobs = self._committed_blobs(folder, commit, [f"{path}.dvc", ".dvc/config", ".dvcignore"])
        if blobs is None:
            return None
        pointer, committed_config, ignore = blobs
        if pointer is None or committed_config is None:
            return None  # not a DVC pointer (a dvc.yaml output, no file) or not a DVC repo
        if _configures_cache(committed_config.decode("utf-8", "replace")):
            return None
        if ignore is not None and any(
            line.strip() and not line.strip().startswith(b"#") for line in ignore.splitlines()
        ):
            return None  # .dvcignore could hide the pointer from DVC
        try:
            document = yaml.safe_load(pointer)
        except yaml.YAMLError:
            return None
        if not isinstance(document, dict) or set(document) != {"outs"}:
            return None
        outs = document["outs"]
        if not isinstance(outs, list) or len(outs) != 1 or not isinstance(outs[0], dict):
            return None
        out = outs[0]
        md5, size = out.get("md5"), out.get("size")
        if (
            not set(out) <= _PLAIN_OUT_KEYS
            or out.get("hash") != "md5"  # DVC 2 pointers hash differently, cache elsewhere
            or out.get("path") != parts[-1]
            or not isinstance(md5, str)
            or not _MD5.fullmatch(md5)  # a directory's md5 ends in .dir
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
        ):
            return None
        try:
            handle = (folder / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).open("rb")
        except OSError:
            return None  # not in the cache: DVC fetches it from the remote or says why not
        resolved = ResolvedVersion(
            key=key, registry=url, path=path, commit=commit, md5=md5, size=size
        )
        return resolved, handle

    @staticmethod
    def _committed_blobs(folder: Path, commit: str, names: list[str]) -> list[bytes | None] | None:
        """The content of each of ``names`` at ``commit`` (None where there is no such file),
        in one git call; None when git cannot say (no git, an error, a name that is a
        folder)."""
        request = "".join(f"{commit}:{name}\n" for name in names).encode()
        try:
            done = subprocess.run(
                ["git", "--no-replace-objects", "-C", str(folder), "cat-file", "--batch"],
                input=request, capture_output=True, env=_git_environment(folder), check=False,
            )  # fmt: skip
        except OSError:  # no git on PATH
            return None
        if done.returncode != 0:
            return None
        out, position, blobs = done.stdout, 0, list[bytes | None]()
        for name in names:
            end = out.find(b"\n", position)
            if end < 0:
                return None
            header = out[position:end]
            position = end + 1
            if header == f"{commit}:{name} missing".encode():
                blobs.append(None)
                continue
            found = _BLOB_HEADER.fullmatch(header)
            if found is None:
                return None  # a tree, an ambiguous name, an unexpected answer
            size = int(found.group(1))
            blobs.append(out[position : position + size])
            position += size + 1
        return blobs

    @staticmethod
    def _not_stored(resolved: ResolvedVersion, exc: Exception) -> RegistryError:
        return RegistryError(
            f"Data version {resolved.key!r}: the content of {resolved.path!r} (md5 "
            f"{resolved.md5}) is neither in the registry cache nor in its DVC remote: {exc}. "
            "Run `dvc push` in the registry for that revision."
        )

    def read(self, key: str, path: str | None = None) -> tuple[ResolvedVersion, bytes]:
        """Return the resolved version and its bytes, verified against the DVC md5."""
        with self.open(key, path) as (resolved, stream):
            raw = stream.read()
            stream.verify()
        return resolved, raw

    def versions(self) -> list[str]:
        """Data-version tags, oldest commit first."""
        return self._tags(self.version_pattern)

    def batches(self) -> list[str]:
        """Production-batch tags, oldest commit first."""
        return self._tags(self.batch_pattern)

    def read_batch(self, key: str) -> tuple[ResolvedVersion, bytes]:
        return self.read(key, self.batch_path.format(key=validate_partition_key(key)))

    def _tags(self, pattern: str) -> list[str]:
        from scmrepo.git import Git

        url = self.resolved_url()
        if not Path(url).is_dir():
            raise RegistryError(
                f"Listing tags needs a local clone of the registry; {url!r} is not a folder. "
                "Point LIFECYCLE_REGISTRY_URL at a clone kept current with `git fetch --tags` "
                "(reading pinned revisions works with a remote URL, listing does not yet)."
            )
        with Git(url) as scm:
            tags = [t for t in scm.list_tags() if fnmatch.fnmatchcase(t, pattern)]
            return sorted(tags, key=lambda t: (scm.resolve_commit(t).commit_time, t))
