"""Charts for report pages, drawn with matplotlib's object API (no pyplot: headless, thread-safe)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure

from vizcnn.report.html.site import HistogramView

HISTOGRAM_SIZE = (160, 48)  # width, height of a card's histogram (SVG units = CSS pixels)


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


def histogram_view(
    counts: Sequence[int], edges: Sequence[float], size: tuple[int, int] = HISTOGRAM_SIZE
) -> HistogramView | None:
    """The bars of a histogram (empty bins at both ends dropped), heights on a log scale
    (log(1 + count)) so that a bin of zeros (a ReLU's) does not flatten the rest; None when
    nothing was counted.

    Example:
        >>> histogram_view([0, 3, 1, 0], [0.0, 1.0, 2.0, 3.0, 4.0]).bars[0]
        (0.0, 0.0, 80.0, 48.0)
    """
    import math

    used = [i for i, count in enumerate(counts) if count > 0]
    if not used:
        return None
    first, last = used[0], used[-1]
    shown = list(counts[first : last + 1])
    width, height = size
    step = width / len(shown)
    top = math.log1p(max(shown))
    bars = []
    for i, count in enumerate(shown):
        tall = height * math.log1p(count) / top if count else 0.0
        bars.append((round(i * step, 2), round(height - tall, 2), round(step, 2), round(tall, 2)))
    total = sum(shown)
    zero = next(
        (counts[i] for i in range(len(counts)) if edges[i] <= 0.0 < edges[i + 1]),
        None,
    )
    return HistogramView(
        bars=bars,
        width=width,
        height=height,
        low=float(edges[first]),
        high=float(edges[last + 1]),
        values=total,
        zero_share=zero / total if zero is not None else None,
    )
