"""The registry says "not stored" only for what means it: a file or remote that cannot be read.

A ``TypeError`` (a defect in this code or a library's changed API) or a ``MemoryError`` is not a
missing object: turned into ``RegistryError`` it exited 2 ("refused: run dvc push") and sent an
operator to push data that was there. It must reach the CLI as itself (exit 3, traceback).
"""

from __future__ import annotations

from typing import Any

import pytest

from lifecycle_pipeline.lineage.records import ResolvedVersion
from lifecycle_pipeline.resources.registry import DataRegistry, RegistryError, VerifiedStream
from tests.reliability.cases import case

RESOLVED = ResolvedVersion(
    key="data-v1",
    registry="/nowhere",
    path="data/breast_cancer.csv",
    commit="0" * 40,
    md5="d41d8cd98f00b204e9800998ecf8427e",
    size=0,
)


class _Failing:
    """A file handle (or filesystem) whose every read (or open) raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def read(self, size: int = -1) -> bytes:
        raise self.error

    def open(self, path: str, mode: str) -> Any:
        raise self.error

    def close(self) -> None:
        pass


def _not_stored(exc: Exception) -> RegistryError:
    return DataRegistry._not_stored(RESOLVED, exc)


@pytest.mark.parametrize(
    "error", [TypeError("read() got an unexpected keyword"), MemoryError()], ids=type
)
def test_a_defect_while_reading_is_not_called_not_stored(error: BaseException) -> None:
    fault = case("registry reference", "defect while reading")
    stream = VerifiedStream(_Failing(error), RESOLVED, _not_stored)
    with pytest.raises(type(error)) as raised:
        stream.read()
    assert not isinstance(raised.value, RegistryError)
    assert fault.shown_in(f"{type(raised.value).__name__} raised as itself, not RegistryError")


@pytest.mark.parametrize(
    "error", [TypeError("open() got an unexpected keyword"), MemoryError()], ids=type
)
def test_a_defect_while_opening_is_not_called_not_stored(
    error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = DataRegistry(url="/nowhere", dataset_path=RESOLVED.path)
    monkeypatch.setattr(DataRegistry, "_filesystem", lambda self, rev: _Failing(error))
    monkeypatch.setattr(DataRegistry, "_resolve_with", lambda self, fs, k, r, p: RESOLVED)
    with pytest.raises(type(error)):
        registry._open_through_dvc("data-v1", "0" * 40, RESOLVED.path)


@pytest.mark.parametrize(
    "error", [FileNotFoundError("cache file gone"), ConnectionError("remote reset")], ids=type
)
def test_a_file_that_cannot_be_read_is_not_stored(
    error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = VerifiedStream(_Failing(error), RESOLVED, _not_stored)
    with pytest.raises(RegistryError, match="neither in the registry cache nor in its DVC"):
        stream.read()
    registry = DataRegistry(url="/nowhere", dataset_path=RESOLVED.path)
    monkeypatch.setattr(DataRegistry, "_filesystem", lambda self, rev: _Failing(error))
    monkeypatch.setattr(DataRegistry, "_resolve_with", lambda self, fs, k, r, p: RESOLVED)
    with pytest.raises(RegistryError, match="Run `dvc push`"):
        registry._open_through_dvc("data-v1", "0" * 40, RESOLVED.path)
