"""`lifecycle new-model`, `lifecycle contract infer` and `lifecycle check`: onboarding a model
and checking its declaration before any run starts."""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lifecycle_pipeline.declaration import COMPONENT_TYPE, DECLARATION_FILE
from lifecycle_pipeline.errors import ExitCode, LifecycleError

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import LoadedDeclaration


class CheckError(LifecycleError, ValueError):
    """A declaration that loads but does not fit its data."""


def select_model(name: str | None) -> None:
    """Point this process at one declared model (``--model``), checked before any command
    runs: an unknown name is refused with the declared ones listed, and nothing is created."""
    if not name:
        return
    from lifecycle_pipeline.declaration import declaration_path

    os.environ["LIFECYCLE_MODEL"] = name
    declaration_path()


def chance_gates(contract: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Gates a model must pass to beat guessing: a floor, not a target. The proposal says so;
    the team replaces them with the thresholds its use needs."""
    task = contract["task"]
    if task == "binary":
        return {"roc_auc": {"min": 0.5}}
    if task == "multiclass":
        return {"balanced_accuracy": {"min": round(1 / len(contract["classes"]), 4)}}
    return {"r2": {"min": 0.0}}


# Spellings that often mean "missing" in exported files. None of them is missing unless the
# declaration lists it (lifecycle_pipeline/missing.py); inference only points them out.
MARKER_LOOKALIKES = ("NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "?", "-", ".")


def marker_lookalikes(frame: Any, declared: tuple[str, ...]) -> dict[str, list[str]]:
    """Per text column, the undeclared values that look like missing-value markers."""
    found: dict[str, list[str]] = {}
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        present = set(values.dropna().astype(str))
        hits = [m for m in MARKER_LOOKALIKES if m in present and m not in declared]
        if hits:
            found[str(column)] = hits
    return found


def suspicious_columns(frame: Any, target: str | None) -> dict[str, str]:
    """Columns a model should not learn from, by what the sample shows: an identifier (every
    text value different, or integers counting up one per row) lets a forest memorise rows, and
    a constant carries nothing. Each name maps to the reason a reviewer reads."""
    import pandas as pd  # every `lifecycle` command loads this module; pandas only this one

    target = frame.columns[-1] if target is None else target
    found: dict[str, str] = {}
    for name in frame.columns:
        if name == target:
            continue
        values = frame[name]
        distinct = values.nunique(dropna=False)
        if distinct <= 1:
            found[str(name)] = f"constant (one value, {values.iloc[0]!r}, in {len(frame)} rows)"
        elif len(frame) > 1 and distinct == len(frame) and not values.isna().any():
            if pd.api.types.is_integer_dtype(values) and values.is_monotonic_increasing:
                found[str(name)] = "id-like (a different integer on every row, counting up)"
            elif not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(
                values
            ):
                found[str(name)] = "id-like (a different value on every row)"
    return found


def proposed_declaration(
    frame: Any,
    data_file: Path,
    target: str | None,
    name: str,
    missing_values: tuple[str, ...] = (),
    registry: str | None = None,
) -> str:
    """A model folder's defs.yaml to review: the inferred contract, a default estimator for the
    task, chance-level gates (floors the team replaces) and TODO markers where only people
    know the answer. Tags default to ``<name>-v*`` / ``<name>-batch-*``, so models sharing a
    registry never read each other's versions. ``frame`` was read with ``missing_values`` (the
    markers the team named), which the proposal declares so every later reader uses them.
    Id-like and constant columns are proposed under ``drop`` (allowed in the data, never
    features), each named in the header."""
    from lifecycle_pipeline.contract import infer_contract

    contract = infer_contract(frame, target=target)
    dropped = suspicious_columns(frame, contract["target"])
    if dropped:
        contract["features"] = {k: v for k, v in contract["features"].items() if k not in dropped}
        contract["drop"] = list(dropped)
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
            **({"registry": registry} if registry else {}),
            "path": f"data/{data_file.name}",
            "format": fmt,
            "versions": f"{name}-v*",
            "batches": f"{name}-batch-*",
            "batch_path": "batches/{key}." + fmt,
            **({"missing_values": list(missing_values)} if missing_values else {}),
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
        f"# Proposed from {data_file.name} ({len(frame)} rows). REVIEW BEFORE USE:\n"
        "# - types were read from the data; the data shows what occurred, not what is possible,\n"
        "#   so add domain `range:` bounds you know, and list `categories:` you accept;\n"
        "# - move identifiers and timestamps from `features` to `drop`;\n"
        "# - the proposed gates only require beating chance (r2 >= 0, balanced accuracy >=\n"
        "#   1/classes, ROC AUC >= 0.5): set the thresholds your use needs;\n"
        "# - write the description and what a row is.\n"
        + (
            ""
            if registry
            else "# - set data.registry to your git + DVC registry's URL or path (required).\n"
        )
        + "".join(
            f"# - proposed under `drop`, not as a feature: {column!r} is {reason}\n"
            for column, reason in dropped.items()
        )
    )
    for column, hits in marker_lookalikes(frame, missing_values).items():
        header += (
            f"# - column {column!r} holds {', '.join(repr(h) for h in hits)}: if that means "
            "missing, list it under data.missing_values\n#   (or pass --missing-values) and "
            "propose again; as is, it is a value.\n"
        )
    component = {"type": COMPONENT_TYPE, "attributes": document}
    return header + yaml.safe_dump(component, sort_keys=False, allow_unicode=True, width=100)


# The model card's human fields, each left empty (a gap the card lists) under a TODO saying
# what to write: every field of documentation.spec.REQUIRED_FIELDS, and the optional ones.
CARD_SPEC_TEMPLATE = """\
# The human-written part of {name}'s model card, datasheet and technical documentation.
# Reviewed like code. Every field below not marked optional is required: until it is filled,
# the generated card lists it as a gap instead of inventing it. Machine-knowable
# facts (data versions, metrics, hyperparameters, fingerprints) come from lineage: do not
# write them here.

model:
  name:           # TODO: a human-readable model name
  owners:         # TODO: a list of {{name, role, contact}}: who owns and who reviews it
  license:        # TODO: the model's and the data's licence terms
  contact:        # TODO: where to report a problem with the model
  citation:       # TODO (optional): how to cite the model or its data

intended_use:
  primary_uses:   # TODO: what decisions the model supports, and how its output is used
  primary_users:  # TODO: who or what consumes the predictions
  out_of_scope:   # TODO: a list of uses it must not be put to

factors:
  relevant:       # TODO: a list of groups or conditions its performance may depend on
  evaluation:     # TODO (optional): which of those the evaluation's slices cover, and why

ethical_considerations:       # TODO: harms, affected people, the costliest error
caveats_and_recommendations:  # TODO: limits of the data; what to check before using it

data:
  motivation:     # TODO: why the data was collected
  collection:     # TODO: how, where and when it was collected
  preprocessing:  # TODO: cleaning and labelling before it reached the registry
  anonymisation:  # TODO: personal data it holds and how it is protected (GDPR, HIPAA)
  uses:           # TODO: uses the data is and is not fit for
  distribution:   # TODO: who may access it, under which terms
  maintenance:    # TODO: who maintains it; how new versions are added

governance:
  responsible_person:   # TODO: who is accountable for the model in production
  retraining_protocol:  # TODO: when and how it is retrained, and who approves a promotion
  risk_notes:           # TODO: the risk assessment, and the regulation that applies
  monitoring_plan:      # TODO: what is monitored, thresholds, who is alerted
  approval_process:     # TODO (optional): who signs off a promotion, and how
"""


def check_model_name(name: str) -> str:
    """``name`` if it is a model name, else a refusal naming the rule. Checked on the name as
    given, before it becomes a path: ``models_dir() / "../evil"`` has the valid last part
    ``evil`` but is a folder outside ``models/``, and an absolute name replaces the folder."""
    from lifecycle_pipeline.declaration import _NAME

    if not _NAME.fullmatch(name):
        raise CheckError(
            f"{name!r} is not a model name: 1-48 lower-case letters, digits or '_', starting "
            "with a letter (it names the folder, the asset keys and the jobs)."
        )
    return name


def scaffold_model(
    folder: Path,
    data: Path,
    target: str | None,
    force: bool = False,
    missing_values: tuple[str, ...] = (),
    registry: str | None = None,
) -> Path:
    """Write a new model folder (defs.yaml with the contract inferred from ``data``, read with
    ``missing_values`` as markers, and a model-card spec of TODOs); refuses to overwrite an
    existing one without ``force``. A ``registry`` that is a local folder is written as an
    absolute path."""
    from lifecycle_pipeline.contract import read_local
    from lifecycle_pipeline.missing import MissingValues

    name = folder.name
    check_model_name(name)
    declaration = folder / DECLARATION_FILE
    for existing in (declaration, folder / "model_card.yaml"):
        if existing.exists() and not force:
            raise CheckError(f"{existing} exists; review it, or pass --force to replace it.")
    if registry and Path(registry).is_dir():  # the code location does not run from here
        registry = str(Path(registry).resolve())
    frame = read_local(data, missing=MissingValues(missing_values))
    files = {
        declaration: proposed_declaration(frame, data, target, name, missing_values, registry),
        folder / "model_card.yaml": CARD_SPEC_TEMPLATE.format(name=name),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():  # each file appears whole or not at all
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    return declaration


def next_steps(name: str, data: Path, registry: str | None, folder: Path) -> str:
    """What `new-model` tells a team to do next. Every command is on a line of its own after
    ``$ ``, as typed from the folder `new-model` ran in, so a test can run each one."""
    declaration = folder / DECLARATION_FILE
    target = f"data/{data.name}"
    clone = registry if registry and Path(registry).is_dir() else "YOUR_REGISTRY_CLONE"
    where = (
        ""
        if registry
        else "\n     then set `data.registry` in the declaration to the registry's git URL or path"
    )
    return f"""next steps:
  1. review {declaration}: domain ranges and categories, the columns under `drop`,
     the estimator, and the gates (the proposed ones only beat chance)
  2. publish the data in your git + DVC registry at `data.path`, tagged `{name}-v1`:
       $ mkdir -p {clone}/data && cp {data} {clone}/{target}
       $ cd {clone} && dvc add {target} && git add {target}.dvc data/.gitignore
       $ cd {clone} && git commit -m {name}-v1 && git tag {name}-v1 && dvc push{where}
  3. check the declaration, the data and the registry (tags, `data.path` at the newest tag):
       $ lifecycle check --model {name} --data {data}
  4. fill the TODOs in {folder / "model_card.yaml"}; calibrate drift alarms to the size of
     your production batches (put yours for 100) and paste the `drift:` block it prints
     into the declaration:
       $ lifecycle drift calibrate --model {name} --data {data} --batch-size 100 --false-alarm-rate 0.01
  5. commit the model's folder: a version trained from uncommitted files cannot be
     reproduced, and `lifecycle reproduce` will say so
       $ git add {folder} && git commit -m "{name}: declare the model"
  6. train, evaluate, document and package the first data version:
       $ lifecycle materialize {name}-v1 --model {name}
     or, in the Dagster UI, "Reload definitions" and switch on the sensor
     `{name}_new_data_version_sensor`, which adds each `{name}-v*` tag as a partition and
     runs `{name}_lifecycle` on it"""  # noqa: E501 (each command one line, as typed)


def _new_model(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.contract import read_local
    from lifecycle_pipeline.declaration import models_dir
    from lifecycle_pipeline.missing import MissingValues

    folder = models_dir() / check_model_name(args.name)  # before the name becomes a path
    data = Path(args.data)
    markers = _markers(args.missing_values)
    scaffold_model(folder, data, args.target, args.force, markers, args.registry)
    print(
        f"""created {folder}/
  {DECLARATION_FILE}        the declaration: contract inferred from {data.name}, default estimator
  model_card.yaml  the model card's human fields, every one a TODO (listed as gaps until filled)"""
    )
    sample = read_local(data, missing=MissingValues(markers))
    for column, reason in suspicious_columns(sample, args.target).items():
        print(f"warning: {column!r} is {reason}: proposed under `drop`, not as a feature")
    if not args.registry:
        print("warning: data.registry is not set: the model cannot read data until it is")
    print()
    print(next_steps(args.name, data, args.registry, folder))
    return ExitCode.OK


def _markers(given: str | None) -> tuple[str, ...]:
    """``--missing-values NA,?``: the markers, checked as the declaration will check them."""
    if not given:
        return ()
    markers = tuple(given.split(","))
    if "" in markers or len(set(markers)) != len(markers):
        raise CheckError(
            f"--missing-values {given!r}: give distinct, non-empty markers separated by commas "
            "(the empty field is always missing), e.g. --missing-values NA,?"
        )
    return markers


def _infer(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.contract import read_local
    from lifecycle_pipeline.missing import MissingValues

    data = Path(args.data)
    markers = _markers(args.missing_values)
    frame = read_local(data, missing=MissingValues(markers))
    output = Path(args.output)
    if output.exists() and not args.force:
        raise CheckError(f"{output} exists; review it, or pass --force to replace it.")
    text = proposed_declaration(frame, data, args.target, args.name, markers)
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


def _registry_tags(url: str) -> list[str]:
    """The registry's tag names, asked of git itself (``git ls-remote``), which answers for a
    local folder and a remote URL alike: reachable and a git repository, or a CheckError."""
    try:
        listed = subprocess.run(
            ["git", "ls-remote", "--tags", "--", url],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckError(f"data.registry {url!r} cannot be asked for its tags: {exc}") from exc
    if listed.returncode != 0:
        said = listed.stderr.strip().splitlines()
        raise CheckError(
            f"data.registry {url!r} is not a reachable git repository "
            f"({said[-1] if said else f'git ls-remote exit {listed.returncode}'}); set it to the "
            "git URL or path of the model's git + DVC data registry."
        )
    refs = (line.split("\t", 1)[-1] for line in listed.stdout.splitlines())
    return sorted({r.removeprefix("refs/tags/").removesuffix("^{}") for r in refs})


def check_registry(model: LoadedDeclaration) -> list[str]:
    """What `lifecycle check` can say about the model's registry before any run: it is set and
    reachable and a git repository, which tags match ``data.versions`` and ``data.batches``,
    and the newest data version holds ``data.path`` tracked by DVC. Each problem names the
    declaration key to fix (a CheckError, a RegistryError or a DeclarationError)."""
    from lifecycle_pipeline.resources.registry import DataRegistry

    registry = DataRegistry.for_model(model)
    url = registry.resolved_url()
    tags = _registry_tags(url)
    data = model.model.data
    versions = [t for t in tags if fnmatch.fnmatchcase(t, data.versions)]
    batches = [t for t in tags if fnmatch.fnmatchcase(t, data.batches)]
    if not versions:
        raise CheckError(
            f"no tag matches data.versions {data.versions!r} in registry {url!r} (its tags: "
            f"{', '.join(tags) or 'none'}); publish a data version under a matching tag, or "
            "correct the pattern."
        )
    if Path(url).is_dir():  # a local clone orders tags by commit, as the sensors do
        versions = [v for v in registry.versions() if v in versions] or versions
    newest = versions[-1]
    resolved = registry.resolve(newest)
    return [
        f"registry {url}: a git repository with {len(tags)} tag(s)",
        f"data.versions {data.versions!r} matches {', '.join(versions)}",
        f"data.batches {data.batches!r} matches {', '.join(batches) or 'none yet'}",
        f"data.path {data.path!r} at {newest} (newest): tracked by DVC, md5 {resolved.md5}, "
        f"{resolved.size} bytes",
    ]


def _check(args: argparse.Namespace) -> int:
    from lifecycle_pipeline.contract import read_local
    from lifecycle_pipeline.declaration import declaration_path, load_declaration

    if not args.declaration and not os.environ.get("LIFECYCLE_MODEL"):
        if args.data or args.batch:
            raise CheckError("--data and --batch check one model: name it with --model NAME.")
        return _check_every_model()
    model = load_declaration(Path(args.declaration) if args.declaration else declaration_path())
    print(
        f"{model.path}: declaration valid ({model.name}, {model.model.contract.task}, "
        f"sha256 {model.sha256[:12]})"
    )
    if args.data:
        frame = read_local(
            Path(args.data),
            model.model.data.format,
            model.model.contract,
            model.model.data.missing,
        )
        problems = check_against_data(model, frame, args.data)
        if problems:
            raise CheckError("\n".join(problems))
        print(f"{args.data}: satisfies the contract ({len(frame)} rows)")
    if args.batch:
        from lifecycle_pipeline.assets.monitoring import read_batch

        raw = Path(args.batch).read_bytes()
        batch = read_batch(model, raw, source=args.batch)  # the drift monitor's own rules
        print(
            f"{args.batch}: a production batch that satisfies the contract ({len(batch)} rows; "
            "the target is not required, extra columns are ignored)"
        )
    if args.offline:
        print("registry not checked (--offline)")
    else:
        for line in check_registry(model):
            print(line)
    for warning in drift_warnings(model, Path(args.data) if args.data else None):
        print(f"warning: {warning}", file=sys.stderr)
    return ExitCode.OK


def drift_warnings(model: Any, data: Path | None) -> list[str]:
    """Drift thresholds that do not hold at the declared batch size: warned, not failed (a
    noisy monitor is a cost, not a broken declaration). Measuring needs reference rows, so
    without ``data`` only the calibration record is compared with the declared thresholds."""
    drift = model.model.drift
    command = f"lifecycle --model {model.name} drift calibrate"
    found = [
        f"{mismatch}: the calibration record describes other settings; run `{command}` again"
        for mismatch in drift.calibration_mismatches(len(model.model.drift_columns))
    ]
    if drift.batch_size is None or drift.false_alarm_rate is None:
        # Informational, on stdout: nothing declared is contradicted, but nothing is known.
        print(
            "drift: thresholds not calibrated to a batch size; declare drift.batch_size and "
            f"drift.false_alarm_rate, and run `{command}`"
        )
        return found
    if data is None:
        print(
            f"drift: thresholds not measured at batch size {drift.batch_size} "
            "(give --data FILE to measure their false-alarm rates)"
        )
        return found
    from lifecycle_pipeline.cli_drift import inputs_from_data, measure
    from lifecycle_pipeline.monitoring.calibration import DEFAULT_DRAWS, DEFAULT_SEED

    record = drift.calibration
    draws = record.draws if record else DEFAULT_DRAWS
    seed = record.seed if record else DEFAULT_SEED
    calm = measure(
        model, inputs_from_data(model, data), batch_size=drift.batch_size, draws=draws, seed=seed
    )
    rates = calm.rates(drift)
    target = drift.false_alarm_rate
    print(
        f"drift: at batch size {drift.batch_size}, the declared thresholds raised the verdict "
        f"on {rates.verdict:.3f} of {draws} calm batches (target {target:g})"
    )
    if rates.verdict > target:
        kinds = ", ".join(f"one {kind} column {rate:.3f}" for kind, rate in rates.per_kind.items())
        found.append(
            f"drift: the declared thresholds raise the verdict on {rates.verdict:.3f} of calm "
            f"{drift.batch_size}-row batches, above drift.false_alarm_rate {target:g} "
            f"({kinds}); run `{command} --data {data}` for thresholds that hold"
        )
    prediction = rates.per_kind.get("prediction")
    if prediction is not None and prediction > target:
        found.append(
            f"drift: the prediction test drifts on {prediction:.3f} of calm "
            f"{drift.batch_size}-row batches, above {target:g} (reported apart from the "
            f"verdict); `{command}` proposes a threshold for it"
        )
    return found


def _check_every_model() -> int:
    """Every model folder: what CI runs, so one team's typo fails their pull request, not the
    deployment (where it would only be excluded)."""
    from lifecycle_pipeline.declaration import load_every_model, models_dir

    models, broken = load_every_model()
    for model in models:
        print(f"{model.path}: declaration valid ({model.name}, {model.model.contract.task})")
    for error in broken.values():
        print(str(error), file=sys.stderr)
    if not models and not broken:
        raise CheckError(f"no model folders under {models_dir()} (each holds a {DECLARATION_FILE})")
    return ExitCode.NEGATIVE if broken else ExitCode.OK


_MISSING_HELP = (
    "comma-separated field values that mean missing besides the empty field, e.g. 'NA,?' "
    "(declared as data.missing_values)"
)


def register(commands: Any) -> None:
    new = commands.add_parser(
        "new-model",
        help="Create models/NAME/: a declaration inferred from a data file and a model-card "
        "spec of TODOs (same as `dg scaffold defs lifecycle_pipeline.LifecycleModel NAME`).",
    )
    new.add_argument("name", help="model name: lower-case letters, digits, '_' (the folder)")
    new.add_argument("--data", required=True, help="a CSV or Parquet sample of the training data")
    new.add_argument("--target", help="the label or target column (default: the last column)")
    new.add_argument("--force", action="store_true", help="replace an existing declaration")
    new.add_argument("--missing-values", help=_MISSING_HELP)
    new.add_argument(
        "--registry", help="git URL or path of the model's data registry (data.registry)"
    )
    new.set_defaults(handler=_new_model)
    contract = commands.add_parser("contract", help="Work with a model's data contract.")
    actions = contract.add_subparsers(dest="action", required=True)
    infer = actions.add_parser(
        "infer", help="Propose a declaration from a data file (written for review, never applied)."
    )
    infer.add_argument("--data", required=True, help="a CSV or Parquet file of the training data")
    infer.add_argument("--target", help="the label or target column (default: the last column)")
    infer.add_argument("--name", default="my_model", help="model name (lower case, digits, _)")
    infer.add_argument("--output", default=DECLARATION_FILE, help="where to write the proposal")
    infer.add_argument("--force", action="store_true", help="replace an existing file")
    infer.add_argument("--missing-values", help=_MISSING_HELP)
    infer.set_defaults(handler=_infer)
    check = commands.add_parser(
        "check", help="Validate a model declaration (and optionally a data file against it)."
    )
    check.add_argument(
        "declaration",
        nargs="?",
        help="a defs.yaml or model folder (default: --model, else every model)",
    )
    check.add_argument("--data", help="a local data file to check against the contract")
    check.add_argument(
        "--batch",
        help="a local production batch to check against the contract (no target needed)",
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="do not reach the registry (by default a single model's registry, tag patterns "
        "and data.path at the newest data version are checked)",
    )
    check.set_defaults(handler=_check)
