"""The package's requirements as uv.lock resolves them: forks by Python, markers, extras, and
locks that cannot give a pinned, hashed environment (named, with what to do)."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

from lifecycle_pipeline.package.environment import LockError, Pin, check_installed, pins

REGISTRY = 'source = { registry = "https://pypi.org/simple" }'


def entry(name: str, version: str, *extra: str, sha: str = "aa") -> str:
    return "\n".join(
        [
            "[[package]]",
            f'name = "{name}"',
            f'version = "{version}"',
            REGISTRY,
            f'sdist = {{ url = "https://x/{name}-{version}.tar.gz", hash = "sha256:{sha}" }}',
            *extra,
            "",
        ]
    )


FORKED = "\n".join(
    [
        "version = 1",
        entry(
            "app",
            "1.0",
            "dependencies = [",
            '  { name = "lib", version = "1.0", marker = "python_full_version < \'3.12\'" },',
            '  { name = "lib", version = "2.0", marker = "python_full_version >= \'3.12\'" },',
            '  { name = "ancient", marker = "python_version < \'3.0\'" },',
            '  { name = "plugin", extra = ["fast"] },',
            "]",
        ),
        entry("lib", "1.0", "resolution-markers = [\"python_full_version < '3.12'\"]", sha="l1"),
        entry("lib", "2.0", "resolution-markers = [\"python_full_version >= '3.12'\"]", sha="l2"),
        entry("ancient", "0.1"),
        entry("plugin", "3.0", 'optional-dependencies.fast = [{ name = "speedup" }]'),
        entry("speedup", "4.0"),
    ]
)


def test_the_lock_is_resolved_for_this_interpreter_with_markers_and_extras() -> None:
    lib = ("1.0", "sha256:l1") if sys.version_info < (3, 12) else ("2.0", "sha256:l2")
    found = {pin.name: pin for pin in pins(FORKED.encode(), ["app"])}
    assert sorted(found) == ["app", "lib", "plugin", "speedup"]  # not 'ancient'
    assert (found["lib"].version, found["lib"].hashes) == (lib[0], (lib[1],))
    assert found["lib"].to_requirement() == f"lib=={lib[0]} \\\n    --hash={lib[1]}"


@pytest.mark.parametrize(
    ("lock", "message"),
    [
        (entry("app", "1.0"), "uv.lock holds no numpy, which the package's runtime needs"),
        (
            entry("numpy", "1.0").replace(REGISTRY, 'source = { git = "https://x/numpy" }'),
            "not a package index: pip cannot install it by hash",
        ),
        (
            entry("numpy", "1.0").replace(
                'sdist = { url = "https://x/numpy-1.0.tar.gz", hash = "sha256:aa" }', ""
            ),
            "uv.lock records no artifact hashes for numpy 1.0",
        ),
        ("not [ toml", "cannot be read as a uv lock"),
    ],
    ids=["missing", "git", "unhashed", "unreadable"],
)
def test_a_lock_that_cannot_pin_the_runtime_is_refused_by_name(lock: str, message: str) -> None:
    with pytest.raises(LockError, match=message):
        pins(lock.encode(), ["numpy"])


def test_an_environment_that_differs_from_the_pins_is_refused_naming_both_versions() -> None:
    installed = metadata.version("numpy")
    with pytest.raises(LockError, match=rf"numpy {installed} \(uv.lock: 0.0.1\)"):
        check_installed([Pin("numpy", "0.0.1", ("sha256:aa",), None)])
