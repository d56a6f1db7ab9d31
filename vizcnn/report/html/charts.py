"""Charts for report pages, drawn with matplotlib's object API (no pyplot: headless, thread-safe)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure


def bar_chart_png(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    ylabel: str,
    title: str,
    highlight: Sequence[bool] | None = None,
) -> bytes:
    """A bar chart as PNG bytes: one bar per label (highlighted bars in red).

    Example:
        >>> png = bar_chart_png(["a", "b"], [1.0, -2.0], ylabel="points", title="change")
        >>> png[:4]
        b'\\x89PNG'
    """
    fig = Figure(figsize=(max(4.0, 0.6 * len(labels) + 2.0), 3.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    marks = list(highlight) if highlight is not None else [False] * len(values)
    colors = ["#c44e52" if mark else "#4c72b0" for mark in marks]
    ax.bar(range(len(values)), list(values), color=colors)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), list(labels), fontsize=7, rotation=30, ha="right")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
