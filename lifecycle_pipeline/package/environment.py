"""The package's runtime environment, picked out of the project's uv.lock.

The project lock pins ~270 distributions for every supported Python (numpy and scipy at two
versions each, chosen by Python version); predict.py needs a dozen of them. A user installs
``requirements.txt``: exactly the distributions predict.py and the model's types import, and
everything those depend on, at the versions and with the artifact hashes the lock holds for the
interpreter the package is built with (which has just reproduced training's golden digest).
"""

from __future__ import annotations

import functools
import platform
import re
import sys
import sysconfig
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from packaging.markers import Marker
from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.package import runtime

REQUIREMENTS_FILE = runtime.REQUIREMENTS_FILE
# Top-level modules of the runtime's distributions and their dependencies that a model's
# types come from (scikit-learn is imported as sklearn).
RUNTIME_MODULES = {
    "joblib": "joblib", "numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow",
    "scipy": "scipy", "skops": "skops", "sklearn": "scikit-learn",
    "threadpoolctl": "threadpoolctl",
}  # fmt: skip


class LockError(LifecycleError, ValueError):
    """The lock cannot give the package a complete, pinned and hashed runtime environment."""


@dataclass(frozen=True)
class Pin:
    """One distribution of the runtime environment, as the lock holds it."""

    name: str
    version: str
    hashes: tuple[str, ...]  # sha256:..., of every wheel and the sdist the lock lists
    wheel: str | None  # the wheel pip picks for this interpreter; None: built from the sdist

    def to_requirement(self) -> str:
        lines = [f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)]
        return " \\\n    ".join(lines)


def normalized(name: str) -> str:
    """A distribution name as the lock and PEP 503 spell it (``Scikit_Learn`` -> scikit-learn)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def model_distributions(type_names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Distributions providing the modules of the model's types, and modules no
    distribution of this environment provides (a team's own module must travel beside
    the package; requirements cannot carry it)."""
    providers: Mapping[str, list[str]] = {}
    found: set[str] = set()
    unprovided: set[str] = set()
    for type_name in type_names:
        top = type_name.split(".", 1)[0]
        if top in sys.stdlib_module_names:
            continue
        if top in RUNTIME_MODULES:
            found.add(RUNTIME_MODULES[top])
            continue
        # Reading every installed distribution's file list takes ~0.3 s: only for a type
        # from outside the runtime's own libraries (a team's estimator, xgboost).
        providers = providers or metadata.packages_distributions()
        names = providers.get(top)
        if names:
            found.update(normalized(n) for n in names)
        else:
            unprovided.add(top)
    return sorted(found), sorted(unprovided)


def _applies(marker: str | None, extra: str = "") -> bool:
    return marker is None or Marker(marker).evaluate({"extra": extra})


def _select(entries: list[dict[str, Any]], name: str, version: str | None) -> dict[str, Any]:
    """The lock's entry for ``name``: the pinned ``version``, else the one whose resolution
    markers hold for this interpreter (the lock forks numpy and scipy by Python version)."""
    if version is not None:
        entries = [e for e in entries if e["version"] == version]
    if len(entries) > 1:
        entries = [e for e in entries if any(_applies(m) for m in e.get("resolution-markers", []))]
    if len(entries) != 1:
        found = f"{len(entries)} matching entries" if entries else "no entry"
        raise LockError(
            f"uv.lock has {found} for {name}{'==' + version if version else ''} on Python "
            f"{platform.python_version()}; re-lock the project (uv lock) before packaging."
        )
    return entries[0]


def _hashes(entry: dict[str, Any]) -> tuple[str, ...]:
    if "registry" not in entry.get("source", {}):
        raise LockError(
            f"uv.lock takes {entry['name']} {entry['version']} from {entry.get('source')}, not a "
            "package index: pip cannot install it by hash. Depend on a released version."
        )
    hashes = sorted(artifact_hashes(entry))
    if not hashes:
        raise LockError(
            f"uv.lock records no artifact hashes for {entry['name']} {entry['version']}; "
            "re-lock the project with uv so pip can install it in hash-checking mode."
        )
    return tuple(hashes)


def _wheel(entry: dict[str, Any], priority: dict[str, int]) -> str | None:
    """The lock's wheel this interpreter prefers (pip's choice), by the order of its tags."""
    best: tuple[int, str] | None = None
    for wheel in entry.get("wheels", []):
        filename = wheel["url"].rsplit("/", 1)[-1]
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            continue
        ranks = [priority[str(t)] for t in tags if str(t) in priority]
        if ranks and (best is None or min(ranks) < best[0]):
            best = (min(ranks), filename)
    return best[1] if best else None


@functools.lru_cache(maxsize=2)
def locked_packages(lock: bytes) -> tuple[dict[str, Any], ...]:
    """The lock's package entries, parsed once per process (~0.2 s: building and verifying
    a package both read the same lock)."""
    try:
        return tuple(tomllib.loads(lock.decode("utf-8"))["package"])
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise LockError(
            f"the project's uv.lock cannot be read as a uv lock ({exc}); the package's "
            "requirements are taken from it. Restore it (git checkout uv.lock) or re-lock."
        ) from exc


def artifact_hashes(entry: dict[str, Any]) -> set[str]:
    """Every hash the lock records for one entry: its wheels' and its sdist's."""
    artifacts = [*entry.get("wheels", []), *([entry["sdist"]] if "sdist" in entry else [])]
    return {a["hash"] for a in artifacts if "hash" in a}


def pins(lock: bytes, roots: Iterable[str]) -> list[Pin]:
    """``roots`` and their dependencies, as the lock resolves them for this interpreter."""
    packages = locked_packages(lock)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in packages:
        by_name.setdefault(entry["name"], []).append(entry)
    chosen: dict[str, dict[str, Any]] = {}
    queue: list[tuple[str, str | None, tuple[str, ...]]] = [
        (normalized(r), None, ()) for r in roots
    ]
    while queue:
        name, version, extras = queue.pop()
        if name not in by_name:
            raise LockError(
                f"uv.lock holds no {name}, which the package's runtime needs; add it to the "
                "project's dependencies and re-lock."
            )
        entry = chosen.get(name) or _select(by_name[name], name, version)
        if name in chosen and not extras:
            continue
        chosen[name] = entry
        dependencies = list(entry.get("dependencies", []))
        for extra in extras:
            dependencies += entry.get("optional-dependencies", {}).get(extra, [])
        for dependency in dependencies:
            if _applies(dependency.get("marker")):
                queue.append(
                    (
                        dependency["name"],
                        dependency.get("version"),
                        tuple(dependency.get("extra", ())),
                    )
                )
    priority = {str(tag): rank for rank, tag in enumerate(sys_tags())}
    return [
        Pin(n, chosen[n]["version"], _hashes(chosen[n]), _wheel(chosen[n], priority))
        for n in sorted(chosen)
    ]


def check_installed(required: list[Pin]) -> None:
    """The interpreter building the package must hold exactly the pins it ships: its golden
    digest is the evidence that these versions reproduce training."""
    differing = []
    for pin in required:
        try:
            installed = metadata.version(pin.name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != pin.version:
            differing.append(f"{pin.name} {installed} (uv.lock: {pin.version})")
    if differing:
        raise LockError(
            f"this environment holds {', '.join(differing)}; the package would promise versions "
            "its golden outputs were not computed with. Sync it to the lock (uv sync --frozen) "
            "and package again."
        )


def interpreter() -> dict[str, str]:
    """The Python and platform the package's golden outputs were reproduced on."""
    version = platform.python_version_tuple()
    return {
        "python": platform.python_version(),
        "python_requires": f"=={version[0]}.{version[1]}.*",
        "implementation": platform.python_implementation(),
        "platform": sysconfig.get_platform(),
    }


def wheel_platforms(required: list[Pin]) -> list[str]:
    """The binary platforms of the wheels pip picks here (pure-Python wheels excluded)."""
    platforms = {
        tag.platform
        for pin in required
        if pin.wheel
        for tag in parse_wheel_filename(pin.wheel)[3]
        if tag.platform != "any"
    }
    return sorted(platforms)


def requirements_text(required: list[Pin], lock_sha256: str, python: dict[str, str]) -> bytes:
    header = [
        "# The runtime environment of this package's predict.py, and nothing else: every",
        "# distribution it and its model import, pinned as the project's uv.lock",
        f"# (sha256 {lock_sha256}) resolves them for {python['implementation']} "
        f"{python['python']} on {python['platform']}.",
        f"# Requires Python {python['python_requires']}; the lock pins other versions for "
        "other Pythons.",
        f"# python{'.'.join(python['python'].split('.')[:2])} -m venv ENV && "
        f"ENV/bin/pip install --require-hashes -r {REQUIREMENTS_FILE}",
    ]
    body = [pin.to_requirement() for pin in required]
    return ("\n".join(header + body) + "\n").encode("utf-8")
