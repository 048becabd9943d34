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
test (named in the row or the section) that runs the real pipeline, CLI or validation code
on the input described; areas without a single shared proof list each row's own.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


AREA_TESTS = {
    "data file": "tests/reliability/test_bad_input.py::test_bad_data_file",
    "partition key": "tests/reliability/test_bad_input.py::test_bad_partition_key",
    "model-card spec": "tests/reliability/test_bad_input.py::test_bad_model_card_spec",
    "predict input": "tests/test_package.py::test_predict_rejects_bad_rows_naming_row_and_column",
    "crash": "tests/reliability/test_crashes.py::test_a_killed_run_leaves_nothing_readable_and_"
    "resumes_to_the_same_fingerprint",
    "tampering": "tests/test_audit.py::test_tampering_is_detected_and_named",
}


HEADINGS = {
    "data file": "Data files",
    "partition key": "Partition keys",
    "configuration": "Configuration",
    "model-card spec": "Model-card specs",
    "predict input": "Predict inputs",
    "registry reference": "Registry references",
    "tampering": "Tampering and unsafe content",
    "crash": "Crashes (SIGKILL at a failpoint)",
    "concurrency": "Concurrency",
    "exposure": "Exposure",
}


def runner(fault: Fault) -> str:
    return fault.test or AREA_TESTS[fault.area]


def render(faults: list[Fault]) -> str:
    lines = [HEADER]
    for area in dict.fromkeys(f.area for f in faults):
        rows = [f for f in faults if f.area == area]
        proofs = {f.proof for f in rows}
        shared = proofs.pop() if len(proofs) == 1 else None
        tests = {runner(f) for f in rows}
        one_test = tests.pop() if len(tests) == 1 else None
        lines += ["", f"## {HEADINGS[area]}", ""]
        if one_test:
            lines += [f"Every row is a case of `{one_test}`.", ""]
        if shared:
            lines += [f"Proof that nothing was lost, checked for every row: {shared}.", ""]
        columns = ["case", "input", "what the user sees"]
        columns += [] if shared else ["proof"]
        columns += [] if one_test else ["test"]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for fault in rows:
            shown = fault.expected if len(fault.expected) < 70 else fault.expected[:67] + "..."
            cells = [fault.name, fault.how, f"`{shown}`"]
            cells += [] if shared else [fault.proof]
            cells += [] if one_test else [f"`{runner(fault).split('::')[1]}`"]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def test_every_listed_test_exists() -> None:
    """A row names a test that runs it; a renamed or deleted test fails here, not silently."""
    import ast

    for fault in ALL:
        module, _, function = runner(fault).partition("::")
        tree = ast.parse((PROJECT_ROOT / module).read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert function in names, f"{fault.area} / {fault.name}: {runner(fault)} not found"


def test_reliability_table_is_generated_from_the_cases() -> None:
    current = render(ALL)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        TABLE.write_text(current, encoding="utf-8")
    assert TABLE.read_text(encoding="utf-8") == current, "run UPDATE_SNAPSHOTS=1 and review"
