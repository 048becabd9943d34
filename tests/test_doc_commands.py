"""Every shell command of the README, docs/ and CONTRIBUTING.md is run by a test, covered by
one elsewhere, or marked in its page with the reason none runs it (issue 31). Reading only:
the commands run in tests/test_project.py and tests/test_onboarding_commands.py."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PROJECT_ROOT
from tests.doc_commands import (
    COVERED_ELSEWHERE,
    DEMO_TEST,
    DRIFT_TEST,
    NOT_RUN,
    ONBOARDING_TEST,
    RUNS,
    Command,
    all_commands,
    documented_commands,
    shown_output_pattern,
    split_comment,
)
from tests.test_onboarding_commands import ONBOARDING_SECTIONS, documented_blocks

EXECUTORS = {DEMO_TEST, DRIFT_TEST}


def onboarding_commands() -> set[str]:
    """The commands test_onboarding_commands runs: every line of its sections' blocks."""
    blocks = documented_blocks(*ONBOARDING_SECTIONS)
    return {
        " ".join(split_comment(line)[0].split())
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }


def where_it_runs(command: Command) -> str | None:
    if command.marker is not None:
        return f"marked: {command.marker}"
    if (command.page, command.key) in NOT_RUN:
        return f"not run: {NOT_RUN[command.page, command.key]}"
    if command.key in COVERED_ELSEWHERE:
        return f"covered elsewhere: {COVERED_ELSEWHERE[command.key]}"
    if (command.page, command.key) in RUNS:
        return RUNS[command.page, command.key].test
    if command.key in onboarding_commands():
        return ONBOARDING_TEST
    return None


def test_every_documented_command_runs_in_a_test_or_says_why_not() -> None:
    commands = all_commands()
    assert len(commands) > 60, len(commands)
    unaccounted = [command for command in commands if where_it_runs(command) is None]
    assert not unaccounted, (
        "These shell commands of the docs are run by no test:\n"
        + "\n".join(f"  {command.where()}: {command.key}" for command in unaccounted)
        + "\nRun each in a test that reads it from the page (add it to RUNS in "
        "tests/doc_commands.py; tests/test_project.py runs them on the demo's instance), or, "
        "if no test can run it (a cluster, the network, hours), say why in the page: a "
        "comment `# not run by the tests: REASON` on the line above the block's commands or "
        "after the command."
    )


def test_every_entry_names_a_command_a_page_still_holds() -> None:
    keys = {(command.page, command.key) for command in all_commands()}
    stale = [key for key in (*RUNS, *NOT_RUN) if key not in keys]
    assert not stale, f"no page holds these any more: drop or update them: {stale}"
    documented = {key for _, key in keys}
    assert not set(COVERED_ELSEWHERE) - documented
    assert {run.test for run in RUNS.values()} <= EXECUTORS


def test_a_command_is_not_both_run_and_marked() -> None:
    for command in all_commands():
        if command.marker is not None:
            assert (command.page, command.key) not in RUNS, command.where()


def test_make_demo_is_the_two_steps_the_project_test_runs() -> None:
    """`make demo` is covered by test_project's demo test only while its recipe is what that
    test runs."""
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^demo: install\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no `demo: install` rule in the Makefile"
    assert recipe[1].split("\n")[:2] == ["\t$(RUN) dvc repro", "\t$(RUN) lifecycle demo"]


@pytest.mark.parametrize(
    ("line", "text", "comment"),
    [
        ("make demo   # installs from uv.lock", "make demo", "installs from uv.lock"),
        (
            """dg scaffold x --json-params '{"a": "#b"}'""",
            """dg scaffold x --json-params '{"a": "#b"}'""",
            "",
        ),
        ('git commit -m "a # b" # c', 'git commit -m "a # b"', "c"),
        ("echo a#b", "echo a#b", ""),
    ],
)
def test_a_trailing_comment_is_split_off_outside_quotes(line: str, text: str, comment: str) -> None:
    assert split_comment(line) == (text, comment)


def test_blocks_sessions_continuations_and_markers() -> None:
    page = PROJECT_ROOT / "docs" / "runbooks" / "run-died.md"
    resume = [c for c in documented_commands(page) if c.key == "lifecycle resume RUN_ID"]
    assert resume and resume[0].marker and "test_crashes" in resume[0].marker
    deployment = documented_commands(PROJECT_ROOT / "docs" / "deployment.md")
    docker = [c for c in deployment if c.key.startswith("docker build")]
    assert docker and "\\\n" in docker[0].text and docker[0].key.endswith(":0.1.0 .")
    (session,) = documented_commands(PROJECT_ROOT / "docs" / "many-models.md")
    assert session.key == "lifecycle status" and session.output.startswith("model ")
    shown = shown_output_pattern(session.output)
    printed = (
        "model          serving      since                      approved by  package\n"
        "-------------  -----------  -------------------------  -----------  ------------\n"
        "breast_cancer  data-v1      2027-01-02T03:04:05+00:00  alice        0123456789ab\n"
        "diabetes       diabetes-v2  2027-01-02T03:04:06+00:00  bob          ba9876543210\n"
    )
    assert shown.search(printed)
    assert not shown.search(printed.replace("alice", "carol"))
