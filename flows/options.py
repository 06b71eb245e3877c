"""Flow parameters generated from the options model: every load flow takes each option of
`braze_migrate.settings.LoadSettings` (name, type, description) as a parameter, so a new option reaches the
flows, the deployments' forms in the Prefect UI and `prefect.yaml` checks without editing them.

A parameter left unset (None) is resolved where the flow runs, like a CLI flag left out: the environment
variable BRAZE_MIGRATE_<NAME> of that process, else the model's default (named in the parameter's help).
So a worker's environment still configures what a deployment does not set."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from braze_migrate.settings import LoadSettings, flow_options


def with_options(**own_help: str):
    """Give `fn(..., **options)` one keyword parameter per flow option, with the model's default and help
    (`own_help`: the help of the function's own parameters, for the UI form).

    Prefect reads a flow's parameters from its signature (validation, the UI form, deployments), so the
    generated `__signature__` is what it sees; the function receives the options in `**options`. Apply it
    under `@flow`."""
    return lambda fn: _with_options(fn, own_help)


def _with_options(fn, own_help: dict[str, str]):
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in own}
    added, docs = [], [f"    {name}: {text}" for name, text in own_help.items()]
    for name in flow_options():
        if name in taken:
            raise TypeError(f"{fn.__name__} declares option {name!r} itself: options come from LoadSettings")
        field = LoadSettings.model_fields[name]
        kind = str if field.annotation is Path else field.annotation
        added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                       annotation=kind | None))
        docs.append(f"    {name}: {field.description} (unset: BRAZE_MIGRATE_{name.upper()} where the flow runs, "
                    f"else {_plain(field.default)})")
    fn.__signature__ = sig.replace(parameters=[*own, *added])
    fn.__annotations__ = {**{p.name: p.annotation for p in own + added}, "return": sig.return_annotation}
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\nArgs:\n" + "\n".join(docs) + "\n"
    return fn


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
