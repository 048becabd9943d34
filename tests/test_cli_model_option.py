"""`--model NAME` where users put it: before the subcommand, or after it, for every command.

The command lines are derived from the parser itself (every leaf subcommand, its required
arguments filled in), so a command added later is covered without editing this file.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from lifecycle_pipeline.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """The smallest argument list the parser accepts: each positional and required option."""
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        value = str(action.choices[0]) if action.choices else "x"  # type: ignore[index]
        if not action.option_strings:
            if action.nargs not in ("?", "*"):
                words.append(value)
        elif action.required:
            words += [action.option_strings[0], value]
    return words


def _leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    children = _subparsers(parser)
    if not children:
        yield path, _required_arguments(parser)
    for name, child in children.items():
        yield from _leaf_commands(child, (*path, name))


COMMANDS = list(_leaf_commands(build_parser()))


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"check", "materialize", "status", "audit", "contract infer"} <= names


@pytest.mark.parametrize(("path", "arguments"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_model_is_accepted_before_and_after_the_subcommand(
    path: tuple[str, ...], arguments: list[str]
) -> None:
    parser = build_parser()
    before = parser.parse_args(["--model", "loans", *path, *arguments])
    after = parser.parse_args([*path, *arguments, "--model", "loans"])
    between = parser.parse_args([*path, "--model", "loans", *arguments])
    assert before.model == after.model == between.model == "loans"


def test_a_subcommand_without_model_keeps_the_global_one() -> None:
    """The subcommand's copy of the option must not overwrite the global value with None."""
    parser = build_parser()
    assert parser.parse_args(["--model", "loans", "check"]).model == "loans"
    assert parser.parse_args(["check"]).model is None
