"""The progress-callback convention: techniques report, the CLI draws the bar."""

from __future__ import annotations

from collections.abc import Callable

# progress(done, total, message): `done` of `total` units of work finished; message says where.
ProgressCallback = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:
    """The default callback: ignore progress."""


def scaled_progress(
    progress: ProgressCallback, position: int, count: int, label: str = ""
) -> ProgressCallback:
    """Part `position` of `count` equal parts of one bar (100 ticks each), for one piece of work.

    The piece's own `(done, total)` becomes its share of the part; `label` prefixes its message.

    Example:
        >>> first = scaled_progress(progress, 0, 2, "top-k")  # (5, 10, m) -> (50, 200, "top-k m")
    """

    def report(done: int, total: int, message: str) -> None:
        share = (100 * done) // total if total else 100
        progress(position * 100 + share, count * 100, f"{label} {message}".strip())

    return report
