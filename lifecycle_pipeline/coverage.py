"""Which models a governance command covers: every model folder and every audit log on disk.

A model whose declaration does not load still has a governance history (its audit log, its
checkpoints, its ``production_model`` events), and so does a log whose model folder was
removed. A command that enumerated only the models that load would skip them without a word,
and a scheduled `audit verify` could not tell a verified model from a skipped one (issue 29).
So `audit verify`, `doctor`, `history` and `status` take their models from here: each model
that is not loaded is verified as far as its log allows without a declaration (the chain, the
keyed digests, the checkpoints, the instance's copy of its governance changes) and is reported
as not verified, naming why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lifecycle_pipeline.declaration import DECLARATION_FILE, models_dir
from lifecycle_pipeline.lineage.audit import audit_dir


def logged_models() -> list[str]:
    """The model of every audit log on disk (``<audit dir>/<model>.jsonl``), sorted."""
    folder = audit_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.jsonl") if not p.name.startswith("."))


def unloaded_models(broken: Mapping[str, Exception], loaded: Iterable[str]) -> dict[str, str]:
    """Each model on disk that is not loaded, and why: a folder whose declaration does not
    load (``broken``), or an audit log that no model folder declares."""
    # One line each: the reason is printed inside a verify report and a doctor problem line.
    why = {
        name: "its declaration does not load: " + "; ".join(str(exc).splitlines())
        for name, exc in broken.items()
    }
    known = set(loaded) | set(broken)
    for name in logged_models():
        if name not in known:
            why[name] = (
                f"no model folder declares it ({models_dir() / name / DECLARATION_FILE} does "
                "not exist), so its log was verified without a declaration"
            )
    return dict(sorted(why.items()))


def not_loaded_fix(name: str) -> str:
    """What makes a model that is not loaded verifiable again."""
    path = models_dir() / name / DECLARATION_FILE
    return (
        f"fix {path} (`lifecycle --model {name} check` names what is wrong), or restore the "
        "model folder if it was removed"
    )


def not_verified(name: str, why: str) -> str:
    """The line every covering command prints for a model that is not loaded."""
    return f"model {name} is not verified: {why}; fix: {not_loaded_fix(name)}"


def chosen_unloaded(name: str) -> dict[str, str]:
    """``--model NAME`` for a model on disk that is not loaded: ``{NAME: why}``; empty when no
    model folder or audit log of that name exists (the caller's own error then stands)."""
    from lifecycle_pipeline.declaration import declared_models, valid_model_names

    if name in declared_models():
        _, broken = valid_model_names(only=name)
        return {name: unloaded_models(broken, [])[name]} if name in broken else {}
    if name in logged_models():
        return {name: unloaded_models({}, [])[name]}
    return {}
