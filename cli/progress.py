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
    # made on the first report: a bar made up front prints a stray "0step" line when a command
    # turns out to have nothing to do
    bars: list[tqdm] = []

    def update(done: int, total: int, message: str) -> None:
        if not bars:
            # a bar counted in percent shows no rate ("%/s" means nothing to a reader)
            fmt = (
                "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]" if unit == "%" else None
            )
            bars.append(
                tqdm(total=total, unit=unit, dynamic_ncols=True, leave=False, bar_format=fmt)
            )
        bar = bars[0]
        if bar.total != total:
            bar.total = total
        bar.set_description_str(message, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.refresh()  # the last report is drawn even inside tqdm's redraw interval

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()
