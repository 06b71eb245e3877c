"""Flow parameters generated from the options model: every load flow takes one typed parameter per section of
`braze_migrate.settings.LoadSettings` (`SECTIONS`: requests, retries, guards, ...), each a model whose fields are
that section's options with their types, defaults and help; so a new option reaches the flows, the deployments'
Parameters tab and custom-run form in the Prefect UI and the `prefect.yaml` checks without editing them.

Resolution (docs/prefect.md, "Parameters"): a field the run's parameters set wins (the deployment's parameters,
the custom-run form, which sends every field it shows, `-p`/`--params`, a direct call); a field they leave out
is BRAZE_MIGRATE_<NAME> of the process the flow runs in, else the model's default
(`settings.settings_from_parameters`)."""

from __future__ import annotations

import inspect

from braze_migrate.settings import flow_sections, section_model


def with_sections(sections: list[str] | None = None, **own_help: str):
    """Give `fn(..., **sections)` one keyword parameter per section (`sections`; default: every section of the
    load flows' options), typed with the section's model and defaulting to it with nothing set (`own_help`: the
    help of the function's own parameters, for the UI form).

    Prefect reads a flow's parameters from its signature (validation, the UI form, deployments), so the
    generated `__signature__` is what it sees; the function receives the section models in `**sections`.
    Apply it under `@flow`."""
    return lambda fn: _with_sections(fn, flow_sections() if sections is None else sections, own_help)


def _with_sections(fn, sections: list[str], own_help: dict[str, str]):
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in own}
    added = []
    for name in sections:
        if name in taken:
            raise TypeError(f"{fn.__name__} declares section {name!r} itself: sections come from LoadSettings")
        model = section_model(name)
        added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=model(), annotation=model))
    fn.__signature__ = sig.replace(parameters=[*own, *added])
    fn.__annotations__ = {**{p.name: p.annotation for p in own + added}, "return": sig.return_annotation}
    docs = [f"    {name}: {text}" for name, text in own_help.items()]
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\nArgs:\n" + "\n".join(docs) + "\n"
    return fn
