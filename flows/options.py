"""Flow parameters generated from the options model: every load flow takes each option of
`braze_migrate.settings.LoadSettings` (name, type, default, description) as a parameter, so a new option
reaches the flows, the deployments' forms in the Prefect UI and `prefect.yaml` checks without editing them."""

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
        added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_plain(field.default),
                                       annotation=str if field.annotation is Path else field.annotation))
        docs.append(f"    {name}: {field.description} (environment BRAZE_MIGRATE_{name.upper()})")
    fn.__signature__ = sig.replace(parameters=[*own, *added])
    fn.__annotations__ = {**{p.name: p.annotation for p in own + added}, "return": sig.return_annotation}
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\nArgs:\n" + "\n".join(docs) + "\n"
    return fn


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
