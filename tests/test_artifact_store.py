"""The artifact store writes once, atomically, content-addressed, and detects tampering."""

from __future__ import annotations

import errno
import io
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.records import ArtifactRef, DataSnapshot, FileTree, ResolvedVersion
from lifecycle_pipeline.partitions import PartitionKeyError
from lifecycle_pipeline.resources import codecs
from lifecycle_pipeline.resources.artifact_store import (
    ArtifactIntegrityError,
    ArtifactStore,
    ArtifactWriteError,
)
from tests.conftest import SAMPLE_MODEL
from tests.reliability.cases import FOLDER_TAMPERING, Fault, case

# Assets are named by their key's path, under the model's name: the store writes each
# model's artifacts in its own folder (<root>/breast_cancer/data_snapshot/<partition>/...).
SNAPSHOT = SAMPLE_MODEL.asset("data_snapshot")
CARD = SAMPLE_MODEL.asset("model_card")


def snapshot(rows: int = 3) -> DataSnapshot:
    version = ResolvedVersion("data-v1", "reg", "data/x.csv", "c" * 40, "m" * 32, 10)
    return DataSnapshot(frame=pd.DataFrame({"a": range(rows)}, dtype="float64"), version=version)


def ref(uri: str, digest: str) -> ArtifactRef:
    return ArtifactRef(SNAPSHOT, "data-v1", uri, digest, "run")


def test_same_content_same_path_and_existing_file_untouched(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    payload = codecs.encode(snapshot())
    uri, digest = store.write(SNAPSHOT, "data-v1", payload)
    mtime = Path(uri).stat().st_mtime_ns
    assert store.write(SNAPSHOT, "data-v1", payload) == (uri, digest)
    assert Path(uri).stat().st_mtime_ns == mtime
    assert Path(uri) == tmp_path / "breast_cancer" / "data_snapshot" / "data-v1" / f"{digest}.zip"


def test_encoding_is_deterministic_and_content_sensitive() -> None:
    assert codecs.encode(snapshot()) == codecs.encode(snapshot())
    assert codecs.encode(snapshot(3)) != codecs.encode(snapshot(4))


def test_new_content_never_overwrites_earlier_versions(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    first, _ = store.write(SNAPSHOT, "data-v1", codecs.encode(snapshot(3)))
    before = Path(first).read_bytes()
    second, _ = store.write(SNAPSHOT, "data-v1", codecs.encode(snapshot(4)))
    assert first != second
    assert Path(first).read_bytes() == before
    assert not list(tmp_path.rglob(".tmp-*"))


def test_tampered_artifact_is_refused_naming_it(tmp_path: Path) -> None:
    fault = case("tampering", "artifact byte flipped")
    store = ArtifactStore(root=str(tmp_path))
    uri, digest = store.write(SNAPSHOT, "data-v1", codecs.encode(snapshot()))
    data = bytearray(Path(uri).read_bytes())
    data[-1] ^= 0xFF
    Path(uri).write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError) as error:
        store.read(ref(uri, digest))
    message = str(error.value)
    assert fault.shown_in(message), message
    assert f"{uri} has sha256 {sha256_bytes(bytes(data))} but {digest} was recorded" in message


def test_missing_artifact_is_reported(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(ArtifactIntegrityError, match="is missing"):
        store.read(ref(str(tmp_path / "gone.zip"), "0" * 64))


def test_tampered_part_inside_bundle_is_named() -> None:
    """A part rewritten with a valid zip CRC is still caught by the manifest digest."""
    fault = case("tampering", "bundle part rewritten")
    with zipfile.ZipFile(io.BytesIO(codecs.encode(snapshot()))) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    parts["version.json"] = parts["version.json"].replace(b"data-v1", b"data-v9")
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    with pytest.raises(codecs.ArtifactFormatError) as error:
        codecs.decode(forged.getvalue(), source="bundle.zip")
    assert fault.shown_in(str(error.value)), error.value


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upath import UPath

    fault = case("crash", "failed rename")

    def broken_rename(self: UPath, target: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a full disk fails it

    monkeypatch.setattr(type(UPath(tmp_path)), "rename", broken_rename)
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(ArtifactWriteError) as error:
        store.write(SNAPSHOT, "data-v1", codecs.encode(snapshot()))
    assert isinstance(error.value.__cause__, OSError)
    assert error.value.__cause__.errno == errno.ENOSPC
    assert fault.shown_in(str(error.value)), error.value
    assert str(error.value).startswith(f"Artifact {SNAPSHOT}/data-v1 could not be written to ")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def big_snapshot(rows: int = 200_000) -> DataSnapshot:
    import numpy as np

    generator = np.random.default_rng(7)
    frame = pd.DataFrame({f"x{i}": generator.normal(size=rows) for i in range(4)})
    return DataSnapshot(frame=frame, version=snapshot().version)


class _Recording(io.BytesIO):
    """A file that remembers the size of every write it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, data: object) -> int:
        count = super().write(data)  # type: ignore[arg-type]
        self.writes.append(count)
        return count


def test_frames_stream_into_the_bundle_and_the_bundle_is_the_in_memory_encoding() -> None:
    """A 6.4 MB frame reaches the file in pieces (its Parquet part is never assembled in a
    buffer first, then copied), and the file holds exactly ``encode``'s bytes."""
    value = big_snapshot()
    handle = _Recording()
    digest, size = codecs.encode_to(value, handle)
    part = zipfile.ZipFile(io.BytesIO(handle.getvalue())).getinfo("frame.parquet").file_size
    assert part > 2_000_000
    assert max(handle.writes) < part / 2, (max(handle.writes), part)
    assert handle.getvalue() == bytes(codecs.encode(value))
    assert (digest, size) == (sha256_bytes(handle.getvalue()), len(handle.getvalue()))
    loaded = codecs.decode(handle.getvalue(), source="bundle.zip")
    pd.testing.assert_frame_equal(loaded.frame, value.frame, check_exact=True)


def test_write_value_is_write_of_the_encoding_and_leaves_an_existing_artifact_alone(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(root=str(tmp_path))
    uri, digest, size = store.write_value(SNAPSHOT, "data-v1", snapshot())
    assert (uri, digest) == store.write(SNAPSHOT, "data-v1", codecs.encode(snapshot()))
    assert size == Path(uri).stat().st_size
    mtime = Path(uri).stat().st_mtime_ns
    assert store.write_value(SNAPSHOT, "data-v1", snapshot()) == (uri, digest, size)
    assert Path(uri).stat().st_mtime_ns == mtime
    assert [p.name for p in Path(uri).parent.iterdir()] == [Path(uri).name]


def test_a_failed_streamed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upath import UPath

    def broken_rename(self: UPath, target: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(type(UPath(tmp_path)), "rename", broken_rename)
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(ArtifactWriteError, match=f"Artifact {SNAPSHOT}/data-v1 could not be"):
        store.write_value(SNAPSHOT, "data-v1", snapshot())
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    with pytest.raises(codecs.ArtifactFormatError, match="No artifact format for dict"):
        ArtifactStore(root=str(tmp_path)).write_value(SNAPSHOT, "data-v1", {})
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_bundles_written_before_streaming_still_load() -> None:
    """Artifacts recorded by earlier code (manifest first, parts written whole) are read."""
    value = snapshot()
    parts = {
        "version.json": codecs._json_bytes(value.version.to_dict()),
        "frame.parquet": value.frame.to_parquet(index=False, compression="zstd"),
    }
    manifest = {
        "kind": "data_snapshot",
        "format_version": codecs.FORMAT_VERSION,
        "parts": {name: sha256_bytes(data) for name, data in sorted(parts.items())},
    }
    old = io.BytesIO()
    with zipfile.ZipFile(old, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in [("manifest.json", codecs._json_bytes(manifest)), *sorted(parts.items())]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    loaded = codecs.decode(old.getvalue(), source="old.zip")
    pd.testing.assert_frame_equal(loaded.frame, value.frame, check_exact=True)
    assert loaded.version == value.version


def test_partition_key_is_validated_before_it_becomes_a_path(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(PartitionKeyError):
        store.write(SNAPSHOT, "../escape", b"x")
    assert not (tmp_path.parent / "escape").exists()


def test_round_trip_through_a_non_local_filesystem() -> None:
    store = ArtifactStore(root="memory://lifecycle-test/artifacts")
    payload = codecs.encode(snapshot())
    uri, digest = store.write(SNAPSHOT, "data-v1", payload)
    assert uri.startswith("memory://")
    loaded = codecs.decode(store.read(ref(uri, digest)), source=uri)
    pd.testing.assert_frame_equal(loaded.frame, snapshot().frame)


def tree() -> FileTree:
    return FileTree(
        kind="documentation_bundle", files={"card.md": b"# card\n", "card.html": b"<h1>"}
    )


def test_folder_artifact_is_written_once_with_an_archive(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    folder, archive, digest = store.write_tree(CARD, "data-v1", tree())
    assert Path(folder).relative_to(tmp_path).parts[:3] == (
        "breast_cancer",
        "model_card",
        "data-v1",
    )
    assert sorted(p.name for p in Path(folder).iterdir()) == ["card.html", "card.md"]
    assert Path(archive).name == f"{digest}.zip"
    assert store.write_tree(CARD, "data-v1", tree()) == (folder, archive, digest)
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.parametrize("fault", FOLDER_TAMPERING, ids=[f.name for f in FOLDER_TAMPERING])
def test_tampered_folder_artifact_names_the_file(tmp_path: Path, fault: Fault) -> None:
    store = ArtifactStore(root=str(tmp_path))
    folder, _, digest = store.write_tree(CARD, "data-v1", tree())
    listing = {name: sha256_bytes(data) for name, data in tree().files.items()}
    fault.value(Path(folder))
    with pytest.raises(ArtifactIntegrityError) as error:
        store.read_tree(ref(folder, digest), "documentation_bundle", listing)
    assert fault.shown_in(str(error.value)), error.value
    assert folder in str(error.value)


def test_folder_artifact_round_trips_through_a_non_local_filesystem() -> None:
    store = ArtifactStore(root="memory://lifecycle-test/trees")
    folder, _, digest = store.write_tree(CARD, "data-v1", tree())
    listing = {name: sha256_bytes(data) for name, data in tree().files.items()}
    assert (
        store.read_tree(ref(folder, digest), "documentation_bundle", listing).files == tree().files
    )
