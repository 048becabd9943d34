"""The kill rate of `make mutate`: mutmut's results per module -> bench/results/mutation.json.

mutmut keeps each mutated file's verdicts in ``mutants/<path>.meta`` (JSON: the exit code of the
tests run against each mutant, by mutant name). The exit codes mean what ``mutmut results``
prints (mutmut.stats.status_by_exit_code): 1 or 3 killed, 0 survived, 5 or 33 no covering
test, 36/24/-24/152/255 timeout, 37 caught by the type checker, None not run yet.

The kill rate counts a timeout as a kill (the mutant made the tests hang: it was noticed) and a
mutant with no covering test as a survivor (nothing would notice it). Exits 1 under 90%, or when
a mutant was never run (an interrupted run is not a measurement).

``--only MODULE`` (repeatable) reads just those modules from ``mutants/`` and merges them into
the existing results file, keeping every other module's counts and survivors as they were
measured: for a run of some modules' mutants (``mutmut run "lifecycle_pipeline.gates*"``),
which leaves the other modules' mutants unrun.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

THRESHOLD = 0.90
KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {36, 24, -24, 152, 255}
TYPE_CHECK = {37}


def status(exit_code: int | None) -> str:
    if exit_code is None:
        return "not checked"
    if exit_code in KILLED:
        return "killed"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in NO_TESTS:
        return "no tests"
    if exit_code in TIMEOUT:
        return "timeout"
    if exit_code in TYPE_CHECK:
        return "caught by type check"
    return f"suspicious (exit {exit_code})"


def summarize(mutants_dir: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Counts per mutated module (``only`` these, when given), the overall kill rate, and every
    mutant not killed."""
    modules: dict[str, dict[str, int]] = {}
    survivors: list[dict[str, str]] = []
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        module = meta.relative_to(mutants_dir).as_posix().removesuffix(".meta")
        if only is not None and module not in only:
            continue
        verdicts = json.loads(meta.read_text())["exit_code_by_key"]
        counts = {
            "mutants": 0,
            "killed": 0,
            "timeout": 0,
            "survived": 0,
            "no tests": 0,
            "not checked": 0,
            "other": 0,
        }
        for name, exit_code in sorted(verdicts.items()):
            verdict = status(exit_code)
            counts["mutants"] += 1
            counts[verdict if verdict in counts else "other"] += 1
            if verdict not in ("killed", "timeout", "caught by type check"):
                survivors.append({"mutant": name, "status": verdict})
        modules[module] = counts
    return totals(modules, survivors)


def totals(modules: dict[str, dict[str, int]], survivors: list[dict[str, str]]) -> dict[str, Any]:
    total = sum(c["mutants"] for c in modules.values())
    caught = sum(c["killed"] + c["timeout"] for c in modules.values())
    return {
        "modules": modules,
        "mutants": total,
        "killed_or_timeout": caught,
        "kill_rate": round(caught / total, 4) if total else None,
        "threshold": THRESHOLD,
        "survivors": survivors,
    }


def _module_of(mutant: str) -> str:
    """The file a mutant's name belongs to: ``a.b.x_f__mutmut_1`` -> ``a/b.py``."""
    return mutant.rsplit(".", 1)[0].replace(".", "/") + ".py"


def merge(previous: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the modules of ``fresh`` replaced (or added) by their new counts."""
    modules = {**previous["modules"], **fresh["modules"]}
    kept = [s for s in previous["survivors"] if _module_of(s["mutant"]) not in fresh["modules"]]
    return totals(dict(sorted(modules.items())), kept + fresh["survivors"])


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"{'module':<48} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
        f"{'no tests':>8} {'rate':>6}"
    ]
    for module, c in summary["modules"].items():
        rate = (c["killed"] + c["timeout"]) / c["mutants"] if c["mutants"] else 0.0
        lines.append(
            f"{module:<48} {c['mutants']:>7} {c['killed']:>6} {c['timeout']:>7} "
            f"{c['survived']:>8} {c['no tests']:>8} {rate:>6.1%}"
        )
    rate = summary["kill_rate"]
    lines.append(
        f"kill rate: {summary['killed_or_timeout']}/{summary['mutants']}"
        + (f" = {rate:.1%}" if rate is not None else "")
        + f" (required {summary['threshold']:.0%})"
    )
    if summary["survivors"]:
        lines.append(f"not killed ({len(summary['survivors'])}):")
        lines += [f"  {s['status']:<12} {s['mutant']}" for s in summary["survivors"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/mutation.json"))
    parser.add_argument(
        "--only",
        action="append",
        metavar="MODULE",
        help="read only this module (e.g. lifecycle_pipeline/gates.py) from the mutants folder "
        "and merge it into the existing --out file",
    )
    args = parser.parse_args(argv)
    summary = summarize(args.mutants, args.only)
    if not summary["mutants"]:
        print(f"no mutmut results under {args.mutants}: run `make mutate`", file=sys.stderr)
        return 1
    missing = sorted(set(args.only or []) - set(summary["modules"]))
    if missing:
        print(f"no mutmut results for {missing} under {args.mutants}", file=sys.stderr)
        return 1
    if args.only:
        summary = merge(json.loads(args.out.read_text()), summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(render(summary))
    print(f"written to {args.out}")
    unchecked = sum(c["not checked"] for c in summary["modules"].values())
    if unchecked:
        print(f"{unchecked} mutant(s) were not run: the run did not finish", file=sys.stderr)
        return 1
    return 0 if summary["kill_rate"] >= THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
