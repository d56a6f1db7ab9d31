"""The progress-callback convention: techniques report, the CLI draws the bar."""

from __future__ import annotations

from collections.abc import Callable

# progress(done, total, message): `done` of `total` units of work finished; message says where.
ProgressCallback = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:
    """The default callback: ignore progress."""
