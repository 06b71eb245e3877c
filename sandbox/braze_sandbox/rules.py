"""The validation limits of one server, derived once from its SandboxConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from braze_sandbox.config import SandboxConfig


@dataclass(frozen=True, slots=True)
class Rules:
    """Limits the per-object validators read on every object (kept flat for speed).

    `name_cache` remembers what each attribute name means and `value_cache` the verdicts on
    standard fields with few distinct values (attributes.py), since one load sends the same names
    and countries millions of times.
    """

    max_string_length: int
    max_array_length: int
    push_apps: dict
    blocked_external_ids: frozenset[str]
    name_cache: dict = field(default_factory=dict, compare=False)
    value_cache: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Rules:
        """Build the rules; blocked external ids compare case-insensitively."""
        return cls(
            max_string_length=config.max_string_length,
            max_array_length=config.max_array_length,
            push_apps=dict(config.push_apps),
            blocked_external_ids=frozenset(x.lower() for x in config.blocked_external_ids),
        )
