"""A trained model is serialized once: the artifact and the package carry training's bytes.

skops stamps each dump's zip entries with the current time, so a second dump of the same
model is a different file. These tests give the model bytes a stamp no dump would write
(1980-01-01) and follow them through the artifact store and the package build.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from lifecycle_pipeline.lineage.fingerprint import fingerprint
from lifecycle_pipeline.lineage.records import TrainedModel
from lifecycle_pipeline.resources import codecs
from lifecycle_pipeline.resources.codecs import ArtifactFormatError, dump_model
from tests.conftest import restamped

TREE = "sklearn.tree._tree.Tree"


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    target = (frame["a"] > 0).astype("int64")
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("model", RandomForestClassifier(3, random_state=0))]
    ).fit(frame, target)
    golden = frame.head(5)
    prints = fingerprint(pipeline, golden, lambda p, x: p.predict_proba(x))
    lineage = {"estimator": {"trusted_types": [TREE]}, "fingerprint": prints.to_dict()}
    skops = restamped(dump_model(pipeline))
    assert skops != dump_model(pipeline)  # the stamp tells training's bytes from a re-dump
    return TrainedModel(pipeline, golden, prints, lineage, skops=skops)


def _stored_model_bytes(bundle: codecs.Buffer) -> bytes:
    return zipfile.ZipFile(io.BytesIO(bundle)).read("model.skops")


def test_the_artifact_stores_the_bytes_training_dumped_and_loading_keeps_them(
    trained: TrainedModel,
) -> None:
    bundle = codecs.encode(trained)
    assert _stored_model_bytes(bundle) == trained.skops
    loaded = codecs.decode(bundle, source="trained_model")
    assert loaded.skops == trained.skops
    assert loaded.fingerprint == trained.fingerprint
    frame = trained.golden_inputs
    np.testing.assert_array_equal(
        loaded.pipeline.predict_proba(frame), trained.pipeline.predict_proba(frame)
    )
    # Re-encoding a loaded model writes the stored bytes again, not a new dump.
    assert codecs.encode(loaded) == bundle


def test_without_known_bytes_the_model_is_dumped() -> None:
    """Models built elsewhere (the benchmark's plain side) carry no bytes and are dumped."""
    model = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    plain = TrainedModel(model, pd.DataFrame(), None, {})  # type: ignore[arg-type]
    assert plain.skops is None
    assert zipfile.is_zipfile(io.BytesIO(plain.skops_bytes()))


def test_a_stored_model_with_a_type_outside_its_list_is_refused_by_name(
    trained: TrainedModel,
) -> None:
    """Loading audits every type before constructing anything; the error names the type."""
    refused = TrainedModel(
        trained.pipeline,
        trained.golden_inputs,
        trained.fingerprint,
        {**trained.lineage, "estimator": {"trusted_types": []}},
        skops=trained.skops,
    )
    with pytest.raises(ArtifactFormatError) as error:
        codecs.decode(codecs.encode(refused), source="trained_model")
    message = str(error.value)
    assert f"trained_model:model.skops: model contains untrusted type(s) ['{TREE}']" in message
    assert "estimator.trusted_types" in message
