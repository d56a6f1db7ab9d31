"""SIGTERM as Ctrl-C: what torchrun, schedulers and `kill` send stops a run like Ctrl-C does, so
the code that saves finished work on KeyboardInterrupt runs for both."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only; restored after).

    Example:
        >>> with sigterm_as_interrupt():
        ...     mine_topk(loaded, data, config, checkpoint="state.pt")  # SIGTERM saves it
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: Callable[..., Any] | int | None = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
