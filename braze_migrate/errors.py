"""Turn the errors a user can fix into one line: which file, column or setting, and what to do.

`user_failure` also says which kind of failure it is, so the CLI can give each its own exit code: a bad
setting or input (`config`), a state folder that does not hold what the ledger recorded (`damaged`), and
a state folder that cannot be written (`unusable`: disk full, read-only, another owner).
"""

from __future__ import annotations

import sqlite3
from typing import Literal

Kind = Literal["config", "damaged", "unusable"]


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for a genuine bug (let it surface)."""
    failure = user_failure(exc)
    return failure[1] if failure is not None else None


def user_failure(exc: BaseException) -> tuple[Kind, str] | None:
    """(kind, one-line message) for an error the user can act on; None for a genuine bug."""
    from connectors.braze.outcomes import BrazeConfigError
    from connectors.braze.ratelimit import RateBudgetError
    from connectors.sources import SourceError
    from connectors.state.integrity import StateDamaged, damaged_ledger
    from connectors.state.private import StateUnusable, unusable
    from transforms.normalize import NormalizeError

    if isinstance(exc, StateDamaged):
        return "damaged", _line(exc)
    if isinstance(exc, StateUnusable):
        return "unusable", _line(exc)
    if isinstance(exc, (SourceError, NormalizeError, BrazeConfigError, RateBudgetError)):
        return "config", _line(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (damage := damaged_ledger(exc)) is not None:
        return "damaged", _line(damage)
    if isinstance(exc, (OSError, sqlite3.Error)) or type(exc).__module__.startswith("polars"):
        found = unusable(exc)
        if found is not None:
            return "unusable", _line(found)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return user_failure(cause)
    return None


def _line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
