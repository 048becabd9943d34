"""Composition root: the lifecycle assets, their checks, resources and executor."""

from __future__ import annotations

import dagster as dg

from lifecycle_pipeline.assets.data import data_snapshot
from lifecycle_pipeline.assets.documentation import model_card
from lifecycle_pipeline.assets.evaluation import evaluation
from lifecycle_pipeline.assets.features import features
from lifecycle_pipeline.assets.packaging import deployment_package
from lifecycle_pipeline.assets.training import trained_model
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.registry import DataRegistry
from lifecycle_pipeline.resources.signing import PackageSigner

ASSETS = [data_snapshot, features, trained_model, evaluation, model_card, deployment_package]

lifecycle_job = dg.define_asset_job(
    "lifecycle",
    selection=dg.AssetSelection.assets(*ASSETS),
    description="Every lifecycle stage for one data version.",
)


def build_definitions(
    *,
    registry: DataRegistry | None = None,
    artifact_store: ArtifactStore | None = None,
    signer: PackageSigner | None = None,
) -> dg.Definitions:
    """Definitions with the given resources; defaults resolve their locations from the env.

    The in-process executor is the default because a single partition's stages run in
    sequence anyway, and a process per step costs seconds that the computation does not.
    """
    return dg.Definitions(
        assets=ASSETS,
        jobs=[lifecycle_job],
        resources={
            "registry": registry or DataRegistry(),
            "artifact_store": artifact_store or ArtifactStore(),
            "signer": signer or PackageSigner(),
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions()
