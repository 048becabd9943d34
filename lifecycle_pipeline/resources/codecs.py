"""File formats of lifecycle artifacts: a deterministic zip of JSON, Parquet and skops parts.

No pickle anywhere: frames are Parquet, models are skops loaded with an explicit list of
trusted types, everything else is JSON. Each bundle carries a manifest with the SHA-256 of
every part, checked on load, so a tampered part is named rather than silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from lifecycle_pipeline.arrow_memory import use_system_allocator
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.fingerprint import ModelFingerprint
from lifecycle_pipeline.lineage.hashing import sha256_bytes
from lifecycle_pipeline.lineage.records import (
    DataSnapshot,
    EvaluationReport,
    FeatureSet,
    GateVerdict,
    ResolvedVersion,
    TrainedModel,
)

use_system_allocator()

FORMAT_VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

# Types a model artifact recorded before declarations listed them may contain beyond skops'
# defaults (the sample's forests). Newer artifacts carry their declaration's reviewed list.
LEGACY_TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


# A bundle and its Parquet parts travel as views of one buffer, never as copies.
Buffer = bytes | memoryview


class ArtifactFormatError(LifecycleError, ValueError):
    """An artifact's bytes do not form a valid, untampered bundle."""


class FramePart:
    """A frame to be stored as a zstd Parquet part, written straight into the bundle.

    Written as ``frame.to_parquet(index=False, compression="zstd")`` would (the same calls),
    but into the bundle's own stream. The Parquet bytes used to be assembled in an Arrow
    buffer, which grows by doubling and reallocates by copying, and then copied into the
    bundle: encoding a 236 MiB frame of 1M rows added 225 MiB, the bundle's copy on top;
    streamed, 75 MiB. Arrow converts float columns without copying them.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def write_to(self, sink: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        pq.write_table(table, sink, compression="zstd")


# What a codec gives for each part: bytes, or a frame streamed into the bundle as Parquet.
Part = Buffer | FramePart


def _frame(data: Buffer) -> pd.DataFrame:
    """The frame ``pd.read_parquet`` gives, read from the bundle's bytes in place, each Arrow
    column released as soon as pandas holds it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(pa.py_buffer(data)))
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()  # the columns' Arrow memory, back to the system
    return frame


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=1, allow_nan=False).encode("utf-8")


def dump_model(pipeline: Any) -> bytes:
    import skops.io as sio

    return bytes(sio.dumps(pipeline))


def load_model(
    data: bytes, *, source: str, trusted: tuple[str, ...] | list[str] = LEGACY_TRUSTED_TYPES
) -> Any:
    """Load a skops model, refusing any type outside skops' defaults and ``trusted``.

    ``loads`` audits every type against that list before it constructs anything; only a
    refusal pays for a second walk (``get_untrusted_types``) to name the types in the error.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return sio.loads(data, trusted=list(trusted))
    except UntrustedTypesFoundException as exc:
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in trusted]
        raise ArtifactFormatError(
            f"{source}: model contains untrusted type(s) {untrusted}; refusing to load. If the "
            "type is genuinely needed, review it and add it to the model declaration's "
            "estimator.trusted_types."
        ) from exc


def trusted_types(lineage: dict[str, Any]) -> list[str]:
    """The reviewed types a model's lineage records it contains (checked when it was trained)."""
    recorded = (lineage.get("estimator") or {}).get("trusted_types")
    return list(LEGACY_TRUSTED_TYPES if recorded is None else recorded)


def _snapshot_parts(value: DataSnapshot) -> dict[str, Part]:
    return {
        "version.json": _json_bytes(value.version.to_dict()),
        "frame.parquet": FramePart(value.frame),
    }


def _snapshot(parts: dict[str, Buffer], source: str) -> DataSnapshot:
    del source
    return DataSnapshot(
        frame=_frame(parts["frame.parquet"]),
        version=ResolvedVersion.from_dict(json.loads(bytes(parts["version.json"]))),
    )


def _features_parts(value: FeatureSet) -> dict[str, Part]:
    meta = {
        "feature_columns": list(value.feature_columns),
        "target": value.target,
        "seed": value.seed,
        "test_size": value.test_size,
        "data_md5": value.data_md5,
    }
    return {
        "features.json": _json_bytes(meta),
        "train.parquet": FramePart(value.train),
        "test.parquet": FramePart(value.test),
    }


def _features(parts: dict[str, Buffer], source: str) -> FeatureSet:
    del source
    meta = json.loads(bytes(parts["features.json"]))
    return FeatureSet(
        train=_frame(parts["train.parquet"]),
        test=_frame(parts["test.parquet"]),
        feature_columns=tuple(meta["feature_columns"]),
        target=meta["target"],
        seed=int(meta["seed"]),
        test_size=float(meta["test_size"]),
        data_md5=meta["data_md5"],
    )


def _model_parts(value: TrainedModel) -> dict[str, Part]:
    meta = {"fingerprint": value.fingerprint.to_dict(), "lineage": value.lineage}
    return {
        "model.json": _json_bytes(meta),
        "model.skops": value.skops_bytes(),
        "golden_inputs.parquet": FramePart(value.golden_inputs),
    }


def _model(parts: dict[str, Buffer], source: str) -> TrainedModel:
    meta = json.loads(bytes(parts["model.json"]))
    skops = bytes(parts["model.skops"])
    return TrainedModel(
        pipeline=load_model(
            skops, source=f"{source}:model.skops", trusted=trusted_types(meta["lineage"])
        ),
        golden_inputs=_frame(parts["golden_inputs.parquet"]),
        fingerprint=ModelFingerprint.from_dict(meta["fingerprint"]),
        lineage=meta["lineage"],
        skops=skops,
    )


def _evaluation_parts(value: EvaluationReport) -> dict[str, Part]:
    meta = {
        "metrics": value.metrics,
        "slices": value.slices,
        "gates": [g.to_dict() for g in value.gates],
        "model_fingerprint": value.model_fingerprint,
        "decision_threshold": value.decision_threshold,
    }
    return {
        "evaluation.json": _json_bytes(meta),
        "predictions.parquet": FramePart(value.predictions),
    }


def _evaluation(parts: dict[str, Buffer], source: str) -> EvaluationReport:
    del source
    meta = json.loads(bytes(parts["evaluation.json"]))
    return EvaluationReport(
        metrics=meta["metrics"],
        slices=meta["slices"],
        gates=tuple(GateVerdict.from_dict(g) for g in meta["gates"]),
        predictions=_frame(parts["predictions.parquet"]),
        model_fingerprint=meta["model_fingerprint"],
        decision_threshold=None
        if meta["decision_threshold"] is None
        else float(meta["decision_threshold"]),
    )


_CODECS: dict[
    str, tuple[type, Callable[[Any], dict[str, Part]], Callable[[dict[str, Buffer], str], Any]]
] = {
    "data_snapshot": (DataSnapshot, _snapshot_parts, _snapshot),
    "feature_set": (FeatureSet, _features_parts, _features),
    "trained_model": (TrainedModel, _model_parts, _model),
    "evaluation_report": (EvaluationReport, _evaluation_parts, _evaluation),
}


class _Digesting(io.RawIOBase):
    """A write-only, unseekable stream that hashes what passes through it to ``handle``
    (closing it leaves ``handle`` open: Arrow closes the stream it wrote a part into).

    Unseekable on purpose: ``zipfile`` then streams each entry followed by a data descriptor
    (its CRC and sizes) instead of seeking back to patch its header, so every byte is final
    when written, and the bundle's digest is known the moment it is complete."""

    def __init__(self, handle: Any) -> None:
        super().__init__()
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._handle.write(data)
        self._digest.update(data)
        count = memoryview(data).nbytes
        self.size += count
        return count

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self._handle.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def encode_to(value: Any, handle: Any) -> tuple[str, int]:
    """Write a value object's deterministic zip bundle into a binary ``handle``, frame parts
    streamed as Parquet; return the bundle's sha256 and size.

    The manifest (every part's sha256) is the last entry, written once the parts are; a
    reader finds entries by name. Entries carry Zip64 fields, so a part may exceed 4 GiB.
    """
    kind = next((k for k, (cls, _, _) in _CODECS.items() if isinstance(value, cls)), None)
    if kind is None:
        raise ArtifactFormatError(
            f"No artifact format for {type(value).__name__}; add a codec in resources/codecs.py."
        )
    parts = _CODECS[kind][1](value)
    sink = _Digesting(handle)
    digests: dict[str, str] = {}
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, part in sorted(parts.items()):
            with archive.open(_entry(name), "w", force_zip64=True) as entry:
                part_sink = _Digesting(entry)
                if isinstance(part, FramePart):
                    part.write_to(part_sink)
                else:
                    part_sink.write(part)
            digests[name] = part_sink.hexdigest()
        manifest = {"kind": kind, "format_version": FORMAT_VERSION, "parts": digests}
        with archive.open(_entry("manifest.json"), "w", force_zip64=True) as entry:
            entry.write(_json_bytes(manifest))
    return sink.hexdigest(), sink.size


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.external_attr = 0o644 << 16
    return info


def encode(value: Any) -> Buffer:
    """A value object's bundle in memory (``encode_to`` into a buffer: the same bytes)."""
    buffer = io.BytesIO()
    encode_to(value, buffer)
    return buffer.getbuffer()  # the bundle itself, not a copy of it


def tree_digest(files: Mapping[str, Buffer]) -> str:
    """Digest of a folder: its file names and contents (an added or removed file changes it)."""
    listing = {name: sha256_bytes(data) for name, data in files.items()}
    return sha256_bytes(json.dumps(listing, sort_keys=True, separators=(",", ":")).encode())


def tree_archive(files: Mapping[str, Buffer]) -> bytes:
    """A deterministic zip of a folder artifact (fixed timestamps, sorted names)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


def _parts(data: Buffer) -> dict[str, Buffer]:
    """Each file of a bundle. Bundles are stored, not compressed, so a part is a view of the
    bundle's own bytes (its digest is checked against the manifest before it is parsed);
    anything compressed is read the ordinary way."""
    view = memoryview(data)
    parts: dict[str, Buffer] = {}
    with zipfile.ZipFile(io.BytesIO(view)) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                parts[info.filename] = archive.read(info)
                continue
            header = bytes(view[info.header_offset : info.header_offset + 30])
            if header[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"no local header for {info.filename!r}")
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            part = view[start : start + info.file_size]
            # Parquet parts (the frames) stay views; the small JSON and model parts are bytes.
            parts[info.filename] = part if info.filename.endswith(".parquet") else bytes(part)
    return parts


def decode(data: Buffer, *, source: str) -> Any:
    """Load a bundle, verifying every part against the manifest before parsing it."""
    try:
        parts = _parts(data)
    except (zipfile.BadZipFile, KeyError, OSError, struct.error) as exc:
        raise ArtifactFormatError(f"{source}: not a readable artifact bundle ({exc}).") from exc
    try:
        manifest = json.loads(bytes(parts.pop("manifest.json")))
        kind = manifest["kind"]
        expected = manifest["parts"]
    except (KeyError, ValueError) as exc:
        raise ArtifactFormatError(f"{source}: bundle has no valid manifest.json ({exc}).") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactFormatError(
            f"{source}: format_version {manifest.get('format_version')!r}, "
            f"this code reads {FORMAT_VERSION}."
        )
    if set(parts) != set(expected):
        raise ArtifactFormatError(
            f"{source}: parts {sorted(parts)} differ from the manifest's {sorted(expected)}."
        )
    for name, digest in expected.items():
        if sha256_bytes(parts[name]) != digest:
            raise ArtifactFormatError(
                f"{source}: part {name!r} does not match its manifest digest."
            )
    if kind not in _CODECS:
        raise ArtifactFormatError(f"{source}: unknown artifact kind {kind!r}.")
    return _CODECS[kind][2](parts, source)
