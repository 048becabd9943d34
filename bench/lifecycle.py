"""Lifecycle benchmarks: orchestration overhead, DVC comparison, growth, reproduce, many versions.

Writes ``bench/results/lifecycle.json`` and regenerates ``BENCHMARKS.md``. Every comparison
is a ratio of two measurements taken side by side in this run (interleaved repetition by
repetition, so machine noise hits both sides alike); every figure is the median of
``--repetitions`` runs with its min-max. See ``BENCHMARKS.md`` for what each figure means.

Usage: python -m bench.lifecycle [--sizes 10000 100000] [--repetitions 3] [--figures 1 2 3 4 5]
       [--materialized 3 25 50] [--merge]
       python -m bench.lifecycle --large

``--merge`` re-measures only the figures named and keeps every other figure's results from
``--out``; each figure records the run that measured it (commit, time, load average).
``--large`` (``make bench-large``) measures figures 1 and 3 at 5M rows, one repetition, into
``bench/results/lifecycle-large.json``, and re-renders ``BENCHMARKS.md`` from
``lifecycle.json`` with it: the report shows that size beside the full run's, labelled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import data, scenarios
from bench.children import SAMPLE_SECONDS
from bench.measure import (
    ROOT,
    ChildError,
    child_env,
    loglog_slope,
    machine,
    mem_available_mib,
    run_child,
    spread,
    timed_process,
    versions,
)
from bench.plain import SAMPLE_MODEL, TrainingSettings
from bench.report import STEP_ORDER

RESULTS = ROOT / "bench" / "results"
# 5M rows is `make bench-large`'s (``--large``): one repetition, measured apart.
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
LARGE: dict[str, Any] = {
    "sizes": [5_000_000],
    "repetitions": 1,
    "figures": [1, 3],
    "out": RESULTS / "lifecycle-large.json",
}
LARGE_LIMIT_MINUTES = 40.0  # issue 19: the whole large run must fit in this
DEFAULT_MATERIALIZED = (3, 25, 50)
LIFECYCLE_SELECTION = " or ".join(
    f"key:{SAMPLE_MODEL.asset(a)}"  # key:breast_cancer/data_snapshot ...
    for a in STEP_ORDER
)
REPRODUCE_SELECTION = " or ".join(
    f"key:{SAMPLE_MODEL.asset(a)}"
    for a in ("data_snapshot", "features", "trained_model", "evaluation")
)
ADD_PARTITION = (
    "import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions("
    f"{SAMPLE_MODEL.scoped('data_versions')!r}, ['data-v1'])"
)
# The project declares several models; the commands measured act on the sample one.
MODEL_OPTION = ("--model", SAMPLE_MODEL.name)
DAGSTER_YAML = "telemetry:\n  enabled: false\n"
# Figures 4 and 5, kept free when deciding whether a size fits the budget. An estimate:
# figure 4 took 4.2 min here (bench/results/lifecycle.json, reproduce.measured.seconds);
# figure 5 took 19 s for its first 3 versions with their promotions (many_versions.steps,
# populate_seconds), ~6.4 s a version, so its default 50 versions are put at ~6-8 min.
RESERVE_SECONDS = 780.0


class Bench:
    """One harness run: its options, scratch folder, clock and the results it accumulates."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.started = time.perf_counter()
        self.training = TrainingSettings(args.n_estimators, args.max_depth)
        self.home = work / "lifecycle_home"  # signing key, audit log: never the developer's
        self.counter = 0

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f}s] {message}", flush=True)

    def fresh(self, name: str) -> Path:
        self.counter += 1
        path = self.work / f"{name}-{self.counter}"
        path.mkdir(parents=True)
        return path

    def dagster_home(self) -> Path:
        home = self.fresh("dagster_home")
        (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
        return home

    def env(self, **extra: str) -> dict[str, str]:
        return child_env({"LIFECYCLE_HOME": str(self.home), **extra})

    def profile_path(self, kind: str, rows: int) -> str:
        return str(self.args.out.parent / f"profile-{kind}-{rows}.txt")

    def remaining(self) -> float:
        return self.args.budget_minutes * 60 - (time.perf_counter() - self.started)


def _training_dict(settings: TrainingSettings) -> dict[str, int]:
    return {"n_estimators": settings.n_estimators, "max_depth": settings.max_depth}


# Figures 1-3 ------------------------------------------------------------------------------


def _plain(bench: Bench, info: data.DatasetInfo, profile: bool = False) -> dict[str, Any]:
    args = {"dataset": info.to_dict(), "training": _training_dict(bench.training)}
    if profile:
        args["profile"] = bench.profile_path("plain", info.rows)
    return run_child("plain", args, bench.env())


def _dagster(
    bench: Bench, info: data.DatasetInfo, registry: Path, profile: bool = False
) -> dict[str, Any]:
    artifacts = bench.fresh("artifacts")
    args: dict[str, Any] = {
        "registry": str(registry),
        "artifacts": str(artifacts),
        "partition": "data-v1",
        "training": _training_dict(bench.training),
    }
    if profile:
        args["profile"] = bench.profile_path("dagster", info.rows)
    try:
        return run_child("dagster", args, bench.env(DAGSTER_HOME=str(bench.dagster_home())))
    finally:
        shutil.rmtree(artifacts, ignore_errors=True)


def _floor(bench: Bench, registry: Path) -> dict[str, Any]:
    """The lifecycle job's graph with no-op steps, run as ``_dagster`` runs the real one."""
    env = bench.env(DAGSTER_HOME=str(bench.dagster_home()))
    return run_child("floor", {"registry": str(registry)}, env)


def _cli(bench: Bench, registry: Path) -> float:
    """``dagster asset materialize`` as a whole process on a fresh instance (cold)."""
    home, artifacts = bench.dagster_home(), bench.fresh("artifacts")
    env = bench.env(
        DAGSTER_HOME=str(home),
        LIFECYCLE_REGISTRY_URL=str(registry),
        LIFECYCLE_ARTIFACT_ROOT=str(artifacts),
    )
    timed_process([sys.executable, "-c", ADD_PARTITION], ROOT, env)  # setup, not part of the figure
    command = [
        str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
        "-m", "lifecycle_pipeline.definitions", "--select", LIFECYCLE_SELECTION,
        "--partition", "data-v1", "--config-json", json.dumps(bench.training.run_config()),
    ]  # fmt: skip
    try:
        return timed_process(command, ROOT, env)
    finally:
        shutil.rmtree(artifacts, ignore_errors=True)


def _dvc_repro(bench: Bench, info: data.DatasetInfo) -> float:
    """A cold ``dvc repro`` of the stage scripts in a fresh temporary git + DVC project."""
    project = bench.fresh("dvc_project")
    source = ROOT / "bench" / "dvc_project"
    for name in ("dvc.yaml", "stages.py"):
        shutil.copy(source / name, project / name)
    (project / "params.yaml").write_text(
        f"train:\n  n_estimators: {bench.training.n_estimators}\n"
        f"  max_depth: {bench.training.max_depth}\n",
        encoding="utf-8",
    )
    (project / "data").mkdir()
    shutil.copy(info.path, project / "data" / "input.csv")
    env = bench.env()
    scenarios.git(project, "init", "-q")
    dvc = str(Path(sys.executable).parent / "dvc")
    timed_process([dvc, "init", "-q"], project, env)
    timed_process([dvc, "config", "core.analytics", "false"], project, env)
    try:
        return timed_process([dvc, "repro", "-q"], project, env)
    finally:
        shutil.rmtree(project, ignore_errors=True)


def _estimate(
    bench: Bench, done: list[dict[str, Any]], rows: int
) -> tuple[int, str | None, dict[str, Any]]:
    """Repetitions affordable at ``rows`` from the measured times and memory of smaller sizes."""
    if len(done) < 2 or bench.args.no_budget:
        return bench.args.repetitions, None, {}
    last, before = done[-1], done[-2]
    # Affine in rows (fixed cost + cost per row) through the two largest sizes measured: a
    # power law through small sizes, where fixed costs dominate, would grossly overestimate.
    per_row = (last["per_rep_seconds"] - before["per_rep_seconds"]) / (
        last["rows"] - before["rows"]
    )
    per_rep = last["per_rep_seconds"] + max(per_row, 0.0) * (rows - last["rows"])
    peak = last["dagster_peak_increase_mib"] * rows / last["rows"] + last["dagster_rss_before_mib"]
    available = mem_available_mib()
    remaining = bench.remaining() - RESERVE_SECONDS
    basis = {
        "from_rows": last["rows"],
        "measured_seconds_per_repetition": round(last["per_rep_seconds"], 1),
        "seconds_per_extra_row": per_row,
        "estimated_seconds_per_repetition": round(per_rep, 1),
        "estimated_peak_rss_mib": round(peak),
        "mem_available_mib": round(available),
        "remaining_budget_seconds": round(remaining),
    }
    if peak > 0.8 * available:
        return (
            0,
            (
                f"memory: {last['rows']:,} rows peaked at "
                f"+{last['dagster_peak_increase_mib']:.0f} MiB; "
                f"linear extrapolation gives {peak:.0f} MiB at {rows:,} rows, over 80% of the "
                f"{available:.0f} MiB available"
            ),
            basis,
        )
    repetitions = min(bench.args.repetitions, int(remaining // per_rep))
    if repetitions < 1:
        return (
            0,
            (
                f"time: one repetition at {last['rows']:,} rows took "
                f"{last['per_rep_seconds']:.0f} s "
                f"(all compared paths), {before['per_rep_seconds']:.0f} s at {before['rows']:,}; "
                f"extrapolated linearly in rows, one repetition at "
                f"{rows:,} rows needs ~{per_rep:.0f} s, but {max(remaining, 0):.0f} s of the "
                f"{bench.args.budget_minutes:.0f}-minute budget remain after reserving "
                f"{RESERVE_SECONDS:.0f} s for figures 4 and 5"
            ),
            basis,
        )
    return repetitions, None, basis


def size_figures(bench: Bench) -> list[dict[str, Any]]:
    """Figures 1-3 for every size: plain vs Dagster in process, CLI, dvc repro."""
    figures = set(bench.args.figures)
    results: list[dict[str, Any]] = []
    for rows in bench.args.sizes:
        repetitions, reason, basis = _estimate(bench, results, rows)
        entry: dict[str, Any] = {"rows": rows, "estimate": basis}
        if reason:
            entry["skipped"] = reason
            results.append(entry)
            bench.log(f"{rows:,} rows skipped: {reason}")
            continue
        bench.log(f"{rows:,} rows: generating data and registry")
        started = time.perf_counter()
        info = data.write(rows, bench.args.data_dir)
        entry["dataset"] = info.to_dict() | {"generate_seconds": time.perf_counter() - started}
        started = time.perf_counter()
        registry = scenarios.registry_with(Path(info.path), bench.fresh(f"registry-{rows}"))
        entry["dataset"]["publish_seconds"] = time.perf_counter() - started
        runs: dict[str, list[Any]] = {
            "plain": [], "dagster": [], "floor": [], "cli": [], "dvc": []
        }  # fmt: skip
        rep_started = time.perf_counter()
        for repetition in range(repetitions):
            runs["plain"].append(_plain(bench, info))
            runs["dagster"].append(_dagster(bench, info, registry))
            runs["floor"].append(_floor(bench, registry))
            if 2 in figures:
                runs["cli"].append(_cli(bench, registry))
                runs["dvc"].append(_dvc_repro(bench, info))
            bench.log(
                f"{rows:,} rows rep {repetition + 1}/{repetitions}: plain "
                f"{runs['plain'][-1]['seconds']:.1f} s, "
                f"dagster {runs['dagster'][-1]['seconds']:.1f} s, "
                f"no-op floor {runs['floor'][-1]['seconds']:.1f} s"
                + (
                    f", cli {runs['cli'][-1]:.1f} s, dvc {runs['dvc'][-1]:.1f} s"
                    if 2 in figures
                    else ""
                )
            )
        entry["repetitions"] = repetitions
        entry |= _summarize_size(runs, info)
        entry["per_rep_seconds"] = (time.perf_counter() - rep_started) / repetitions
        entry["dagster_peak_increase_mib"] = entry["dagster"]["peak_increase_mib"]["max"]
        entry["dagster_rss_before_mib"] = entry["dagster"]["rss_before_mib"]["max"]
        if bench.args.profile:
            bench.log(f"{rows:,} rows: profiling (extra runs, not in the figures)")
            _plain(bench, info, profile=True)
            _dagster(bench, info, registry, profile=True)
            entry["profiles"] = {
                kind: _relative(Path(bench.profile_path(kind, rows)))
                for kind in ("plain", "dagster")
            }
        shutil.rmtree(registry.parent, ignore_errors=True)
        results.append(entry)
    return results


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _summarize_size(runs: dict[str, list[Any]], info: data.DatasetInfo) -> dict[str, Any]:
    plain, dagster = runs["plain"], runs["dagster"]
    out: dict[str, Any] = {}
    for kind, measured in (("plain", plain), ("dagster", dagster)):
        out[kind] = {
            key: spread([m[key] for m in measured])
            for key in ("seconds", "peak_rss_mib", "rss_before_mib", "peak_increase_mib")
        }
        stages = sorted({s for m in measured for s in m["stages"]})
        out[kind]["stages"] = {
            s: statistics.median(m["stages"].get(s, 0.0) for m in measured) for s in stages
        }
        if all("sampled_peak_increase_mib" in m for m in measured):
            out[kind]["sampled_peak_increase_mib"] = spread(
                [m["sampled_peak_increase_mib"] for m in measured]
            )
    # Where the Dagster run's memory was highest, from RssSampler (bench/children.py): per
    # step the median over repetitions of its largest sampled increase and of its rise, and
    # per repetition the step during which the run's sampled maximum occurred.
    if all("rss_peak_by_step_mib" in d for d in dagster):
        for key in ("rss_peak_by_step_mib", "rss_rise_by_step_mib"):
            steps = sorted({s for d in dagster for s in d[key]})
            out["dagster"][key] = {
                s: statistics.median(d[key][s] for d in dagster if s in d[key]) for s in steps
            }
        out["dagster"]["rss_peak_step"] = [d["rss_peak_step"] for d in dagster]
    # Dagster's own share: the same job graph with no-op steps, once per repetition.
    floors = runs["floor"]
    out["dagster_floor"] = {
        "seconds": spread([f["seconds"] for f in floors]),
        **{key: floors[0][key] for key in ("assets", "checks", "steps")},
    }
    out["fingerprints_equal"] = all(
        p["fingerprint"] == d["fingerprint"] for p, d in zip(plain, dagster, strict=True)
    )
    out["overhead_ratio"] = spread(
        [d["seconds"] / p["seconds"] for p, d in zip(plain, dagster, strict=True)]
    )
    out["peak_rss_over_data"] = spread(
        [d["peak_increase_mib"] * 2**20 / info.memory_bytes for d in dagster]
    )
    out["peak_rss_total_over_data"] = spread(
        [d["peak_rss_mib"] * 2**20 / info.memory_bytes for d in dagster]
    )
    if runs["cli"]:
        out["cli_seconds"] = spread(runs["cli"])
        out["dvc_seconds"] = spread(runs["dvc"])
        out["cli_over_dvc"] = spread([c / d for c, d in zip(runs["cli"], runs["dvc"], strict=True)])
        out["cli_over_plain"] = spread(
            [c / p["seconds"] for c, p in zip(runs["cli"], plain, strict=True)]
        )
    return out


def growth(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Figure 3 from the Dagster measurements of figure 1."""
    measured = [s for s in sizes if "dagster" in s]
    if len(measured) < 2:
        return {"note": "needs at least two sizes"}
    rows = [s["rows"] for s in measured]
    seconds = [s["dagster"]["seconds"]["median"] for s in measured]
    plain_seconds = [s["plain"]["seconds"]["median"] for s in measured]
    steps = [
        {
            "from": rows[i],
            "to": rows[i + 1],
            "slope": loglog_slope(rows[i : i + 2], seconds[i : i + 2]),
        }
        for i in range(len(rows) - 1)
    ]
    return {
        "rows": rows,
        "slope": loglog_slope(rows, seconds),
        "plain_slope": loglog_slope(rows, plain_seconds),
        "steps": steps,
        "largest_rows": rows[-1],
        "rss_over_data_at_largest": measured[-1]["peak_rss_over_data"],
    }


# Figure 4 ---------------------------------------------------------------------------------


def _sample_csv(bench: Bench) -> Path:
    """data-v1 of the sample data (`dvc repro` output), generated here if it is missing."""
    path = bench.args.sample_dir / "versions" / "data-v1" / "breast_cancer.csv"
    if path.exists():
        return path
    from lifecycle_pipeline.sample_data import SampleParams, generate

    out = bench.fresh("sample")
    generate(out, SampleParams.from_yaml(ROOT / "params.yaml"))
    return out / "versions" / "data-v1" / "breast_cancer.csv"


def reproduce_figure(bench: Bench) -> dict[str, Any]:
    """Figure 4: `lifecycle reproduce` (current commit, worktree warm/reused/cold cache)."""
    base = bench.fresh("reproduce")
    repo = scenarios.project_repository(ROOT, base / "repo")
    registry = scenarios.registry_with(_sample_csv(bench), base)
    uv = ROOT / ".tools" / "bin" / "uv"
    config = json.dumps(bench.training.run_config())

    def env(home: Path, state: Path, **extra: str) -> dict[str, str]:
        return bench.env(
            DAGSTER_HOME=str(home),
            LIFECYCLE_HOME=str(state),
            LIFECYCLE_REGISTRY_URL=str(registry),
            LIFECYCLE_ARTIFACT_ROOT=str(home.parent / f"{home.name}-artifacts"),
            PYTHONPATH=str(repo),  # the temporary repository's code, not the installed one
            LIFECYCLE_UV=str(uv),
            **extra,
        )

    def original() -> tuple[float, Path]:
        home = bench.dagster_home()
        timed_process([sys.executable, "-c", ADD_PARTITION], repo, env(home, base / "state"))
        seconds = timed_process(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
             "lifecycle_pipeline.definitions", "--select", REPRODUCE_SELECTION,
             "--partition", "data-v1", "--config-json", config],
            repo, env(home, base / "state"),
        )  # fmt: skip
        return seconds, home

    reports: dict[str, list[dict[str, Any]]] = {}

    def reproduce(home: Path, state: Path, key: str, **extra: str) -> float:
        """One whole ``lifecycle reproduce`` process; its report's verdict and split are kept."""
        report = bench.fresh("report") / "report.json"
        seconds = timed_process(
            [sys.executable, "-m", "lifecycle_pipeline.cli", *MODEL_OPTION, "reproduce",
             "data-v1", "--output", str(report)],
            repo, env(home, state, **extra), timeout=1800,
        )  # fmt: skip
        written = json.loads(report.read_text(encoding="utf-8"))
        reports.setdefault(key, []).append(
            {
                "verdict": written["verdict"],
                "method": written["method"],
                "seconds": written["seconds"],
                "fingerprint": next(
                    e["reproduced"]
                    for e in written["elements"]
                    if e["name"] == "fingerprint.combined"
                ),
            }
        )
        return seconds

    reps = bench.args.repetitions
    bench.log("figure 4: original materializations")
    originals = [original() for _ in range(reps)]
    home = originals[-1][1]
    result: dict[str, Any] = {
        "data": "sample data-v1 (569 rows)",
        "selection": REPRODUCE_SELECTION,
        "original_seconds": spread([o[0] for o in originals]),
    }
    bench.log("figure 4: reproduce at the current commit")
    result["current_seconds"] = spread(
        [reproduce(home, base / "state", "current") for _ in range(reps)]
    )
    scenarios.commit_change(repo)
    bench.log("figure 4: reproduce in a new worktree (the current environment: same uv.lock)")
    warm, states = [], []
    for _ in range(reps):
        states.append(bench.fresh("state"))
        warm.append(reproduce(home, states[-1], "worktree_warm"))
    result["worktree_warm_seconds"] = spread(warm)
    bench.log("figure 4: reproduce in the existing worktree (environment reused)")
    result["worktree_reused_seconds"] = spread(
        [reproduce(home, states[-1], "worktree_reused") for _ in range(reps)]
    )
    for state in states:
        shutil.rmtree(state / "reproduce" / "worktrees", ignore_errors=True)
    # The commit's own environment, as a commit whose uv.lock differs from today's gets it.
    own = {"LIFECYCLE_REPRODUCE_ENVIRONMENT": "own"}
    bench.log("figure 4: reproduce in a new worktree, its own environment from the warm uv cache")
    result["worktree_own_seconds"] = spread(
        [reproduce(home, bench.fresh("state"), "worktree_own", **own) for _ in range(reps)]
    )
    if bench.args.cold_cache:
        bench.log("figure 4: reproduce in a new worktree, own environment, empty uv cache")
        cache = bench.fresh("uv_cache")
        try:
            result["worktree_cold_seconds"] = spread(
                [
                    reproduce(
                        home, bench.fresh("state"), "worktree_cold", UV_CACHE_DIR=str(cache), **own
                    )
                ]
            )
        except ChildError as exc:
            result["worktree_cold_skipped"] = f"failed: {str(exc)[-400:]}"
        shutil.rmtree(cache, ignore_errors=True)
    else:
        result["worktree_cold_skipped"] = (
            "not run (--no-cold-cache): an empty uv cache downloads the whole locked "
            "environment from PyPI, which bench-quick leaves out to stay within minutes"
        )
    base_seconds = result["original_seconds"]["median"]
    for key in ("current", "worktree_warm", "worktree_reused", "worktree_own", "worktree_cold"):
        if f"{key}_seconds" in result:
            result[f"{key}_over_original"] = result[f"{key}_seconds"]["median"] / base_seconds
        for part in ("environment", "materialize"):
            recorded = [r["seconds"][part] for r in reports.get(key, []) if part in r["seconds"]]
            if recorded:
                result[f"{key}_{part}_seconds"] = spread(recorded)
    result["reports"] = reports
    shutil.rmtree(base, ignore_errors=True)
    return result


# Figure 5 ---------------------------------------------------------------------------------


THROUGH_DVC = 3  # figure 5: versions published with `dvc add`/`dvc push`; the rest written directly
VERSION_ROWS = 600  # figure 5: rows of each data version's CSV
PROMOTION_ROUNDS = (
    4  # figure 5: each newly materialized version promoted this often, then a rollback
)


def versions_figure(bench: Bench) -> dict[str, Any]:
    """Figure 5: many tags and partitions; the operations timed as versions are materialized.

    One registry and instance grow step by step: at each count of ``--materialized`` the new
    versions are materialized end to end and promoted (``PROMOTION_ROUNDS`` rounds, each ended
    by a rollback), then the sensor tick, status, history and one version's lineage are timed
    in process and ``lifecycle status`` / ``history`` as whole processes.
    """
    from lifecycle_pipeline.sample_data import reference_frame

    count = bench.args.versions
    steps_at = sorted(set(bench.args.materialized))
    if not steps_at or steps_at[0] < 1 or steps_at[-1] > count:
        raise ValueError(
            f"--materialized must be counts between 1 and --versions ({count}), got {steps_at}"
        )
    base = bench.fresh("versions")
    reference = reference_frame()
    contents = [
        data.frame(VERSION_ROWS, seed=index, reference=reference).to_csv(index=False).encode()
        for index in range(count)
    ]
    bench.log(f"figure 5: registry with {count} versions")
    started = time.perf_counter()
    repo, tags = scenarios.many_version_registry(base, contents, published=min(THROUGH_DVC, count))
    registry_seconds = time.perf_counter() - started
    home = bench.dagster_home()
    state = bench.fresh("state")
    env = bench.env(
        DAGSTER_HOME=str(home),
        LIFECYCLE_HOME=str(state),
        LIFECYCLE_REGISTRY_URL=str(repo),
        LIFECYCLE_ARTIFACT_ROOT=str(base / "artifacts"),
    )
    steps: list[dict[str, Any]] = []
    failed: dict[str, Any] | None = None
    done = 0
    for target in steps_at:
        bench.log(f"figure 5: materializing versions {done + 1}-{target}, promotions recorded")
        started = time.perf_counter()
        try:
            populated = run_child(
                "populate",
                {
                    "registry": str(repo),
                    "artifacts": str(base / "artifacts"),
                    "tags": tags,
                    "materialize": tags[done:target],
                    "promotion_rounds": PROMOTION_ROUNDS,
                    "training": _training_dict(bench.training),
                },
                env,
            )
        except ChildError as exc:
            # The steps measured so far stay; the figure (and the harness) fails visibly.
            failed = {"materializing": [tags[done], tags[target - 1]], "error": _last_line(exc)}
            bench.log(f"figure 5: failed: {failed['error']}")
            break
        populate_seconds = time.perf_counter() - started
        done = target
        bench.log(f"figure 5: measuring with {target} materialized")
        measured = run_child(
            "many_versions",
            {"registry": str(repo), "version": tags[0], "repetitions": bench.args.repetitions},
            env,
        )
        cli = {
            command: spread(
                [
                    timed_process(
                        [sys.executable, "-m", "lifecycle_pipeline.cli", *MODEL_OPTION, command],
                        ROOT,
                        env,
                    )
                    for _ in range(bench.args.repetitions)
                ]
            )
            for command in ("status", "history")
        }
        steps.append(
            {
                "materialized": target,
                "newly_materialized": populated["materialized"],
                "materialize_seconds": spread(populated["seconds"]),
                "populate_seconds": populate_seconds,
                "partitions": measured["partitions"],
                "governance_changes": measured["changes"],
                "tick_seconds": spread(measured["tick_steady"]),
                "tick_run_requests": measured["tick_requests_steady"],
                "status_seconds": spread(measured["status"]),
                "history_seconds": spread(measured["history"]),
                "lineage_seconds": spread(measured["lineage"]),
                "status_cli_seconds": cli["status"],
                "history_cli_seconds": cli["history"],
            }
        )
    imports = _import_profile(env) if bench.args.profile else []
    shutil.rmtree(base, ignore_errors=True)
    return ({"failed": failed} if failed else {}) | {
        "status_cli_imports": imports,
        "populated": {
            "tags": len(tags),
            "rows_per_version": VERSION_ROWS,
            "through_dvc": min(THROUGH_DVC, count),
            "promotion_rounds": PROMOTION_ROUNDS,
            "materialized_requested": steps_at,
            "registry_build_seconds": registry_seconds,
            "lineage_version": tags[0],
        },
        "steps": steps,
    }


def _last_line(exc: Exception) -> str:
    """The last line of a child's error: the exception that stopped it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else repr(exc)


def _import_profile(env: dict[str, str], top: int = 12) -> list[dict[str, Any]]:
    """Where `lifecycle status` spends its start-up: ``python -X importtime``, by cumulative."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lifecycle_pipeline.cli", *MODEL_OPTION,
         "status"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|", 2)
        found.append({"module": name.strip(), "cumulative_s": int(cumulative) / 1e6})
    found.sort(key=lambda item: -float(item["cumulative_s"]))
    return found[:top]


# Entry point ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help=f"default: {list(DEFAULT_SIZES)}")
    parser.add_argument("--repetitions", type=int, help="default: 3")
    parser.add_argument("--figures", type=int, nargs="+", help="default: 1 2 3 4 5")
    parser.add_argument(
        "--large",
        action="store_true",
        help=(
            "figures 1 and 3 at 5M rows, one repetition, no budget, into "
            "bench/results/lifecycle-large.json (each overridable); --markdown is rendered "
            "from --results with it"
        ),
    )
    parser.add_argument("--n-estimators", type=int, default=TrainingSettings.n_estimators)
    parser.add_argument("--max-depth", type=int, default=TrainingSettings.max_depth)
    parser.add_argument("--versions", type=int, default=200, help="figure 5: registry tags")
    parser.add_argument(
        "--materialized",
        type=int,
        nargs="+",
        default=list(DEFAULT_MATERIALIZED),
        help="figure 5: counts of versions materialized at which the operations are timed",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other figures' results from --out; replace only the figures run",
    )
    parser.add_argument("--budget-minutes", type=float, default=40.0)
    parser.add_argument("--no-budget", action="store_true", help="run every size as asked")
    parser.add_argument("--profile", action="store_true", help="pyinstrument text per size")
    parser.add_argument(
        "--cold-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="figure 4: also reproduce with an empty uv cache (downloads the environment)",
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/lifecycle.json")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS / "lifecycle.json",
        help="--large: the full run's results the report is rendered from",
    )
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lifecycle-bench-data",
        help="generated CSVs, reused between runs (deterministic)",
    )
    parser.add_argument(
        "--sample-dir", type=Path, default=ROOT / "data" / "sample", help="`dvc repro` output"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="re-render --markdown from --out, no runs"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ARGS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults: dict[str, Any] = {
        "sizes": list(DEFAULT_SIZES),
        "repetitions": 3,
        "figures": [1, 2, 3, 4, 5],
        "out": RESULTS / "lifecycle.json",
    }
    if args.large:
        defaults |= {key: LARGE[key] for key in defaults}
        args.no_budget = True
        if args.merge:
            parser.error("--large writes its own results file; --merge does not apply")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.large and not set(args.figures) <= {1, 3}:
        parser.error(f"--large measures figures 1 and 3 only, got --figures {args.figures}")
    if args.large and args.out.resolve() == args.results.resolve():
        parser.error(f"--large must not write over the full run's results ({args.results})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        from bench.children import CHILDREN

        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return 0
    if args.render_only:
        _render(args)
        return 0
    previous: dict[str, Any] = {}
    if args.merge:
        if not args.out.exists():
            raise SystemExit(f"--merge needs the results to merge into; {args.out} does not exist")
        previous = json.loads(args.out.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as scratch:
        bench = Bench(args, Path(scratch))
        run = _run_record(args)
        measured: dict[str, Any] = {}
        figures = set(args.figures)
        steps: list[tuple[int, str, Callable[[Bench], Any]]] = [
            (4, "reproduce", reproduce_figure),
            (5, "many_versions", versions_figure),
        ]
        if figures & {1, 2, 3}:
            measured["sizes"] = size_figures(bench)
            measured["growth"] = growth(measured["sizes"])
        for number, key, figure in steps:
            if number in figures:
                started, load = time.perf_counter(), os.getloadavg()[0]
                measured[key] = figure(bench)
                measured[key]["measured"] = run | {
                    "seconds": time.perf_counter() - started,
                    "loadavg_1min": [load, os.getloadavg()[0]],
                }
        run["seconds"] = time.perf_counter() - bench.started
    results = _merged(previous, measured, run, args) if args.merge else measured
    if not args.merge:
        results |= {
            "machine": machine(),
            "versions": versions(),
            "settings": _settings(args, bench),
            "total_seconds": run["seconds"],
            "runs": [run],
        }
    if args.large:
        results["large"] = {
            "limit_minutes": LARGE_LIMIT_MINUTES,
            "within_limit": run["seconds"] <= LARGE_LIMIT_MINUTES * 60,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _render(args)
    print(f"results: {args.out}\nmarkdown: {args.markdown}")
    failures = [
        key for key, value in measured.items() if isinstance(value, dict) and "failed" in value
    ]
    if failures:
        print(f"failed: {', '.join(failures)} (see the results)", file=sys.stderr)
        return 1
    return 0


def _render(args: argparse.Namespace) -> None:
    """``--markdown`` from the results files as written (sorted keys), so BENCHMARKS.md is
    exactly what ``--render-only`` gives; with ``--large``, from ``--results`` and ``--out``."""
    from bench.report import Supplements, render

    if not args.large:
        results = json.loads(args.out.read_text(encoding="utf-8"))
        args.markdown.write_text(render(results), encoding="utf-8")
        return
    if not args.results.exists():
        print(f"{args.results} does not exist: {args.markdown} not rendered", file=sys.stderr)
        return
    results = json.loads(args.results.read_text(encoding="utf-8"))
    supplements = Supplements.load(large=args.out)
    args.markdown.write_text(render(results, supplements), encoding="utf-8")


def _settings(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    return {
        "repetitions": args.repetitions,
        "sizes": args.sizes,
        "figures": args.figures,
        "training": _training_dict(bench.training)
        | {"estimator": SAMPLE_MODEL.model.estimator.class_, "threads": 1, "seed": 7},
        "budget_minutes": args.budget_minutes,
        "data_seed": data.SEED,
        "dagster_runner": "execute_job",  # bench/children.py: how the Dagster side runs
        "rss_sample_seconds": SAMPLE_SECONDS,  # bench/children.py: RssSampler
    }


def _run_record(args: argparse.Namespace) -> dict[str, Any]:
    """Which code, when and on how loaded a machine one harness invocation measured."""
    found = versions()
    return {
        "figures": sorted(set(args.figures)),
        "argv": sys.argv[1:],
        "git_commit": found["git_commit"],
        "git_dirty": found["git_dirty"],
        "started_utc": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "repetitions": args.repetitions,
        "loadavg_1min_at_start": os.getloadavg()[0],
    }


def _merged(
    previous: dict[str, Any], measured: dict[str, Any], run: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """``previous`` with the figures of this run replaced; everything else kept as it was.

    The top-level machine, versions, settings and total time stay those of the full run that
    measured the kept figures; each re-measured figure carries its own ``measured`` record.
    """
    if args.repetitions != previous.get("settings", {}).get("repetitions"):
        raise SystemExit(
            f"--merge with --repetitions {args.repetitions} into results measured with "
            f"{previous.get('settings', {}).get('repetitions')}: one report, one repetition count"
        )
    runs = previous.get("runs") or [
        {
            "figures": previous.get("settings", {}).get("figures"),
            "git_commit": previous.get("versions", {}).get("git_commit"),
            "git_dirty": previous.get("versions", {}).get("git_dirty"),
            "seconds": previous.get("total_seconds"),
        }
    ]
    # A later run that re-measured only figures this run measures again no longer stands
    # behind any result; the first (full) run is kept for the figures it still holds.
    kept = [runs[0], *(r for r in runs[1:] if not set(r["figures"]) <= set(run["figures"]))]
    return previous | measured | {"runs": [*kept, run]}


if __name__ == "__main__":
    raise SystemExit(main())
