"""A finished stage's data is freed when the stage ends, not when the process does.

Two holders kept the snapshot's frame alive for the rest of a run (at 1M rows, 237 MiB each
into the next stages, bench figure 3): Dagster compiles a record class's constructor on its
first call and keeps that caller's locals for good, and pandera's cached accessor makes a
reference cycle that only Python's cyclic collector frees. The run below happens in a fresh
interpreter (a record class compiled by an earlier test would hide the first) with the cyclic
collector off (a collection at the right moment would hide the second).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lifecycle_pipeline.contract import validate
from tests.conftest import SAMPLE_MODEL, Registry

SCRIPT = """
import gc, json, os
import dagster as dg
import pandas as pd
from lifecycle_pipeline.definitions import lifecycle_job_from_env
from lifecycle_pipeline.declaration import load_declaration

model = load_declaration(os.environ["SAMPLE_DECLARATION"])

with dg.DagsterInstance.get() as instance:
    instance.add_dynamic_partitions(model.scoped("data_versions"), ["data-v1"])
    result = dg.execute_job(
        dg.reconstructable(lifecycle_job_from_env),
        instance=instance,
        tags={"dagster/partition": "data-v1"},
        asset_selection=[model.key("data_snapshot"), model.key("features")],
    )
    gc.collect()
    frames = [o for o in gc.get_objects() if isinstance(o, pd.DataFrame) and len(o) >= 100]
    print(json.dumps({"success": result.success, "frames": [list(f.shape) for f in frames]}))
"""


def test_no_stage_frame_outlives_its_run(demo_registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_MODEL": "breast_cancer",
        "LIFECYCLE_REGISTRY_URL": str(demo_registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "LIFECYCLE_EXECUTOR": "in_process",
        "SAMPLE_DECLARATION": str(SAMPLE_MODEL.path),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["success"], done.stderr[-3000:]
    assert outcome["frames"] == [], "a stage's frame is still held after the run"


def test_validation_leaves_no_frame_for_the_cyclic_collector() -> None:
    contract = SAMPLE_MODEL.model.contract
    rows = 1237  # a length no other frame in this process has
    rng = np.random.default_rng(3)
    data: dict[str, Any] = {name: rng.uniform(1, 2, rows) for name in contract.feature_names}
    data[contract.target] = np.arange(rows) % 2
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        result = validate(pd.DataFrame(data), contract, source="generated", declaration="test")
        assert len(result) == rows
        del result
        left = [o for o in gc.get_objects() if isinstance(o, pd.DataFrame) and len(o) == rows]
    finally:
        if enabled:
            gc.enable()
    assert left == [], f"{len(left)} frame(s) of the validated data are left in reference cycles"


HEAP = """
import json, sys
import numpy as np
{imports}

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

size = int(sys.argv[1])
warm = np.ones(size // 8 + 4096)  # a larger block freed first: glibc raises its threshold
del warm
start = rss()
arrays = [np.ones(size // 8) for _ in range(40)]  # the columns a stage makes and drops
held = arrays[-1]  # the newest stays, as a stage's output does
del arrays
freed = rss()
{release}
print(json.dumps({{"kept_after_free": freed - start, "kept_after_release": rss() - start}}))
"""
CODECS = "import lifecycle_pipeline.resources.codecs"
RELEASE = "from lifecycle_pipeline.arrow_memory import release_freed_memory; release_freed_memory()"


def _heap_after(size: int, imports: str = "", release: str = "") -> dict[str, int]:
    """What stays resident after a stage-like burst of ``size``-byte arrays is freed."""
    script = HEAP.format(imports=imports, release=release)
    done = subprocess.run(
        [sys.executable, "-c", script, str(size)], capture_output=True, text=True, check=True
    )
    result: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_large_columns_go_back_to_the_system_as_they_are_freed() -> None:
    """8 MB arrays (a column of 1M rows), 320 MB in all: importing the artifact codecs fixes
    glibc's mmap threshold, so each is unmapped as it is freed. With glibc's own threshold,
    which rose past them when the larger block was freed, they came from the heap and all
    stayed under the one still held (320 MB kept, with the threshold fixed at 64 MiB
    instead). Not asserted without the import: whether the heap can grow in place, or glibc
    maps the block after all, depends on where the process's mappings happen to lie."""
    assert _heap_after(8 << 20, imports=CODECS)["kept_after_free"] < 40


def test_freed_small_blocks_are_returned_between_stages() -> None:
    """1 MB arrays come from the heap whatever the threshold; what a stage freed below the
    one still held is handed back by ``release_freed_memory`` (the artifact store calls it
    between stages)."""
    kept = _heap_after(1 << 20, imports=CODECS, release=RELEASE)
    assert kept["kept_after_free"] > 30, kept
    assert kept["kept_after_release"] < 10, kept
