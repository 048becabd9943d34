"""Model fingerprints that are stable across processes and machines with the same lock.

Serialized model bytes are not stable (skops archives carry timestamps; scikit-learn tree
node records contain uninitialised struct padding), so the fingerprint is built from two
things that are: a canonical walk of the fitted state, hashing each numeric array by dtype,
shape and value (structured arrays field by field, which drops padding), and a digest of
``predict_proba`` on a fixed set of golden inputs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lifecycle_pipeline.lineage.hashing import combine


class FingerprintError(TypeError):
    """The fitted state holds a value the canonical walk cannot hash deterministically."""


@dataclass(frozen=True)
class ModelFingerprint:
    state: str
    predictions: str

    @property
    def combined(self) -> str:
        return combine([self.state, self.predictions])

    def to_dict(self) -> dict[str, str]:
        return {"state": self.state, "predictions": self.predictions, "combined": self.combined}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ModelFingerprint:
        return cls(state=data["state"], predictions=data["predictions"])


def _tag(digest: Any, name: str) -> None:
    digest.update(b"<" + name.encode() + b">")


def _feed_array(digest: Any, array: np.ndarray, path: str) -> None:
    if array.dtype.names:
        _tag(digest, f"struct{array.shape}")
        for name in array.dtype.names:
            _tag(digest, name)
            _feed_array(digest, np.ascontiguousarray(array[name]), f"{path}.{name}")
        return
    if array.dtype == object:
        _tag(digest, f"objects{array.shape}")
        for index, item in enumerate(array.ravel()):
            _feed(digest, item, f"{path}[{index}]")
        return
    canonical = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    _tag(digest, f"array:{canonical.dtype.str}:{array.shape}")
    digest.update(canonical.tobytes())


def _feed(digest: Any, value: Any, path: str) -> None:
    if value is None:
        _tag(digest, "none")
    elif isinstance(value, bool | np.bool_):
        _tag(digest, f"bool:{bool(value)}")
    elif isinstance(value, int | np.integer):
        _tag(digest, f"int:{int(value)}")
    elif isinstance(value, float | np.floating):
        digest.update(b"<float>" + struct.pack("<d", float(value)))
    elif isinstance(value, str):
        _tag(digest, "str")
        digest.update(value.encode("utf-8"))
    elif isinstance(value, bytes):
        _tag(digest, "bytes")
        digest.update(value)
    elif isinstance(value, np.ndarray):
        _feed_array(digest, value, path)
    elif isinstance(value, list | tuple):
        _tag(digest, f"{type(value).__name__}:{len(value)}")
        for index, item in enumerate(value):
            _feed(digest, item, f"{path}[{index}]")
    elif isinstance(value, dict):
        _tag(digest, f"dict:{len(value)}")
        for key in sorted(value, key=str):
            _feed(digest, str(key), path)
            _feed(digest, value[key], f"{path}.{key}")
    elif isinstance(value, type):
        _tag(digest, f"type:{value.__module__}.{value.__qualname__}")
    elif isinstance(value, slice):  # ColumnTransformer.output_indices_
        _tag(digest, f"slice:{value.start}:{value.stop}:{value.step}")
    elif isinstance(value, np.dtype):
        _tag(digest, f"dtype:{value.str}")
    else:
        state = _object_state(value, path)
        _tag(digest, f"object:{type(value).__module__}.{type(value).__qualname__}")
        _feed(digest, state, path)


def _object_state(value: Any, path: str) -> Any:
    """The state an object would be pickled with, which is what defines it.

    Estimators expose a dict via ``__getstate__``; numpy generators their bit generator's
    state; compiled (Cython) objects such as trees, KD-trees and loss functions the arguments
    and state of ``__reduce_ex__``, the same data pickle and skops store; a stateless object
    (a link function) nothing beyond its type, which the caller has already hashed.
    """
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    if isinstance(value, np.random.RandomState):
        return list(value.get_state(legacy=True))
    if hasattr(value, "__reduce__") and type(value).__module__.startswith("sklearn.tree"):
        reduced = value.__reduce__()
        if isinstance(reduced, tuple) and len(reduced) >= 3:
            return [list(reduced[1]), reduced[2]]
    getstate = getattr(value, "__getstate__", None)
    state = getstate() if getstate is not None else None
    if isinstance(state, dict):
        return state
    try:
        reduced = value.__reduce_ex__(4)
    except (TypeError, ValueError):
        reduced = None
    if isinstance(reduced, tuple) and len(reduced) >= 2:
        constructor = reduced[0]
        name = getattr(constructor, "__qualname__", type(constructor).__name__)
        args = list(reduced[1]) if isinstance(reduced[1], tuple) else [reduced[1]]
        rest = reduced[2] if len(reduced) >= 3 else None
        if args == [type(value)] and rest is None:  # no state at all: the type is everything
            return {}
        return [name, args, rest]
    raise FingerprintError(
        f"Cannot fingerprint {type(value).__module__}.{type(value).__qualname__} at {path}: it "
        "exposes no state (no __getstate__ dict, no reduce arguments). Use an estimator whose "
        "fitted state can be pickled, or report the type so a canonical rule can be added."
    )


def state_digest(estimator: Any) -> str:
    """Canonical SHA-256 of a fitted estimator's state (parameters and fitted attributes)."""
    digest = hashlib.sha256()
    _feed(digest, estimator, type(estimator).__name__)
    return digest.hexdigest()


def prediction_digest(probabilities: np.ndarray) -> str:
    """SHA-256 of raw model outputs as little-endian float64: bit-for-bit equality."""
    canonical = np.ascontiguousarray(probabilities, dtype="<f8")
    return hashlib.sha256(f"{canonical.shape}".encode() + canonical.tobytes()).hexdigest()


def predict_proba(estimator: Any, inputs: pd.DataFrame) -> np.ndarray:
    """Predictions with BLAS and OpenMP pinned to one thread, so reductions run in one order."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return np.asarray(estimator.predict_proba(inputs))


def fingerprint(
    estimator: Any,
    golden_inputs: pd.DataFrame,
    outputs: Callable[[Any, pd.DataFrame], np.ndarray] | None = None,
) -> ModelFingerprint:
    """State digest and a digest of the model's raw outputs (the task's: probabilities for a
    classifier, values for a regressor) on the golden inputs."""
    raw = (outputs or predict_proba)(estimator, golden_inputs)
    return ModelFingerprint(state=state_digest(estimator), predictions=prediction_digest(raw))
