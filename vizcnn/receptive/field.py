"""The receptive field of one layer's units, and torch's adaptive-pooling bins."""

from __future__ import annotations

from dataclasses import dataclass

Spans = tuple[tuple[int, int], ...]  # per unit along one axis: (first pixel, last pixel + 1)


@dataclass(frozen=True)
class Field:
    """Receptive field of one layer's units; `box(y, x)` gives the input pixels of unit (y, x).

    Most layers are uniform: unit u of an axis sees pixels offset + u*stride ... + size - 1.
    Adaptive pooling to a size that does not divide the input makes bins of unequal step (and
    size); such a field carries the exact span of every unit per axis in `spans`, and `size`,
    `stride`, `offset` are then only summaries (largest span, mean step, first span's top).
    """

    size: tuple[int, int]  # (rf_y, rf_x) in input pixels
    stride: tuple[int, int]  # effective stride (jump) in input pixels per unit
    offset: tuple[int, int]  # top-left input pixel of unit (0, 0); negative = in the padding
    method: str  # "graph", "graph+context", "measured", "measured per unit", or "global"
    spans: tuple[Spans, Spans] | None = None  # (rows, cols) per-unit spans; None = uniform

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive; may extend past the image."""
        if self.spans is not None:
            rows, cols = self.spans
            return rows[y][0], cols[x][0], rows[y][1], cols[x][1]
        top = self.offset[0] + y * self.stride[0]
        left = self.offset[1] + x * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]

    @classmethod
    def from_spans(cls, rows: Spans, cols: Spans, method: str) -> Field:
        """A field from per-unit spans: uniform parameters when the spans allow, else `spans`."""
        axes = [uniform_spans(rows), uniform_spans(cols)]
        if axes[0] is not None and axes[1] is not None:
            (top, size, step), (left, width, step_x) = axes[0], axes[1]
            return cls((size, width), (step, step_x), (top, left), method.replace(" per unit", ""))
        summary = [_summary(spans) for spans in (rows, cols)]
        return cls(
            (summary[0][1], summary[1][1]),
            (summary[0][2], summary[1][2]),
            (summary[0][0], summary[1][0]),
            method,
            (tuple(rows), tuple(cols)),
        )


def uniform_spans(spans: Spans) -> tuple[int, int, int] | None:
    """(top, size, step) when every span has one size and consecutive spans one step."""
    sizes = {end - start for start, end in spans}
    steps = {b[0] - a[0] for a, b in zip(spans, spans[1:], strict=False)}
    if len(sizes) != 1 or len(steps) > 1:
        return None
    step = steps.pop() if steps else max(1, spans[0][1] - spans[0][0])
    return spans[0][0], sizes.pop(), step


def _summary(spans: Spans) -> tuple[int, int, int]:
    size = max(end - start for start, end in spans)
    step = round((spans[-1][0] - spans[0][0]) / (len(spans) - 1)) if len(spans) > 1 else size
    return spans[0][0], size, max(step, 1)


def adaptive_bins(length: int, out: int) -> Spans:
    """torch's adaptive pooling bins along one axis: unit i pools [floor(i*L/n), ceil((i+1)*L/n)).

    Example:
        >>> adaptive_bins(10, 4)  # 3-pixel bins at steps 2, 3, 2
        ((0, 3), (2, 5), (5, 8), (7, 10))
    """
    return tuple(((i * length) // out, ((i + 1) * length + out - 1) // out) for i in range(out))
