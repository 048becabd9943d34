"""The lifecycle model component: one folder under ``models/`` is one model in the deployment.

A model folder holds ``defs.yaml`` (``type: lifecycle_pipeline.LifecycleModel`` and the
declaration as ``attributes``) and the model card's reviewed spec. Dagster's own defs-folder
loading instantiates one ``LifecycleModel`` per folder, so ``dg list defs``, ``dg check yaml``
and ``dg check defs`` work on the models, ``dg list components`` and ``dg utils
inspect-component`` show the component's description and schema (the declaration's), and
adding a model is adding a folder.

Every model's definitions are namespaced by its name (``LoadedDeclaration.key`` / ``scoped``):
asset keys under its prefix, one asset group, its own partition sets, jobs, sensors, schedule,
registry resource and ``production_model``. A declaration that does not load is not fatal to
the other models: ``load_models`` reports it as a ``BrokenModel`` (file, line, error), which
the code location shows as a single unmaterializable asset in that model's group.
"""

from __future__ import annotations

import contextvars
import re
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field
from pydantic.warnings import PydanticDeprecatedSince20

from lifecycle_pipeline.declaration import (
    DECLARATION_FILE,
    DeclarationError,
    LoadedDeclaration,
    ModelDeclaration,
    declared_models,
    load_model_folder,
    remember_valid,
)
from lifecycle_pipeline.resources.registry import DataRegistry

# What ``load_models`` applies to every model it builds (a deployment's registry overrides, the
# retrain cron): set around Dagster's loading, which calls ``LifecycleModel.build_defs``.
_OVERRIDES: contextvars.ContextVar[tuple[DataRegistry | None, str | None]] = contextvars.ContextVar(
    "lifecycle_overrides", default=(None, None)
)


class DeclarationAttributes(BaseModel):
    """The declaration as written. Its JSON schema is the declaration's, so ``dg check yaml``
    checks every field and dg's component docs show them; at load, ``LifecycleModel.load`` validates
    it with file and line numbers, and a model that fails is reported, not fatal."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return ModelDeclaration.model_json_schema(*args, **kwargs)


class NewModelParams(BaseModel):
    """What `dg scaffold defs lifecycle_pipeline.LifecycleModel NAME` needs to propose a model."""

    data: str = Field(description="A CSV or Parquet sample of the training data.")
    target: str | None = Field(
        default=None, description="The label or target column (default: the last column)."
    )
    registry: str | None = Field(
        default=None, description="Git URL or path of the model's data registry (data.registry)."
    )


class LifecycleModelScaffolder(dg.Scaffolder[NewModelParams]):
    """`dg scaffold defs lifecycle_pipeline.LifecycleModel NAME --json-params '{"data": F}'`
    writes what `lifecycle new-model NAME --data F` writes."""

    @classmethod
    def get_scaffold_params(cls) -> type[NewModelParams]:
        return NewModelParams

    def scaffold(self, request: dg.ScaffoldRequest[NewModelParams]) -> None:
        from lifecycle_pipeline.cli_model import scaffold_model

        params = request.params
        scaffold_model(
            Path(request.target_path), Path(params.data), params.target, registry=params.registry
        )


@dg.scaffold_with(LifecycleModelScaffolder)
class LifecycleModel(dg.Component):
    """One declared model's lifecycle: data snapshot, features, training, evaluation, model
    card, signed deployment package, drift monitor and production_model, with its partitions,
    jobs, sensors and retraining schedule, all namespaced by the model's name.

    The attributes are the model declaration (data, contract, estimator, evaluation, drift,
    documentation, schedule); see docs/declaring-a-model.md.
    """

    def __init__(self, declaration: LoadedDeclaration) -> None:
        self.declaration = declaration

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return DeclarationAttributes

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> LifecycleModel:
        # Re-read from the file (not ``attributes``): errors then name its lines, and the
        # lineage records the digest of exactly these bytes.
        loaded = load_model_folder(Path(context.path))
        remember_valid(loaded)
        return cls(loaded)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from lifecycle_pipeline.definitions import model_definitions

        registry, cron = _OVERRIDES.get()
        return model_definitions(self.declaration, registry, cron)


class ModelBuildError(RuntimeError):
    """Building a model's definitions failed for a reason that is not its declaration: a
    defect in this package (or the environment). Not a :class:`LifecycleError`: it must fail
    the code location (and exit 3 in the CLI) with the traceback, never be shown as a team's
    broken YAML."""


@dataclass(frozen=True)
class BrokenModel:
    """A model folder whose declaration did not load, and why (file, line, field)."""

    name: str
    path: Path
    error: str

    def spec(self) -> dg.AssetSpec:
        """What the UI shows in place of the model: one asset in its group, naming the error."""
        return dg.AssetSpec(
            dg.AssetKey([self.name, "declaration"]),
            # A folder name need not be a valid model name (that may be the very error), and
            # an invalid group name would fail the whole code location.
            group_name=re.sub(r"[^A-Za-z0-9_]", "_", self.name),
            kinds={"yaml"},
            tags={"lifecycle/broken": "true"},
            description=f"BROKEN DECLARATION: {self.name} is not loaded, so none of its runs, "
            f"sensors or schedule exist until it is fixed.\n\n{self.error}",
            metadata={
                "declaration/path": dg.MetadataValue.path(str(self.path)),
                "declaration/error": dg.MetadataValue.text(self.error),
            },
        )


@dataclass(frozen=True)
class LoadedModels:
    """Every model folder's definitions, and the folders that failed to load."""

    definitions: list[dg.Definitions]
    broken: list[BrokenModel]


def _defs_module(directory: Path) -> types.ModuleType:
    """The models folder as the root module of Dagster's component tree.

    A module object rather than an import: the folder holds YAML only, and a project copied
    elsewhere (or ``LIFECYCLE_MODELS_DIR``) must load its own folder, not whichever
    ``models`` package the interpreter would find first.
    """
    module = types.ModuleType("models")
    module.__path__ = [str(directory)]
    module.__file__ = None
    return module


def load_models(
    directory: Path,
    project_root: Path,
    registry: DataRegistry | None = None,
    retrain_cron: str | None = None,
) -> LoadedModels:
    """Each model folder loaded on its own by Dagster's component loading; a folder that fails
    (bad YAML, an invalid declaration, an estimator that does not import) becomes a
    ``BrokenModel`` and the others load as if it were not there. ``registry`` and
    ``retrain_cron`` apply to every model, as ``build_definitions`` documents."""
    directory, project_root = directory.resolve(), project_root.resolve()
    loaded: list[dg.Definitions] = []
    broken: list[BrokenModel] = []
    token = _OVERRIDES.set((registry, retrain_cron))
    try:
        for name in declared_models(directory):
            _load_one(project_root, directory, name, loaded, broken)
    finally:
        _OVERRIDES.reset(token)
    return LoadedModels(loaded, broken)


def _load_one(
    project_root: Path,
    directory: Path,
    name: str,
    loaded: list[dg.Definitions],
    broken: list[BrokenModel],
) -> None:
    """One model folder, as a component tree of its own: a tree rooted at the models folder
    parses every folder's defs.yaml on first use, so one model's YAML that does not parse, an
    unknown top-level key or a ``type:`` naming no component made every model broken.

    Only a declaration problem makes the model a ``BrokenModel``; anything else is a defect in
    this package and is raised as :class:`ModelBuildError`, which fails the code location."""
    from dagster.components.core.component_tree import ComponentTree

    folder = directory / name
    try:
        with warnings.catch_warnings():  # Dagster's own, from its component loading
            warnings.simplefilter("ignore", dg.BetaWarning)
            warnings.simplefilter("ignore", dg.PreviewWarning)
            warnings.simplefilter("ignore", PydanticDeprecatedSince20)  # its parse_obj_as
            tree = ComponentTree.from_module(
                defs_module=_defs_module(folder), project_root=project_root
            )
            loaded.append(tree.build_defs_at_path(folder))
    except Exception as exc:
        if not is_declaration_problem(exc):
            defect = _innermost(exc)  # Dagster's wrapper only draws the component tree
            raise ModelBuildError(
                f"building model {name!r} ({folder}) failed with a defect in "
                f"lifecycle_pipeline, not in its declaration: {type(defect).__name__}: "
                f"{defect}. The code location does not load until it is fixed; the traceback "
                "above is the defect's: please report it."
            ) from defect
        broken.append(BrokenModel(name, folder / DECLARATION_FILE, _explain(exc)))


def is_declaration_problem(exc: BaseException) -> bool:
    """Whether an error building a model's definitions is the declaration's: our
    ``DeclarationError`` (which covers an estimator that does not import), YAML that does not
    parse, a ``defs.yaml`` whose top level is not a component file (Dagster's
    ``ComponentFileModel``), or a ``type:`` naming no component. Anything else in the chain is
    not the team's to fix."""
    import yaml
    from dagster_shared.error import DagsterUnresolvableSymbolError
    from pydantic import ValidationError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DeclarationError | yaml.YAMLError | DagsterUnresolvableSymbolError):
            return True
        if isinstance(seen, ValidationError) and seen.title == "ComponentFileModel":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _innermost(exc: BaseException) -> BaseException:
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def _explain(exc: BaseException) -> str:
    """The most specific message in the chain: ours name file, line and field; otherwise the
    innermost cause (Dagster's outer error only draws the component tree)."""
    seen: BaseException | None = exc
    innermost = exc
    while seen is not None:
        if isinstance(seen, DeclarationError):
            return str(seen)
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    return f"{type(innermost).__name__}: {innermost}"
