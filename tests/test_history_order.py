"""A model's history is found by its own records, whatever else the instance holds.

SQLite keeps each run's events in a database of its own, so a storage id read from a run's
records is ordered only within that run; the instance-wide index numbers the same events
differently. These tests put other models' runs in the instance first, so a lookup that
mixes the two numberings answers "first model version" for the model declared second.
"""

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from lifecycle_pipeline.lineage.trace import Materialization, previous_model_version

PARTITIONS = dg.DynamicPartitionsDefinition(name="versions")


class Trained(dg.Config):
    fingerprint: str
    padding: int = 0  # extra events before the evaluation, to spread per-run ids


def _model_assets(model: str) -> list[dg.AssetsDefinition]:
    """One model's evaluation: its fingerprint comes from run config, as a trained model's
    would come from its data and parameters."""

    @dg.asset(key_prefix=[model], name="evaluation", partitions_def=PARTITIONS)
    def evaluation(context: dg.AssetExecutionContext, config: Trained) -> dg.Output[None]:
        for index in range(config.padding):
            noise = dg.AssetObservation(asset_key=[model, "noise"], metadata={"i": index})
            context.log_event(noise)
        return dg.Output(None, metadata={"model/fingerprint": config.fingerprint})

    return [evaluation]


@pytest.fixture
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("home"))) as test_instance:
        yield test_instance


def _train(
    instance: dg.DagsterInstance, model: str, version: str, fingerprint: str, padding: int = 0
) -> Materialization:
    """Materialize one version and return it as the card reads it: from the run's own records."""
    instance.add_dynamic_partitions("versions", [version])
    assets = _model_assets(model)
    done = dg.materialize(
        assets,
        partition_key=version,
        instance=instance,
        run_config={
            "ops": {assets[0].op.name: {"config": {"fingerprint": fingerprint, "padding": padding}}}
        },
    )
    records = instance.get_records_for_run(
        done.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return Materialization.from_record(records[-1])


@pytest.mark.parametrize("others_first", [0, 2])
def test_the_previous_version_of_a_model_declared_after_others_is_found(
    instance: dg.DagsterInstance, others_first: int
) -> None:
    for index in range(others_first):  # other models' runs fill the instance-wide index first
        _train(instance, f"other{index}", f"o{index}-v1", f"o{index}-a", padding=30)
        _train(instance, f"other{index}", f"o{index}-v2", f"o{index}-b", padding=30)
    first = _train(instance, "late", "late-v1", "aaaa")
    second = _train(instance, "late", "late-v2", "bbbb")

    found = previous_model_version(instance, second)

    assert found is not None, "the second version of the model was told it has no predecessor"
    assert (found.run_id, found.partition) == (first.run_id, "late-v1")
    assert previous_model_version(instance, first) is None


def test_the_previous_version_skips_same_fingerprints_and_reads_every_page(
    instance: dg.DagsterInstance,
) -> None:
    """Re-materializations with the same fingerprint are the same model version; the lookup
    goes past them page by page (limit=1 forces one record a page)."""
    _train(instance, "other", "o-v1", "zzzz", padding=10)
    oldest = _train(instance, "m", "m-v1", "aaaa")
    _train(instance, "other", "o-v2", "yyyy", padding=10)
    _train(instance, "m", "m-v2", "bbbb")
    newest = _train(instance, "m", "m-v2", "bbbb")  # the same model version, materialized again

    found = previous_model_version(instance, newest, limit=1)

    assert found is not None
    assert (found.run_id, found.metadata["model/fingerprint"]) == (oldest.run_id, "aaaa")


def test_a_materialization_the_instance_does_not_index_is_an_error(
    instance: dg.DagsterInstance,
) -> None:
    """The lookup starts from the current record in the model's own history; if that record
    is not there (a wiped index), answering "first model version" would be a guess."""
    from lifecycle_pipeline.lineage.trace import LineageError

    current = _train(instance, "m", "m-v1", "aaaa")
    ghost = Materialization(
        asset=current.asset,
        partition=current.partition,
        run_id="0" * 8 + "-0000-0000-0000-" + "0" * 12,
        storage_id=current.storage_id,
        timestamp=current.timestamp,
        metadata=current.metadata,
    )
    with pytest.raises(LineageError, match="not in the instance's history"):
        previous_model_version(instance, ghost)
