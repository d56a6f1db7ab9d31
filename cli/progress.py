"""A tqdm bar behind vizcnn's `progress(done, total, message)` callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from vizcnn.core.progress import ProgressCallback, no_progress


@contextmanager
def progress_bar(enabled: bool, unit: str = "step") -> Iterator[ProgressCallback]:
    """Yield a callback that drives one tqdm bar on stderr (or does nothing when disabled)."""
    if not enabled:
        yield no_progress
        return
    bar = tqdm(total=0, unit=unit, dynamic_ncols=True, leave=False)

    def update(done: int, total: int, message: str) -> None:
        if bar.total != total:
            bar.total = total
        bar.set_description_str(message, refresh=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
