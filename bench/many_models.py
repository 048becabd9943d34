"""Many models in one deployment: definitions load, a sensor tick and `lifecycle status` at
1, 10 and 50 declared models with 20 data versions each.

Each model is a copy of the sample declaration under its own name, tag patterns and registry
tags (one registry holding all models' tags, as teams sharing a registry would). The instance
holds what 20 versions per model leave behind that these three operations read: 20 data-version
partitions, 20 finished runs and one promotion per model (its audit record and its
``production_model`` event, written through ``AuditLog`` and the instance as `lifecycle promote`
writes them). Models are not trained 1000 times: none of the three operations reads an artifact.

Each figure runs in fresh processes (``bench.measure``), median of 3:
- load: `python -c "import lifecycle_pipeline.definitions"` plus resolving every job, the code
  server's start-up work; also the component loading alone, in process;
- tick: one evaluation of every model's sensors (new data versions, new batches, drift
  retraining, audit log), in steady state (every tag already a partition, every run logged);
- status: `lifecycle status`, every model in one table, audit logs verified against the instance;
  warm (validation verdicts of unchanged declarations reused) and cold (every declaration
  validated, as after a change or a deploy).

``python -m bench.many_models`` writes bench/results/many_models.json; the report renders it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.measure import ROOT, child_env

RESULTS = ROOT / "bench" / "results" / "many_models.json"
VERSIONS = 20
COUNTS = (1, 10, 50)
GOALS = {"load": 5.0, "tick": 2.0, "status": 2.0}
TEMPLATE = ROOT / "models" / "breast_cancer"


def model_names(count: int) -> list[str]:
    return [f"m{i:02d}" for i in range(count)]


def write_models(folder: Path, names: list[str]) -> None:
    """One folder per model: the sample declaration with the model's name and tag patterns."""
    text = (TEMPLATE / "defs.yaml").read_text(encoding="utf-8")
    for name in names:
        target = folder / name
        target.mkdir(parents=True)
        declared = text.replace("  name: breast_cancer\n", f"  name: {name}\n", 1)
        declared = declared.replace("versions: data-v*", f"versions: {name}-v*", 1)
        declared = declared.replace("batches: batch-*", f"batches: {name}-batch-*", 1)
        assert declared.count(f"{name}-v*") == 1, "the template's tag pattern moved"
        (target / "defs.yaml").write_text(declared, encoding="utf-8")
        shutil.copy(TEMPLATE / "model_card.yaml", target / "model_card.yaml")


def write_registry(repo: Path, names: list[str]) -> None:
    """A git repository with VERSIONS commits, each tagged once per model (<name>-v<i>)."""

    def git(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org",
             "-C", str(repo), *args],
            input=stdin, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    repo.mkdir(parents=True)
    git("init", "-q")
    refs = []
    for i in range(1, VERSIONS + 1):
        git("commit", "-q", "--allow-empty", "-m", f"version {i}")
        commit = git("rev-parse", "HEAD")
        refs += [f"create refs/tags/{name}-v{i} {commit}" for name in names]
    git("update-ref", "--stdin", stdin="\n".join(refs) + "\n")


def write_instance(env: dict[str, str], names: list[str]) -> None:
    """Partitions, finished runs and one promotion per model, as 20 versions leave them."""
    script = f"""
import json, os, uuid
import dagster as dg
from lifecycle_pipeline.governance import MODEL_TAG, PRODUCTION_ASSET
from lifecycle_pipeline.lineage.audit import AuditLog
names = {names!r}
with dg.DagsterInstance.get() as instance:
    for name in names:
        versions = [f"{{name}}-v{{i}}" for i in range(1, {VERSIONS} + 1)]
        instance.add_dynamic_partitions(f"{{name}}_data_versions", versions)
        for version in versions:
            instance.add_run(dg.DagsterRun(
                job_name=f"{{name}}_lifecycle", run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.SUCCESS,
                tags={{MODEL_TAG: name, "dagster/partition": version}},
            ))
        log = AuditLog.for_model(name)
        # The runs are already in the log, as the audit sensor leaves them once it has run.
        log.append_runs_once("run", [
            ({{"run_id": run.run_id, "job": run.job_name, "status": "SUCCESS"}},
             run.tags["dagster/partition"])
            for run in instance.get_runs(dg.RunsFilter(tags={{MODEL_TAG: name}}))
        ])
        record = log.append("promotion", {{
            "version": versions[-1], "package_uri": "-", "package_sha256": "0" * 64,
            "fingerprint": "0" * 64, "data_md5": "0" * 32, "code_commit": "0" * 40, "runs": {{}},
            "approver": "bench", "reason": "benchmark state", "previous": None,
            "previous_package_sha256": None,
        }}, version=versions[-1])
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=dg.AssetKey([name, PRODUCTION_ASSET]),
            metadata={{"action": "promotion", "model": name, "version": versions[-1],
                      "audit/seq": record.seq, "audit/hash": record.hash,
                      "audit/log": str(log.path.resolve())}},
        ))
"""
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True)


LOAD = """
import time
started = time.perf_counter()
import lifecycle_pipeline.definitions as d
repository = d.defs.get_repository_def()
jobs = repository.get_all_jobs()
print(time.perf_counter() - started)
"""

LOAD_MODELS = """
import time
from lifecycle_pipeline.component import load_models
from lifecycle_pipeline.settings import Settings
settings = Settings.from_env()
load_models(settings.models_dir, settings.project_root)  # imports and first-use costs
started = time.perf_counter()  # then the loading itself: a new component tree, every model
found = load_models(settings.models_dir, settings.project_root)
assert not found.broken, [b.error for b in found.broken]
print(time.perf_counter() - started)
"""

TICK = """
import json, sys, time, warnings
import dagster as dg
from lifecycle_pipeline.definitions import defs
names = json.loads(sys.argv[1])
kinds = ("new_data_version_sensor", "new_batch_sensor", "drift_retraining_sensor",
         "audit_log_sensor")
cursors = {}

def tick(kind):
    requested = 0
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        for name in names:
            sensor = defs.resolve_sensor_def(f"{name}_{kind}")
            # As the daemon does: only the resources the sensor requires are built.
            needed = {k: defs.resources[k] for k in sensor.required_resource_keys}
            with dg.build_sensor_context(
                instance=instance, cursor=cursors.get((name, kind)),
                resources=needed, definitions=defs,
            ) as context:
                result = sensor.evaluate_tick(context)
            cursors[(name, kind)] = result.cursor
            requested += len(result.run_requests or [])
        return time.perf_counter() - started, requested

warnings.simplefilter("ignore")
for kind in kinds:
    tick(kind)  # first ticks: cursors set, nothing new to do after the instance's state
steady = {}
for kind in kinds:
    steady[kind], requested = tick(kind)
    assert requested == 0, (kind, requested)  # every tag is a partition already
print(json.dumps(steady))
"""


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return elapsed


def _printed(script: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1]


def _status_imports(env: dict[str, str]) -> dict[str, float]:
    """Where `lifecycle status` spends its start-up: Python's own import timer (-X importtime),
    the cumulative time of every top-level import and of the libraries within them."""
    script = "from lifecycle_pipeline.cli import main; main(['status'])"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    found: dict[str, float] = {"all": 0.0}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        seconds = int(cumulative) / 1e6
        if not name.startswith("  "):  # a top-level import
            found["all"] += seconds
        if name.strip() in ("sklearn", "dagster", "pandas") and name.strip() not in found:
            found[name.strip()] = seconds
    return {k: round(v, 3) for k, v in found.items()}


def measure(count: int, repetitions: int) -> dict[str, Any]:
    names = model_names(count)
    with tempfile.TemporaryDirectory(prefix="many-models-") as scratch:
        base = Path(scratch)
        write_models(base / "models", names)
        write_registry(base / "registry", names)
        (base / "dagster_home").mkdir()
        (base / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = child_env(
            {
                "DAGSTER_HOME": str(base / "dagster_home"),
                "LIFECYCLE_HOME": str(base / "home"),
                "LIFECYCLE_MODELS_DIR": str(base / "models"),
                "LIFECYCLE_REGISTRY_URL": str(base / "registry"),
                "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
            }
        )
        env.pop("LIFECYCLE_MODEL", None)
        write_instance(env, names)
        load_wall = [_timed([sys.executable, "-c", LOAD], env) for _ in range(repetitions)]
        load_models = [float(_printed(LOAD_MODELS, env)) for _ in range(repetitions)]
        ticks = [json.loads(_printed(TICK, env, json.dumps(names))) for _ in range(repetitions)]
        lifecycle = str(Path(sys.executable).parent / "lifecycle")
        verdicts = base / "home" / "cache" / "declarations.json"
        cold = []
        for _ in range(repetitions):  # every declaration validated (after a change or deploy)
            verdicts.unlink(missing_ok=True)
            cold.append(_timed([lifecycle, "status"], env))
        status = [_timed([lifecycle, "status"], env) for _ in range(repetitions)]
        imports = _status_imports(env)
    return {
        "models": count,
        "versions_per_model": VERSIONS,
        "load": {"median": _median(load_wall), "runs": load_wall},
        "load_models": {"median": _median(load_models), "runs": load_models},
        # One tick of one sensor over every model (new data versions: the one that reads the
        # registry's tags and the partitions), and of all four sensors of every model.
        "tick": {
            "median": _median([t["new_data_version_sensor"] for t in ticks]),
            "runs": [t["new_data_version_sensor"] for t in ticks],
        },
        "tick_all_sensors": {
            "median": _median([sum(t.values()) for t in ticks]),
            "runs": [sum(t.values()) for t in ticks],
            "per_sensor_median": {kind: _median([t[kind] for t in ticks]) for kind in ticks[0]},
        },
        "status": {"median": _median(status), "runs": status},
        "status_cold": {"median": _median(cold), "runs": cold},
        "status_imports_seconds": imports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    rows = []
    for count in args.counts:
        row = measure(count, args.repetitions)
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {
        "goals_seconds": GOALS,
        "repetitions": args.repetitions,
        "cpus": os.cpu_count(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "id": str(uuid.uuid4()),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
