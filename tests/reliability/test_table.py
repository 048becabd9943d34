"""docs/reliability.md is rendered from the cases the suite runs; a stale table fails here.

Every row's "what the user sees" is asserted by the test the row names, which takes the text
from the row itself (``case(area, name)`` or the list it is parametrized with), so the table
and the assertion cannot diverge. Regenerate with ``UPDATE_SNAPSHOTS=1`` (this file alone or
``make test``): a stale table is rewritten and the test still fails, so the diff is reviewed.
"""

from __future__ import annotations

import ast
import functools
import os

import pytest

from tests.conftest import PROJECT_ROOT
from tests.reliability import cases
from tests.reliability.cases import ALL, Fault

TABLE = PROJECT_ROOT / "docs" / "reliability.md"

HEADER = """# Reliability: what was tried, what a user sees, what proves nothing was lost

Generated from `tests/reliability/cases.py`, the parametrization of `tests/reliability/`
(`UPDATE_SNAPSHOTS=1 make test` regenerates it; a stale copy fails the suite). Each row is a
test (named in the row or the section) that runs the real pipeline, CLI or validation code
on the input described, and asserts the row's "what the user sees" in the error, the command's
output or the observed value (`…` stands for a part that differs between runs: a digest, a
path, a port); areas without a single shared proof list each row's own.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """A Markdown code span; text holding a backtick is fenced with two."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


AREA_TESTS = {
    "data file": "tests/reliability/test_bad_input.py::test_bad_data_file",
    "partition key": "tests/reliability/test_bad_input.py::test_bad_partition_key",
    "model-card spec": "tests/reliability/test_bad_input.py::test_bad_model_card_spec",
    "predict input": "tests/test_package.py::test_predict_rejects_bad_rows_naming_row_and_column",
    "declaration": "tests/test_declaration.py::test_bad_declaration_is_refused_naming_file_line_"
    "and_field",
    "crash": "tests/reliability/test_crashes.py::test_a_killed_run_leaves_nothing_readable_and_"
    "resumes_to_the_same_fingerprint",
    "tampering": "tests/test_audit.py::test_tampering_is_detected_and_named",
    "identifier": "tests/reliability/test_identifiers.py::test_bad_identifier_is_refused_before_"
    "anything_is_created",
}


HEADINGS = {
    "data file": "Data files",
    "partition key": "Partition keys",
    "configuration": "Configuration",
    "declaration": "Model declarations",
    "model-card spec": "Model-card specs",
    "predict input": "Predict inputs",
    "registry reference": "Registry references",
    "tampering": "Tampering and unsafe content",
    "crash": "Crashes (SIGKILL at a failpoint)",
    "concurrency": "Concurrency",
    "exposure": "Exposure",
    "identifier": "Identifiers and paths on the command line",
    "on-call": "On-call: rollback, replay and reproduce",
    "keys and caches": "Keys and caches (`lifecycle status`, `doctor`, `verify`)",
    "lineage": "Lineage that could not be read",
    "instance": "A damaged instance (`lifecycle doctor`, `lifecycle instance rebuild`)",
    "coverage": "Governance coverage: every model, every record, every store",
    "team deployment": "Team deployment: object stores and PostgreSQL",
}

SHOWN = 100  # longer messages are cut in the table (the test asserts all of it)


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
            shown = fault.expected
            shown = shown if len(shown) < SHOWN else shown[: SHOWN - 3] + "..."
            cells = [fault.name, fault.how, _code(shown)]
            cells += [] if shared else [fault.proof]
            cells += [] if one_test else [f"`{runner(fault).split('::')[1]}`"]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --- every row is asserted by the test it names ---------------------------------------------


@functools.cache
def _module(path: str) -> ast.Module:
    return ast.parse((PROJECT_ROOT / path).read_text(encoding="utf-8"), filename=path)


def _function(path: str, name: str) -> ast.FunctionDef | None:
    found = [
        node
        for node in _module(path).body
        if isinstance(node, ast.FunctionDef) and node.name == name
    ]
    return found[0] if found else None


def _lists_holding(fault: Fault) -> set[str]:
    """The names of the lists in cases.py that hold this row (``ALL`` does not count)."""
    return {
        name
        for name, value in vars(cases).items()
        if name != "ALL" and isinstance(value, list) and any(item is fault for item in value)
    }


def _references(path: str, function: ast.FunctionDef) -> list[ast.AST]:
    """The function (decorators included), plus the module-level values it names, and those
    they name: a test parametrized with a list built in its own module reaches its rows
    through that list."""
    values: dict[str, ast.expr] = {}
    for statement in _module(path).body:
        if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            values |= {t.id: statement.value for t in targets if isinstance(t, ast.Name)}
    nodes: list[ast.AST] = [function]
    seen: set[str] = set()
    while True:
        used = {n.id for root in nodes for n in ast.walk(root) if isinstance(n, ast.Name)}
        new = sorted((used & set(values)) - seen)
        if not new:
            return nodes
        seen |= set(new)
        nodes += [values[name] for name in new]


def _looks_up(nodes: list[ast.AST], fault: Fault) -> bool:
    for node in (n for root in nodes for n in ast.walk(root)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "case"
            and [a.value for a in node.args if isinstance(a, ast.Constant)]
            == [fault.area, fault.name]
        ):
            return True
    return False


def _checks_the_message(function: ast.FunctionDef) -> bool:
    """The body reads the row's message: ``fault.expected`` or ``fault.shown_in(...)``."""
    return any(
        isinstance(node, ast.Attribute) and node.attr in {"expected", "shown_in"}
        for statement in function.body
        for node in ast.walk(statement)
    )


def test_rows_are_unique() -> None:
    keys = [(f.area, f.name) for f in ALL]
    assert sorted(k for k in keys if keys.count(k) > 1) == []


@pytest.mark.parametrize("fault", ALL, ids=[f"{f.area}: {f.name}" for f in ALL])
def test_every_row_is_asserted_by_the_test_it_names(fault: Fault) -> None:
    """The named test exists, takes its row from cases.py and checks the row's message.

    A renamed test, a new row whose test does not use it, or a test that keeps its own copy of
    the message fails here instead of leaving the table claiming what nobody checks.
    """
    module, _, name = runner(fault).partition("::")
    function = _function(module, name)
    assert function is not None, f"{runner(fault)} does not exist"
    nodes = _references(module, function)
    names = {n.id for root in nodes for n in ast.walk(root) if isinstance(n, ast.Name)}
    holding = _lists_holding(fault)
    if not (_looks_up(nodes, fault) or names & holding):
        pytest.fail(
            f"{runner(fault)} does not take its row from cases.py: call "
            f"case({fault.area!r}, {fault.name!r}) or parametrize it with one of {sorted(holding)}"
        )
    if not _checks_the_message(function):
        pytest.fail(f"{runner(fault)} never reads its row's message (.expected or .shown_in)")


def test_reliability_table_is_generated_from_the_cases() -> None:
    current = render(ALL)
    stored = TABLE.read_text(encoding="utf-8") if TABLE.exists() else None
    if stored == current:
        return
    if os.environ.get("UPDATE_SNAPSHOTS"):
        TABLE.write_text(current, encoding="utf-8")
        pytest.fail(
            f"{TABLE.relative_to(PROJECT_ROOT)} was stale and has been rewritten: review the "
            "diff (git diff docs/reliability.md), then rerun without UPDATE_SNAPSHOTS"
        )
    pytest.fail(
        f"{TABLE.relative_to(PROJECT_ROOT)} is stale: rerun with UPDATE_SNAPSHOTS=1 and review "
        "the diff"
    )
