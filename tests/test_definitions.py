"""The code location loads, and its asset graph is a reviewed snapshot.

A change to keys, edges, partitions, checks, groups, kinds or owners is a lineage change:
regenerate the snapshot with ``UPDATE_SNAPSHOTS=1 make test`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from lifecycle_pipeline.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def describe(definitions: dg.Definitions) -> dict[str, Any]:
    graph = definitions.resolve_asset_graph()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": getattr(partitions, "name", None),
            "checks": sorted(c.name for c in node.check_keys),
            "blocking_checks": sorted(
                spec.name
                for spec in definitions.resolve_assets_def(key).check_specs
                if spec.blocking
            ),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "has_description": bool(node.description),
            "has_code_version": bool(node.code_version),
            "automation": node.automation_condition.get_label()
            if node.automation_condition
            else None,
        }
    return {"assets": assets}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("lifecycle") is not None


def test_asset_graph_matches_reviewed_snapshot() -> None:
    current = describe(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_every_asset_is_described_owned_grouped_and_versioned() -> None:
    for name, asset in describe(defs)["assets"].items():
        assert asset["has_description"], name
        assert asset["has_code_version"], name
        assert asset["owners"] == ["team:ml-platform"], name
        assert asset["kinds"], name
        expected = {"drift_monitor": "production_batches", "production_model": None}
        assert asset["partitions"] == expected.get(name, "data_versions"), name


def test_every_asset_links_to_its_source_in_the_ui() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        references = graph.get(key).metadata["dagster/code_references"].code_references
        source = Path(references[0].file_path)
        assert source.is_file() and source.suffix == ".py", key
        assert 0 < references[0].line_number <= len(source.read_text().splitlines()), key
