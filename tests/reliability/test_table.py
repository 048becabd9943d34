"""docs/reliability.md is rendered from the cases the suite runs; a stale table fails here.

Regenerate with ``UPDATE_SNAPSHOTS=1 make test`` (or this file alone) and review the diff.
"""

from __future__ import annotations

import os

from tests.conftest import PROJECT_ROOT
from tests.reliability.cases import ALL, Fault

TABLE = PROJECT_ROOT / "docs" / "reliability.md"

HEADER = """# Reliability: what was tried, what a user sees, what proves nothing was lost

Generated from `tests/reliability/cases.py`, the parametrization of `tests/reliability/`
(`UPDATE_SNAPSHOTS=1 make test` regenerates it; a stale copy fails the suite). Each row is a
test that runs the real pipeline or validation code on the input described.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(faults: list[Fault]) -> str:
    lines = [HEADER]
    for area in dict.fromkeys(f.area for f in faults):
        rows = [f for f in faults if f.area == area]
        proofs = {f.proof for f in rows}
        shared = proofs.pop() if len(proofs) == 1 else None
        lines += ["", f"## {area.capitalize()}s", ""]
        if shared:
            lines += [f"Proof that nothing was lost, checked for every row: {shared}.", ""]
        columns = ["case", "input", "the error names", *([] if shared else ["proof"])]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for fault in rows:
            shown = fault.expected if len(fault.expected) < 70 else fault.expected[:67] + "..."
            cells = [fault.name, fault.how, f"`{shown}`", *([] if shared else [fault.proof])]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def test_reliability_table_is_generated_from_the_cases() -> None:
    current = render(ALL)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        TABLE.write_text(current, encoding="utf-8")
    assert TABLE.read_text(encoding="utf-8") == current, "run UPDATE_SNAPSHOTS=1 and review"
