"""`lifecycle contract infer` and `lifecycle check`: onboarding a model and checking its
declaration before any run starts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import yaml

from lifecycle_pipeline.errors import ExitCode, LifecycleError


class CheckError(LifecycleError, ValueError):
    """A declaration that loads but does not fit its data."""


def model_locations(name: str) -> dict[str, str]:
    """Where a model other than the default keeps its Dagster instance and artifacts, until
    several models share one deployment: ``$LIFECYCLE_HOME/models/<name>/``."""
    from lifecycle_pipeline.settings import Settings

    home = Settings.from_env().home / "models" / name
    return {
        "DAGSTER_HOME": str(home / "dagster_home"),
        "LIFECYCLE_ARTIFACT_ROOT": str(home / "artifacts"),
    }


def select_model(name: str | None) -> None:
    """Point this process at one declared model (``--model``).

    A model other than the default gets its own Dagster instance and artifact store (see
    ``model_locations``) unless ``DAGSTER_HOME`` / ``LIFECYCLE_ARTIFACT_ROOT`` are set, so
    that two models' histories, partitions and promotions never mix.
    """
    if not name:
        return
    from lifecycle_pipeline.declaration import declaration_path, load_declaration
    from lifecycle_pipeline.settings import Settings

    os.environ["LIFECYCLE_MODEL"] = name
    model = load_declaration(declaration_path())
    if model.name != Settings.from_env().default_model:
        for variable, value in model_locations(model.name).items():
            os.environ.setdefault(variable, value)


def chance_gates(contract: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Gates a model must pass to beat guessing: a floor, not a target. The proposal says so;
    the team replaces them with the thresholds its use needs."""
    task = contract["task"]
    if task == "binary":
        return {"roc_auc": {"min": 0.5}}
    if task == "multiclass":
        return {"balanced_accuracy": {"min": round(1 / len(contract["classes"]), 4)}}
    return {"r2": {"min": 0.0}}


def proposed_declaration(frame: Any, data_file: Path, target: str | None, name: str) -> str:
    """A declaration to review: the inferred contract, a default estimator for the task, no
    gates (the team decides them) and TODO markers where only people know the answer."""
    from lifecycle_pipeline.contract import infer_contract

    contract = infer_contract(frame, target=target)
    task = contract["task"]
    estimator = (
        "sklearn.ensemble.RandomForestRegressor"
        if task == "regression"
        else "sklearn.ensemble.RandomForestClassifier"
    )
    fmt = "parquet" if data_file.suffix in (".parquet", ".pq") else "csv"
    document = {
        "name": name,
        "description": "TODO: what the model is for, in one or two sentences",
        "data": {
            "path": f"data/{data_file.name}",
            "format": fmt,
            "versions": "data-v*",
            "batches": "batch-*",
            "batch_path": "batches/{key}." + fmt,
        },
        "contract": contract,
        "estimator": {
            "class": estimator,
            "params": {"n_estimators": 100, "min_samples_leaf": 2},
            "trusted_types": ["sklearn.tree._tree.Tree"],
        },
        "evaluation": {"gates": chance_gates(contract), "slices": []},
        "documentation": {"spec": "model_card.yaml"},
    }
    header = (
        f"# Proposed by `lifecycle contract infer --data {data_file}`. REVIEW BEFORE USE:\n"
        "# - types were read from the data; the data shows what occurred, not what is possible,\n"
        "#   so add domain `range:` bounds you know, and list `categories:` you accept;\n"
        "# - move identifiers and timestamps from `features` to `drop`;\n"
        "# - the proposed gates only require beating chance (r2 >= 0, balanced accuracy >=\n"
        "#   1/classes, ROC AUC >= 0.5): set the thresholds your use needs;\n"
        "# - write the description and what a row is.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _infer(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.contract import read_local

    data = Path(args.data)
    frame = read_local(data)
    output = Path(args.output)
    if output.exists() and not args.force:
        raise CheckError(f"{output} exists; review it, or pass --force to replace it.")
    text = proposed_declaration(frame, data, args.target, args.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)
    print(f"wrote {output}: a proposal from {len(frame)} rows; review it before use.")
    return ExitCode.OK


def check_against_data(model: Any, frame: Any, source: str) -> list[str]:
    """What the declaration says that this data contradicts (empty when they agree)."""
    from lifecycle_pipeline.contract import DataValidationError, validate

    try:
        validate(frame, model.model.contract, source=source, declaration=str(model.path))
    except DataValidationError as exc:
        return [str(exc)]
    return []


def _check(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.contract import read_local
    from lifecycle_pipeline.declaration import declaration_path, load_declaration

    model = load_declaration(Path(args.declaration) if args.declaration else declaration_path())
    print(
        f"{model.path}: declaration valid ({model.name}, {model.model.contract.task}, "
        f"sha256 {model.sha256[:12]})"
    )
    if args.data:
        frame = read_local(Path(args.data), model.model.data.format, model.model.contract)
        problems = check_against_data(model, frame, args.data)
        if problems:
            raise CheckError("\n".join(problems))
        print(f"{args.data}: satisfies the contract ({len(frame)} rows)")
    return ExitCode.OK


def register(commands: Any) -> None:
    contract = commands.add_parser("contract", help="Work with a model's data contract.")
    actions = contract.add_subparsers(dest="action", required=True)
    infer = actions.add_parser(
        "infer", help="Propose a declaration from a data file (written for review, never applied)."
    )
    infer.add_argument("--data", required=True, help="a CSV or Parquet file of the training data")
    infer.add_argument("--target", help="the label or target column (default: the last column)")
    infer.add_argument("--name", default="my_model", help="model name (lower case, digits, _)")
    infer.add_argument("--output", default="model.yaml", help="where to write the proposal")
    infer.add_argument("--force", action="store_true", help="replace an existing file")
    infer.set_defaults(handler=_infer)
    check = commands.add_parser(
        "check", help="Validate a model declaration (and optionally a data file against it)."
    )
    check.add_argument(
        "declaration",
        nargs="?",
        help="model.yaml or model folder (default: --model / $LIFECYCLE_MODEL)",
    )
    check.add_argument("--data", help="a local data file to check against the contract")
    check.set_defaults(handler=_check)
