"""Turn the errors a user can fix into one line: which file, column or setting, and what to do."""

from __future__ import annotations


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for a genuine bug (let it surface)."""
    from connectors.braze.outcomes import BrazeConfigError
    from connectors.sources import SourceError
    from transforms.normalize import NormalizeError

    if isinstance(exc, (SourceError, NormalizeError, BrazeConfigError)):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return user_message(cause)
    return None
