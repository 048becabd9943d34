"""pip-audit against the committed lock, tolerant of a missing vulnerability service only.

Every pinned package in ``uv.lock`` (all groups) is checked with pip-audit. A known
vulnerability fails the check and is listed with its fix version. When the vulnerability
service cannot be reached (offline CI, a proxy that serves the package index but not the
advisory API), the packages that could not be audited are counted and reported, and the check
passes: a network outage must not block a merge, but it must not pass silently either. Any
other way of not auditing (pip-audit missing or crashing) fails.

Usage: python .ci/audit_deps.py [--ignore ID ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignore", nargs="*", default=[], help="advisory ids accepted on purpose")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        exported = subprocess.run(
            [str(UV), "export", "--frozen", "--all-groups", "--no-emit-project",
             "--format", "requirements-txt", "--output-file", str(requirements)],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if exported.returncode != 0:
            print(f"pip-audit: cannot export uv.lock: {exported.stderr.strip()}", file=sys.stderr)
            return 1
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip_audit", "--requirement", str(requirements),
                   "--disable-pip", "--no-deps", "--progress-spinner", "off", "--format", "json",
                   "--output", str(report)]  # fmt: skip
        for advisory in args.ignore:
            command += ["--ignore-vuln", advisory]
        try:
            ran = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            print("pip-audit: NOT AUDITED, the vulnerability service did not answer in 600 s")
            return 0
        if not report.exists():
            code, line = unaudited(ran.returncode, ran.stderr)
            print(line, file=sys.stderr if code else sys.stdout)
            return code
        dependencies = json.loads(report.read_text())["dependencies"]
    code, lines = verdict(dependencies)
    print("\n".join(lines), file=sys.stderr if code else sys.stdout)
    return code


# What pip-audit (requests, urllib3, the resolver) prints when the advisory service cannot be
# reached: the only failure without a report that is reported instead of failed.
UNREACHABLE = (
    "ConnectionError",
    "Max retries exceeded",
    "Failed to establish a new connection",
    "Connection refused",
    "Temporary failure in name resolution",
    "NameResolutionError",
    "ProxyError",
    "ConnectTimeout",
    "ReadTimeout",
    "Network is unreachable",
)


def unaudited(returncode: int, stderr: str) -> tuple[int, str]:
    """pip-audit ended without a report: unreachable service (reported) or a failure (fails).

    pip-audit missing, a crash or an unreadable requirements file would otherwise look like a
    network outage and let every vulnerability through unnoticed.
    """
    reason = (stderr.strip().splitlines() or [f"exit status {returncode}, no output"])[-1]
    if any(marker in stderr for marker in UNREACHABLE):
        return 0, f"pip-audit: NOT AUDITED, the vulnerability service is unreachable ({reason})"
    return 1, (
        f"pip-audit: FAILED to run (exit status {returncode}): {reason}. Nothing was audited; "
        "install the dev tools (`make install`) and rerun."
    )


def verdict(dependencies: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Exit code and report lines for pip-audit's JSON ``dependencies`` list."""
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    lines = [
        f"pip-audit: {d['name']} {d['version']}: {v['id']} "
        f"(fixed in {', '.join(v.get('fix_versions') or []) or 'no fixed release'})"
        for d in vulnerable
        for v in d["vulns"]
    ]
    if vulnerable:
        return 1, lines
    if skipped:
        return 0, [
            f"pip-audit: {audited} of {len(dependencies)} locked packages audited, no known "
            f"vulnerability; {len(skipped)} could not be audited (the vulnerability service "
            f"did not answer for them, e.g. '{skipped[0]['skip_reason']}')"
        ]
    return 0, [f"pip-audit: all {audited} locked packages audited, no known vulnerability"]


if __name__ == "__main__":
    sys.exit(main())
