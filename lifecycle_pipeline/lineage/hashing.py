"""Canonical hashes: the same value gives the same digest in any process on any machine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where frames are hashed: the audit log and `lifecycle status`
    import pandas as pd  # hash bytes and JSON only, and start faster without pandas


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys, no whitespace and no NaN, so equal values serialize equally."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def json_hash(value: Any) -> str:
    return sha256_bytes(canonical_json(value))


def frame_hash(frame: pd.DataFrame) -> str:
    """Order-sensitive digest of a frame's rows, columns and values (not of a file format).

    pandas' row hashing uses a fixed key, so the digest is stable across processes; column
    names and dtypes are folded in so that a renamed or re-typed column changes it.
    """
    digest = hashlib.sha256()
    digest.update(canonical_json([[str(c), str(t)] for c, t in frame.dtypes.items()]))
    import pandas as pd

    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(rows.astype("<u8").tobytes())
    return digest.hexdigest()


def combine(parts: Iterable[str]) -> str:
    """One digest over an ordered sequence of digests."""
    return sha256_bytes("\n".join(parts).encode("ascii"))
