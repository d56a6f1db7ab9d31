"""The one exception type users see: a message that names the bad value and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VizError(ValueError):
    """A problem with the user's input; the CLI shows its message as one line, without a traceback."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The names in `choices` most similar to `name` (for "did you mean" hints)."""
    pool = list(choices)
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not found:
        # Fall back to prefix/substring matches so "blocks.3" still finds "_blocks.3".
        found = [c for c in pool if name.lower() in c.lower()][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str], what: str) -> str:
    """A one-line message for an unknown `name` among `choices`."""
    pool = list(choices)
    near = closest(name, pool)
    if near:
        return f"unknown {what} {name!r}; did you mean: {', '.join(near)}?"
    shown = ", ".join(pool[:8]) + (", ..." if len(pool) > 8 else "")
    return f"unknown {what} {name!r}; valid ones include: {shown}"


class InputRangeWarning(UserWarning):
    """Images handed in lie well outside [0, 1]: most likely normalized already (captum style)."""
