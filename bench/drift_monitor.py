"""Drift monitor against Evidently's default DataDriftPreset: time, peak memory, verdicts.

Each measurement runs in a fresh child process, so peak RSS (VmHWM) belongs to that one
computation; the child first builds its data, resets the high-water mark and records its
RSS, then runs the monitor (peak increase = VmHWM after - VmRSS before). Every
child builds the same frames: a bootstrap of the breast-cancer reference (30 numeric columns,
light jitter) as reference, and an independent bootstrap with the demo's three columns shifted
by ``SHIFT_SD`` standard deviations as the current batch.

- ``ours``: what the ``drift_monitor`` asset computes: seeded sampling of both frames to the
  cap (the declaration's ``drift.sample_cap``), the reference model's predictions on both
  samples (prediction drift, which the preset does not do), ValueDrift metrics pinned by the
  declaration's ``drift:`` tests on every column and the prediction, the HTML report and JSON
  snapshot.
- ``preset_sampled``: ``Report([DataDriftPreset()])``, HTML and JSON, on exactly the frames
  ``ours`` samples (same function, same seeds; the sampling is done before the clock starts).
  Ours against this is the engine's cost on the same data.
- ``preset_full``: the same preset on all rows, as a user would run it out of the box (method
  chosen by Evidently per column and size). Ours against this is what sampling gains.

At or below the cap the sampled frames are the full frames, so both preset rows measure the
same computation twice. Verdicts are also compared on the demo's own batches (data-v1 as
reference).

Every kind runs ``--repetitions`` times, interleaved; times and memory are medians with their
range, and each ratio is taken repetition by repetition.

Usage: python bench/drift_monitor.py [--rows 100000 1000000] [--repetitions 3]
       [--sample-cap N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SHIFTED = ("mean_texture", "mean_smoothness", "worst_texture")
SHIFT_SD = 1.5
SEED = 20241122
KINDS = ("ours", "preset_sampled", "preset_full")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Start a fresh VmHWM (Linux clear_refs "5"), so the peak is the measured step's alone.

    Without it the high-water mark would keep what building the frames or sampling them
    touched before the clock started, and memory freed since would count as the step's.
    """
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def synthetic(rows: int) -> tuple[Any, Any]:
    """Reference and shifted current frames of ``rows`` rows each, deterministic."""
    import numpy as np

    from lifecycle_pipeline.sample_data import BREAST_CANCER_FEATURES as FEATURES
    from lifecycle_pipeline.sample_data import reference_frame

    base = reference_frame()[list(FEATURES)].astype("float64")
    scale = base.std(ddof=0).to_numpy()
    rng = np.random.default_rng(SEED)

    def bootstrap() -> Any:
        picked = base.to_numpy()[rng.integers(0, len(base), size=rows)]
        picked += rng.normal(0.0, 0.05, size=picked.shape) * scale
        return picked

    import pandas as pd

    reference = pd.DataFrame(bootstrap(), columns=list(FEATURES))
    current = pd.DataFrame(bootstrap(), columns=list(FEATURES))
    for column in SHIFTED:
        current[column] += SHIFT_SD * base[column].std(ddof=0)
    return reference, current


def reference_model() -> Any:
    """The pipeline's model architecture (scaler + 300-tree forest), fitted on the reference."""
    from lifecycle_pipeline.assets.training import TrainingConfig, build_pipeline
    from lifecycle_pipeline.sample_data import BREAST_CANCER_FEATURES as FEATURES
    from lifecycle_pipeline.sample_data import BREAST_CANCER_TARGET as TARGET
    from lifecycle_pipeline.sample_data import reference_frame

    frame = reference_frame()
    model = build_pipeline(declaration().model, TrainingConfig())
    model.fit(frame[list(FEATURES)], frame[TARGET])
    return model


def declaration() -> Any:
    """The sample model's declaration: its ``drift:`` section is what the monitor applies."""
    from lifecycle_pipeline.declaration import load_declaration

    return load_declaration(ROOT / "models" / "breast_cancer")


def run_ours(reference: Any, current: Any, model: Any, sample_cap: int) -> dict[str, Any]:
    from lifecycle_pipeline.assets.monitoring import drift_settings
    from lifecycle_pipeline.monitoring.drift import drift_summary, report_files

    declared = declaration().model
    settings = drift_settings(declared.drift, {"sample_cap": sample_cap})
    summary, snapshot = drift_summary(
        reference,
        current,
        declared,
        model,
        settings,
        batch="bench",
        batch_md5="",
        reference_version="bench",
    )
    files = report_files(summary, snapshot)
    tests = sorted({f"{c.kind}: {c.test}" for c in summary.columns})
    return {
        "drifted_columns": sorted(summary.drifted_columns),
        "drift_share": summary.drift_share,
        "verdict": summary.verdict,
        "method": "; ".join([*tests, f"prediction: {summary.prediction.test}"]),
        "prediction": summary.prediction.to_dict(),
        "report_bytes": sum(len(v) for v in files.values()),
        "engine_rows": [summary.sampled_reference_rows, summary.sampled_current_rows],
    }


def run_preset(reference: Any, current: Any) -> dict[str, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(current, reference)
    html = snapshot.get_html_str(as_iframe=False)
    payload = snapshot.json()
    drifted, methods = [], set()
    share = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
        elif config["type"].endswith("ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            methods.add(method)
            p_value = "p_value" in method.lower()
            if (value < threshold) if p_value else (value >= threshold):
                drifted.append(config["column"])
    ours_threshold = declaration().model.drift.share_threshold
    return {
        "drifted_columns": sorted(drifted),
        "drift_share": share,
        "verdict": "drift" if (share or 0) > ours_threshold else "no drift",
        "preset_dataset_drift": (share or 0) >= 0.5,
        "method": ", ".join(sorted(methods)),
        "report_bytes": len(html) + len(payload),
        "engine_rows": [len(reference), len(current)],
    }


def sampled(reference: Any, current: Any, sample_cap: int) -> tuple[Any, Any]:
    """The frames ``drift_summary`` samples from ``reference`` and ``current`` (same seeds)."""
    from lifecycle_pipeline.monitoring.drift import sample

    seed = declaration().model.drift.seed
    return (
        sample(reference, sample_cap, seed).copy(),
        sample(current, sample_cap, seed + 1).copy(),
    )


def child(kind: str, rows: int, sample_cap: int) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    model = reference_model() if kind == "ours" else None
    reference, current = synthetic(rows)
    data_mib = (
        reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum()
    ) / 2**20
    extra: dict[str, Any] = {}
    if kind == "preset_sampled":
        start = time.perf_counter()
        reference, current = sampled(reference, current, sample_cap)
        extra["sample_seconds"] = time.perf_counter() - start
    _reset_peak()
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    result = (
        run_ours(reference, current, model, sample_cap)
        if kind == "ours"
        else run_preset(reference, current)
    )
    seconds = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    return {
        "kind": kind,
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mib": peak / 1024,
        "rss_before_mib": before / 1024,
        "peak_increase_mib": (peak - before) / 1024,
        "data_mib": data_mib,
        **extra,
        **result,
    }


MEASURED = ("seconds", "peak_rss_mib", "rss_before_mib", "peak_increase_mib")
OUTCOME = ("drifted_columns", "drift_share", "verdict", "method", "engine_rows", "data_mib")


def spread(values: list[float]) -> dict[str, Any]:
    """Median and range of repeated measurements, with the values kept for re-analysis."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def summarize(kind: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One kind's repetitions: each measured quantity as a spread, the outcome once.

    The computation is deterministic, so every repetition must reach the same outcome
    (drifted columns, share, verdict); a difference is a failure, not a figure.
    """
    outcome = [k for k in (*OUTCOME, "preset_dataset_drift") if k in runs[0]]
    seen = {json.dumps({k: r[k] for k in outcome}, sort_keys=True) for r in runs}
    if len(seen) != 1:
        raise RuntimeError(f"{kind}: repetitions disagree on the outcome: {sorted(seen)}")
    return (
        {k: runs[0][k] for k in outcome}
        | {k: spread([r[k] for r in runs]) for k in MEASURED}
        | {"runs": runs}
    )


def compare(ours: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """The preset's time and peak increase over ours, repetition by repetition, and agreement."""
    pairs = list(zip(ours["runs"], preset["runs"], strict=True))
    return {
        "preset_seconds_over_ours": spread([p["seconds"] / o["seconds"] for o, p in pairs]),
        "preset_peak_increase_over_ours": spread(
            [p["peak_increase_mib"] / o["peak_increase_mib"] for o, p in pairs]
        ),
        "same_columns": ours["drifted_columns"] == preset["drifted_columns"],
        "same_verdict": ours["verdict"] == preset["verdict"],
    }


def demo_verdicts(sample_dir: Path) -> dict[str, Any]:
    """Both monitors on the demo batches against data-v1 (the sample data from `dvc repro`)."""
    import pandas as pd

    from lifecycle_pipeline.sample_data import BREAST_CANCER_FEATURES as FEATURES

    reference = pd.read_csv(sample_dir / "versions" / "data-v1" / "breast_cancer.csv")
    model = reference_model()
    out: dict[str, Any] = {}
    for batch in ("batch-001", "batch-002"):
        current = pd.read_csv(sample_dir / "batches" / f"{batch}.csv")
        ours = run_ours(
            reference[list(FEATURES)],
            current[list(FEATURES)],
            model,
            declaration().model.drift.sample_cap,
        )
        preset = run_preset(reference[list(FEATURES)], current[list(FEATURES)])
        out[batch] = {
            "ours": ours,
            "preset": preset,
            "same_columns": ours["drifted_columns"] == preset["drifted_columns"],
            "same_verdict": ours["verdict"] == preset["verdict"],
        }
    return out


def measure(kind: str, rows: int, sample_cap: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter; a failed child fails the benchmark.

    The 1-minute load average before and after is kept: on a shared machine it shows whether
    other work competed for the cores during the measurement.
    """
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(rows), str(sample_cap)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"drift benchmark {kind} at {rows:,} rows exited {proc.returncode}: "
            f"{proc.stderr.strip()[-3000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"loadavg_1min": [load_before, os.getloadavg()[0]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "drift_monitor.json"
    )
    parser.add_argument(
        "--sample-dir", type=Path, default=ROOT / "data" / "sample", help="`dvc repro` output"
    )
    parser.add_argument(
        "--sample-cap",
        type=int,
        default=None,
        help="the monitor's sample cap (default: the declaration's drift.sample_cap)",
    )
    parser.add_argument("--repetitions", type=int, default=3, help="runs of each kind, interleaved")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "ROWS", "CAP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")  # Evidently's import-time deprecation noise
    if args.child:
        kind, rows, cap = args.child
        print(json.dumps(child(kind, int(rows), int(cap))))
        return 0

    from importlib import metadata

    from lifecycle_pipeline.sample_data import BREAST_CANCER_FEATURES as FEATURES

    defaults = declaration().model.drift
    cap = defaults.sample_cap if args.sample_cap is None else args.sample_cap
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": os.environ["OMP_NUM_THREADS"],
        },
        "versions": {
            p: metadata.version(p) for p in ("evidently", "pandas", "numpy", "scikit-learn")
        },
        "settings": {
            "columns": len(FEATURES),
            "shifted_columns": sorted(SHIFTED),
            "shift_sd": SHIFT_SD,
            "sample_cap": cap,
            "drift": defaults.model_dump(mode="json"),
            "repetitions": args.repetitions,
        },
        "sizes": [],
    }
    for rows in args.rows:
        entry: dict[str, Any] = {"rows": rows, "sampled_rows": min(rows, cap)}
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for _ in range(args.repetitions):
            for kind in KINDS:  # interleaved, so machine noise hits every kind alike
                runs[kind].append(measure(kind, rows, cap))
        for kind in KINDS:
            entry[kind] = summarize(kind, runs[kind])
        entry["same_frames"] = compare(entry["ours"], entry["preset_sampled"])
        entry["sampling"] = compare(entry["ours"], entry["preset_full"])
        results["sizes"].append(entry)
        print(_line(entry), flush=True)
    results["demo_batches"] = demo_verdicts(args.sample_dir)
    for batch, verdicts in results["demo_batches"].items():
        ours, preset = verdicts["ours"], verdicts["preset"]
        print(
            f"demo {batch}: ours {ours['verdict']} {ours['drifted_columns']}"
            f" | preset {preset['verdict']} {preset['drifted_columns']}"
            f" ({preset['method']}) | same columns {verdicts['same_columns']}"
        )
    results["total_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"results: {args.out}")
    return 0


def _line(entry: dict[str, Any]) -> str:
    parts = [
        f"{kind} {entry[kind]['seconds']['median']:.1f} s "
        f"(+{entry[kind]['peak_increase_mib']['median']:.0f} MiB, {entry[kind]['verdict']}, "
        f"{len(entry[kind]['drifted_columns'])} columns)"
        for kind in KINDS
    ]
    for key in ("same_frames", "sampling"):
        ratio = entry[key]["preset_seconds_over_ours"]["median"]
        parts.append(f"{key}: preset/ours {ratio:.1f}x")
    return f"{entry['rows']:>9} rows: " + " | ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
