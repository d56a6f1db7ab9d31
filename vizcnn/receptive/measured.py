"""Measured receptive fields (where the traced graph gives no answer), and `receptive_fields`.

A unit's box is the bounding box of the input pixels that get a non-zero gradient from it,
taken over a few random images and summed over the unit's channels, so that max pooling (which
passes the gradient through one argmax per window) and dead ReLUs do not shrink it. Stride and
offset come from neighbouring units: the edges of units 0 and 1 and of the last two units per
axis, using only edges that the image border did not cut. Where units are not evenly spaced
(adaptive pooling to a size that does not divide the input) every unit is measured.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.hooks import Layer, capture, layer_name, layer_names, model_guard
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.receptive.field import Field, Spans
from vizcnn.receptive.graph import graph_fields

_SAMPLES = 1  # random images per measured unit (more are tried where units disagree)
_MORE_SAMPLES = 16  # ... when the first measurement's units disagree
_BATCH = 16  # images per forward pass while measuring
_SMALL_MAP = 16  # maps with height + width up to this have every unit measured
_MAX_UNITS = 256  # per-unit measurement beyond this many units per axis is refused


class _TooManyUnits(VizError):
    """Unevenly spaced units on a map too large to measure one by one."""


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _output(model: nn.Module, layer: str, image: torch.Tensor) -> torch.Tensor:
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(image)
    return acts[layer]


def unit_boxes(
    model: nn.Module,
    layer: Layer,
    input_shape: tuple[int, int, int],
    units: list[tuple[int, int]],
    *,
    samples: int = _SAMPLES,
) -> list[tuple[int, int, int, int] | None]:
    """Gradient-support bounding box `(top, left, bottom, right)` of each unit `(y, x)`.

    All channels of the unit count, over `samples` random images (seeded: reproducible); None
    for a unit no input pixel reaches. `layer` is a spec or the submodule itself.
    """
    layer = layer_name(model, layer)
    device, dtype = _device_dtype(model)
    generator = torch.Generator(device=device).manual_seed(0)
    boxes: list[tuple[int, int, int, int] | None] = []
    per_pass = max(1, _BATCH // samples)
    for start in range(0, len(units), per_pass):
        chunk = units[start : start + per_pass]
        image = torch.rand(
            len(chunk) * samples, *input_shape, generator=generator, device=device, dtype=dtype
        ).requires_grad_(True)
        with torch.enable_grad():
            output = _output(model, layer, image)
            rows = torch.arange(output.shape[0], device=device)
            ys = torch.tensor([y for y, _ in chunk for _ in range(samples)], device=device)
            xs = torch.tensor([x for _, x in chunk for _ in range(samples)], device=device)
            # each image belongs to one unit: one backward gives every unit's support
            (grad,) = torch.autograd.grad(output[rows, :, ys, xs].sum(), image)
        support = (grad != 0).any(1).view(len(chunk), samples, *input_shape[1:]).any(1)
        for mask in support:
            found_rows = torch.nonzero(mask.any(1)).flatten()
            found_cols = torch.nonzero(mask.any(0)).flatten()
            if found_rows.numel() == 0:
                boxes.append(None)
                continue
            boxes.append(
                (
                    int(found_rows[0]),
                    int(found_cols[0]),
                    int(found_rows[-1]) + 1,
                    int(found_cols[-1]) + 1,
                )
            )
    return boxes


def _axis(
    spans: dict[int, tuple[int, int]], units: int, length: int
) -> tuple[int, int, int] | None:
    """(offset, size, stride) of one axis from the spans of units 0, 1, n-2, n-1, or None.

    An edge at the image border may be cut there, so only inner edges are trusted. None when
    the units disagree (not evenly spaced) or no inner edge pins a value down.
    """

    def lo_ok(u: int) -> bool:
        return spans[u][0] > 0

    def hi_ok(u: int) -> bool:
        return spans[u][1] < length

    strides = set()
    for u in sorted(spans):
        if u + 1 in spans:
            if lo_ok(u) and lo_ok(u + 1):
                strides.add(spans[u + 1][0] - spans[u][0])
            if hi_ok(u) and hi_ok(u + 1):
                strides.add(spans[u + 1][1] - spans[u][1])
    if units == 1:
        strides = {max(length, 1)}  # one unit: the stride is never used
    if len(strides) != 1:
        return None
    stride = strides.pop()
    offsets = {spans[u][0] - u * stride for u in spans if lo_ok(u)}
    ends = {spans[u][1] - u * stride for u in spans if hi_ok(u)}  # offset + size
    if len(offsets) > 1 or len(ends) > 1:
        return None
    if not offsets and not ends:  # cut at both borders for every unit: the box is a bound
        return spans[0][0], spans[0][1] - spans[0][0], stride
    offset = offsets.pop() if offsets else spans[0][0]
    end = ends.pop() if ends else spans[0][1]
    for u, (lo, hi) in spans.items():  # the uniform field, cut at the border, must fit every unit
        if (max(offset + u * stride, 0), min(end + u * stride, length)) != (lo, hi):
            return None
    return offset, end - offset, stride


def measure_field(
    model: nn.Module, layer: Layer, input_shape: tuple[int, int, int]
) -> Field | None:
    """Measure a layer's field from the gradient support of its units.

    Units 0, 1 and the last two per axis (every unit on small maps) give stride, offset and
    size; if they disagree even over more images (units not evenly spaced, as after adaptive
    pooling from 10 px to 4) every unit along the middle row and column is measured and the
    field carries per-unit `spans`. A box can be smaller
    than the true field where weights are exactly zero; a field wider than the image on both
    sides is cut at the border. Runs under `model_guard`.

    Args:
        model: the network (left as found).
        layer: layer spec, `name#k` for the k-th call, or the submodule itself.
        input_shape: `(C, H, W)` of one input image.

    Example:
        >>> measure_field(net, "features.10", (3, 224, 224)).stride
        (16, 16)
    """
    with model_guard(model):
        layer = layer_name(model, layer)
        device, dtype = _device_dtype(model)
        with torch.no_grad():
            probe = _output(model, layer, torch.zeros(1, *input_shape, device=device, dtype=dtype))
        if probe.dim() != 4:
            return Field((input_shape[1], input_shape[2]), (0, 0), (0, 0), "global")
        height, width = int(probe.shape[2]), int(probe.shape[3])
        every = height + width <= _SMALL_MAP  # small maps: cheap to check every unit's spacing
        ys = (
            range(height)
            if every
            else sorted({0, min(1, height - 1), max(height - 2, 0), height - 1})
        )
        xs = range(width) if every else sorted({0, min(1, width - 1), max(width - 2, 0), width - 1})
        field: Field | None = None
        # Disagreeing units are first taken for ragged supports (max pooling passes the gradient
        # to one argmax per window, few channels give few draws): more images widen each box to
        # the true field. If they still disagree, units are not evenly spaced.
        for samples in (_SAMPLES, _MORE_SAMPLES):
            spans = _spans(model, layer, input_shape, list(ys), list(xs), (height, width), samples)
            if spans is None:
                return None
            field = _from_spans(*spans, input_shape)
            if field.spans is None:
                return field
        if every:
            return field
        if max(height, width) > _MAX_UNITS:
            raise _TooManyUnits(
                f"layer {layer!r}: units are not evenly spaced and its {height}x{width} map is too "
                "large to measure unit by unit"
            )
        every_y, every_x = list(range(height)), list(range(width))
        spans = _spans(model, layer, input_shape, every_y, every_x, (height, width), _MORE_SAMPLES)
        return None if spans is None else _from_spans(*spans, input_shape)


def _spans(
    model: nn.Module,
    layer: str,
    input_shape: tuple[int, int, int],
    ys: list[int],
    xs: list[int],
    shape: tuple[int, int],
    samples: int,
) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]] | None:
    """Row spans of units `ys` down the middle column, column spans of `xs` along the middle row."""
    units = [(y, shape[1] // 2) for y in ys] + [(shape[0] // 2, x) for x in xs]
    boxes = unit_boxes(model, layer, input_shape, units, samples=samples)
    found = [box for box in boxes if box is not None]
    if len(found) != len(boxes):
        return None
    rows = {y: (box[0], box[2]) for y, box in zip(ys, found[: len(ys)], strict=True)}
    cols = {x: (box[1], box[3]) for x, box in zip(xs, found[len(ys) :], strict=True)}
    return rows, cols


def _from_spans(
    rows: dict[int, tuple[int, int]],
    cols: dict[int, tuple[int, int]],
    input_shape: tuple[int, int, int],
) -> Field:
    """Uniform when every measured unit fits one (offset, size, stride), else per-unit spans."""
    row_axis = _axis(rows, max(rows) + 1, input_shape[1])
    col_axis = _axis(cols, max(cols) + 1, input_shape[2])
    if row_axis is not None and col_axis is not None:
        return Field(
            (row_axis[1], col_axis[1]),
            (row_axis[2], col_axis[2]),
            (row_axis[0], col_axis[0]),
            "measured",
        )
    row_spans: Spans = tuple(rows[u] for u in sorted(rows))
    col_spans: Spans = tuple(cols[u] for u in sorted(cols))
    height, width = input_shape[1], input_shape[2]
    if set(row_spans) == {(0, height)} and set(col_spans) == {(0, width)}:
        return Field((height, width), (0, 0), (0, 0), "global")  # every unit sees every pixel
    return Field.from_spans(row_spans, col_spans, "measured per unit")


@dataclass(frozen=True)
class FieldProbe:
    """Receptive fields of some layers, and why the others' are not known."""

    fields: dict[str, Field | None]  # per spec; None: no field (units see no input, or not known)
    not_known: dict[str, str]  # spec -> why its field is not known (never a guessed number)


def probe_fields(
    model: ModelLike,
    input_shape: tuple[int, int, int],
    layers: Sequence[Layer] | None = None,
    *,
    budget_s: float | None = None,
    progress: ProgressCallback = no_progress,
) -> FieldProbe:
    """Fields from the traced graph, measured where it gives none, within `budget_s` seconds.

    Measuring costs forward and backward passes per layer (seconds each on a large model, on a
    CPU); once `budget_s` seconds of measuring are spent, the layers left are not measured and
    get a reason in `not_known` instead of a field, as does a layer whose unevenly spaced units
    are too many to measure one by one (where `receptive_fields` raises). `budget_s=None` measures every layer that needs it.
    Runs under `model_guard`: the model is left exactly as found.

    Args:
        model: the network, an `nn.Module` or a `LoadedModel` (left as found).
        input_shape: `(C, H, W)` of one input image.
        layers: specs (or submodules, keyed by dotted name); None: every module call.
        budget_s: seconds of measuring allowed (the graph walk is not counted), or None.
        progress: called with (steps done, steps, message), as for `receptive_fields`.

    Example:
        >>> probe = probe_fields(net, (3, 224, 224), budget_s=2.0)
        >>> probe.not_known  # {} when the graph gave every field
    """
    if budget_s is not None and budget_s < 0:
        raise VizError(f"budget_s must be 0 or more seconds (or None: no limit), not {budget_s}")
    model = as_loaded(model).module
    with model_guard(model):
        progress(0, 1, "receptive fields: walking the graph")
        try:
            fields = graph_fields(model, input_shape)
        except Exception:  # tracing fails on data-dependent control flow; measure instead
            fields = {}
        wanted = layer_names(model, layers) if layers is not None else list(fields)
        result: dict[str, Field | None] = {spec: fields.get(spec) for spec in wanted}
        not_known: dict[str, str] = {}
        to_measure = [spec for spec, field in result.items() if field is None]
        total = 1 + len(to_measure)
        start = time.monotonic()
        for done, spec in enumerate(to_measure, start=1):
            if budget_s is not None and time.monotonic() - start >= budget_s:
                left = len(to_measure) - done + 1
                for rest in to_measure[done - 1 :]:
                    not_known[rest] = (
                        f"not measured: the {budget_s:g} s measuring budget was spent "
                        f"({left} of {len(to_measure)} layers left)"
                    )
                break
            progress(done, total, f"receptive fields: measuring {spec}")
            try:
                result[spec] = measure_field(model, spec, input_shape)
            except _TooManyUnits as error:
                not_known[spec] = str(error)
        progress(total, total, "receptive fields")
        return FieldProbe(result, not_known)


def receptive_fields(
    model: ModelLike,
    input_shape: tuple[int, int, int],
    layers: Sequence[Layer] | None = None,
    *,
    progress: ProgressCallback = no_progress,
) -> dict[str, Field | None]:
    """Field of each layer spec (all module calls when `layers` is None), graph first, else measured.

    Every layer the graph gives no field for is measured, however long that takes (see
    `probe_fields` for a time budget). Runs under `model_guard`: the model is left exactly as
    found.

    Args:
        model: the network, an `nn.Module` or a `LoadedModel` (left as found).
        input_shape: `(C, H, W)` of one input image.
        layers: specs (or submodules, keyed by dotted name) to return; measured individually
            where the graph gives no answer.
        progress: called with (steps done, steps, message): the graph walk is one step, each
            layer measured one more (the total is known once the graph is walked).

    Example:
        >>> fields = receptive_fields(alexnet, (3, 224, 224), ["features.0"])
        >>> fields["features.0"].size
        (11, 11)
    """
    probe = probe_fields(model, input_shape, layers, progress=progress)
    for reason in probe.not_known.values():
        raise VizError(reason)
    return probe.fields
