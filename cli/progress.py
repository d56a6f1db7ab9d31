"""vizcnn's `progress(done, total, message)` callback drawn on stderr.

On a terminal: a tqdm bar. Elsewhere (a log file, a pipe, CI) a bar's carriage-return redraws
turn into hundreds of lines, so a plain line is written at most every `PLAIN_INTERVAL_S`
seconds and once at the end of each stage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from tqdm import tqdm

from vizcnn.core.progress import ProgressCallback, no_progress

PLAIN_INTERVAL_S = 5.0  # seconds between two plain progress lines (not on a terminal)


def _elapsed(seconds: float) -> str:
    """0:41, 12:05, 1:02:03."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PlainProgress:
    """A progress callback that writes throttled plain lines, no carriage returns.

    A line ("render: 12/64 step (19%) 0:41 elapsed") is written when `interval` seconds have
    passed since the stage began or since the last line, and when `done` reaches `total`;
    `close()` writes the last report if no line showed it yet (a stage that ended early).

    Args:
        unit: what `done` counts ("%" when it counts percent: then no "12/64").
        write: takes one line (without newline).
        clock: seconds, monotonic (injected by tests).
        interval: least seconds between two lines, except the stage's last.
    """

    def __init__(
        self,
        unit: str,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        interval: float = PLAIN_INTERVAL_S,
    ) -> None:
        self.unit = unit
        self.write = write
        self.clock = clock
        self.interval = interval
        self.started: float | None = None
        self.last_line = 0.0  # clock time of the last line (or of the start)
        self.pending: tuple[int, int, str] | None = None  # the last report, if not written
        self.finished = False  # a line with done >= total was written

    def __call__(self, done: int, total: int, message: str) -> None:
        now = self.clock()
        if self.started is None:
            self.started = self.last_line = now
        complete = total > 0 and done >= total
        if complete and self.finished:
            self.pending = None  # the end of this stage is already written
            return
        self.finished = False
        self.pending = (done, total, message)
        if complete or now - self.last_line >= self.interval:
            self._line(now)
            self.finished = complete

    def close(self) -> None:
        """Write the last report if no line showed it."""
        if self.pending is not None:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        if self.pending is None or self.started is None:
            return
        done, total, message = self.pending
        self.pending = None
        self.last_line = now
        share = min(100, (100 * done) // total) if total > 0 else 100
        count = f"{share}%" if self.unit == "%" else f"{done}/{total} {self.unit} ({share}%)"
        head = f"{message}: " if message else ""
        self.write(f"{head}{count} {_elapsed(now - self.started)} elapsed")


def _on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress_bar(enabled: bool, unit: str = "step") -> Iterator[ProgressCallback]:
    """Yield a callback that reports on stderr: a tqdm bar on a terminal, else plain lines.

    Nothing when disabled (`-q`).
    """
    if not enabled:
        yield no_progress
        return
    if not _on_terminal():
        plain = PlainProgress(
            unit, lambda line: click.echo(line, err=True), interval=PLAIN_INTERVAL_S
        )
        yield plain  # not closed on an error: its message stays the one line
        plain.close()
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
