"""Drift monitor against Evidently's default DataDriftPreset: time, peak memory, verdicts.

Each measurement runs in a fresh child process, so peak RSS (VmHWM) belongs to that one
computation; the child first builds its data, records its RSS, then runs the monitor. Both
sides get the same frames: a bootstrap of the breast-cancer reference (30 numeric columns,
light jitter) as reference, and an independent bootstrap with the demo's three columns shifted
by 1.5 standard deviations as the current batch.

- ``ours``: what the ``drift_monitor`` asset computes: seeded sampling to the cap (100k), the
  reference model's predictions on both samples (prediction drift, which the preset does not
  do), 31 pinned PSI ValueDrift metrics, the HTML report and JSON snapshot.
- ``preset``: ``Report([DataDriftPreset()])`` on the full frames, HTML and JSON, as a user
  would run it out of the box (method chosen by Evidently per column and size).

Verdicts are also compared on the demo's own batches (data-v1 as reference).

Usage: python bench/drift_monitor.py [--rows 100000 1000000] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SHIFTED = ("mean_texture", "mean_smoothness", "worst_texture")
SEED = 20241122


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def synthetic(rows: int) -> tuple[Any, Any]:
    """Reference and shifted current frames of ``rows`` rows each, deterministic."""
    import numpy as np

    from lifecycle_pipeline.sample_data import reference_frame
    from lifecycle_pipeline.schema import FEATURES

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
        current[column] += 1.5 * base[column].std(ddof=0)
    return reference, current


def reference_model() -> Any:
    """The pipeline's model architecture (scaler + 300-tree forest), fitted on the reference."""
    from lifecycle_pipeline.assets.training import TrainingConfig, build_pipeline
    from lifecycle_pipeline.sample_data import reference_frame
    from lifecycle_pipeline.schema import FEATURES, TARGET

    frame = reference_frame()
    model = build_pipeline(TrainingConfig())
    model.fit(frame[list(FEATURES)], frame[TARGET])
    return model


def run_ours(reference: Any, current: Any, model: Any) -> dict[str, Any]:
    from lifecycle_pipeline.monitoring.drift import DriftSettings, drift_summary, report_files

    settings = DriftSettings()
    summary, snapshot = drift_summary(
        reference,
        current,
        list(reference.columns),
        model,
        settings,
        batch="bench",
        batch_md5="",
        reference_version="bench",
    )
    files = report_files(summary, snapshot)
    return {
        "drifted_columns": sorted(summary.drifted_columns),
        "drift_share": summary.drift_share,
        "verdict": summary.verdict,
        "method": f"{settings.method} >= {settings.threshold}",
        "report_bytes": sum(len(v) for v in files.values()),
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
    from lifecycle_pipeline.monitoring.drift import DriftSettings

    ours_threshold = DriftSettings().drift_share_threshold
    return {
        "drifted_columns": sorted(drifted),
        "drift_share": share,
        "verdict": "drift" if (share or 0) > ours_threshold else "no drift",
        "preset_dataset_drift": (share or 0) >= 0.5,
        "method": ", ".join(sorted(methods)),
        "report_bytes": len(html) + len(payload),
    }


def child(kind: str, rows: int) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    model = reference_model() if kind == "ours" else None
    reference, current = synthetic(rows)
    data_mib = (
        reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum()
    ) / 2**20
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    result = (
        run_ours(reference, current, model) if kind == "ours" else run_preset(reference, current)
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
        **result,
    }


def demo_verdicts(sample_dir: Path) -> dict[str, Any]:
    """Both monitors on the demo batches against data-v1 (the sample data from `dvc repro`)."""
    import pandas as pd

    from lifecycle_pipeline.schema import FEATURES

    reference = pd.read_csv(sample_dir / "versions" / "data-v1" / "breast_cancer.csv")
    model = reference_model()
    out: dict[str, Any] = {}
    for batch in ("batch-001", "batch-002"):
        current = pd.read_csv(sample_dir / "batches" / f"{batch}.csv")
        ours = run_ours(reference[list(FEATURES)], current[list(FEATURES)], model)
        preset = run_preset(reference[list(FEATURES)], current[list(FEATURES)])
        out[batch] = {
            "ours": ours,
            "preset": preset,
            "same_columns": ours["drifted_columns"] == preset["drifted_columns"],
            "same_verdict": ours["verdict"] == preset["verdict"],
        }
    return out


def measure(kind: str, rows: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(rows)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return {"kind": kind, "rows": rows, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "drift_monitor.json"
    )
    parser.add_argument(
        "--sample-dir", type=Path, default=ROOT / "data" / "sample", help="`dvc repro` output"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")  # Evidently's import-time deprecation noise
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0

    from importlib import metadata

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
        "sizes": [],
    }
    for rows in args.rows:
        ours, preset = measure("ours", rows), measure("preset", rows)
        entry: dict[str, Any] = {"rows": rows, "ours": ours, "preset": preset}
        if "error" not in ours and "error" not in preset:
            entry["speedup"] = preset["seconds"] / ours["seconds"]
            entry["peak_increase_ratio"] = preset["peak_increase_mib"] / max(
                ours["peak_increase_mib"], 1.0
            )
            entry["same_columns"] = ours["drifted_columns"] == preset["drifted_columns"]
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"results: {args.out}")
    return 0


def _line(entry: dict[str, Any]) -> str:
    ours, preset = entry["ours"], entry["preset"]
    if "speedup" not in entry:
        failed = f"ours {ours.get('error') or 'ok'} | preset {preset.get('error') or 'ok'}"
        return f"{entry['rows']:>9} rows: {failed}"
    return (
        f"{entry['rows']:>9} rows x 30: ours {ours['seconds']:.1f} s "
        f"(+{ours['peak_increase_mib']:.0f} MiB, "
        f"peak {ours['peak_rss_mib']:.0f}) | preset {preset['seconds']:.1f} s "
        f"(+{preset['peak_increase_mib']:.0f} MiB, peak {preset['peak_rss_mib']:.0f}) | "
        f"{entry['speedup']:.1f}x faster, same drifted columns: {entry['same_columns']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
