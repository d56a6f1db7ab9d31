"""The layer table: every module call with its type, output shape, parameters and receptive field."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.hooks import LayerRef, capture, model_guard, parse_layer
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.receptive.field import Field
from vizcnn.receptive.measured import probe_fields

FIELD_BUDGET_S = 2.0  # seconds of field measuring in a table; graph fields cost none of it


@dataclass(frozen=True)
class LayerRow:
    """One module call in the forward pass."""

    name: str  # spec to pass to other commands: dotted path, `#k` for the k-th call
    type: str  # module class name
    calls: int  # how many times the module runs per forward pass
    output_shape: tuple[int, ...] | None  # (C, H, W) or (features,), batch dimension dropped
    params: int  # parameters of the module and its children
    field: Field | None  # receptive field, None where it has no meaning (non-tensor output)
    field_note: str | None = None  # why the field is not known (then `field` is None)


@dataclass(frozen=True)
class LayerTable:
    """All rows, in the order the modules first ran."""

    input_shape: tuple[int, int, int]
    rows: list[LayerRow]

    def to_dict(self, model_name: str) -> dict[str, Any]:
        """The JSON interface (version 1): stable keys for scripts and other commands."""
        layers = []
        for row in self.rows:
            item = asdict(row)
            field = item.pop("field")
            item["output_shape"] = list(row.output_shape) if row.output_shape else None
            item["receptive_field"] = list(field["size"]) if field else None
            item["stride"] = list(field["stride"]) if field else None
            item["offset"] = list(field["offset"]) if field else None
            item["rf_method"] = (
                field["method"] if field else ("not known" if row.field_note else None)
            )
            item["rf_note"] = item.pop("field_note")  # why the field is not known, else None
            # per-unit (top, bottom) spans for unevenly spaced units ("measured per unit")
            item["unit_spans"] = (
                [list(map(list, a)) for a in field["spans"]] if field and field["spans"] else None
            )
            layers.append(item)
        return {
            "version": 1,
            "model": model_name,
            "input_shape": list(self.input_shape),
            "box_of_unit": "top = offset_y + y*stride_y, left = offset_x + x*stride_x; height rf_y, width rf_x"
            " (where unit_spans is set: rows unit_spans[0][y], columns unit_spans[1][x], end exclusive)",
            "layers": layers,
        }

    def format(self, show_all: bool = False) -> str:
        """A fixed-width text table; modules that never ran are hidden unless show_all."""
        header = ("layer", "type", "output", "params", "rf", "stride", "offset", "how")
        lines = []
        notes: list[str] = []  # distinct reasons a field is not known, numbered under the table
        for row in self.rows:
            if not show_all and row.output_shape is None:
                continue
            field = row.field
            if row.field_note is not None and row.field_note not in notes:
                notes.append(row.field_note)
            how = field.method if field else "-"
            if row.field_note is not None:
                how = f"not known [{notes.index(row.field_note) + 1}]"
            lines.append(
                (
                    row.name
                    + (f"  (x{row.calls} calls)" if row.calls > 1 and "#" not in row.name else ""),
                    row.type,
                    "x".join(str(v) for v in row.output_shape) if row.output_shape else "-",
                    f"{row.params:,}",
                    _pair_text(field.size)
                    if field and field.method != "global"
                    else ("all" if field else "-"),
                    _pair_text(field.stride) if field and field.method != "global" else "-",
                    _pair_text(field.offset) if field and field.method != "global" else "-",
                    how,
                )
            )
        widths = [
            max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i])
            for i in range(len(header))
        ]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        out.append("  ".join("-" * w for w in widths))
        out += [
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        out += [f"[{number}] {note}" for number, note in enumerate(notes, start=1)]
        return "\n".join(out)


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def layer_table(
    model: ModelLike,
    input_shape: tuple[int, int, int],
    *,
    field_budget_s: float | None = FIELD_BUDGET_S,
    progress: ProgressCallback = no_progress,
) -> LayerTable:
    """Run the model once at `input_shape` = (C, H, W) and describe every module call.

    Runs under `model_guard` (eval mode): the model, an `nn.Module` or a `LoadedModel`, is
    left exactly as found. The receptive fields come from the traced graph, else are measured
    layer by layer (seconds per layer on a large model) for up to `field_budget_s` seconds
    (None: no limit); a layer left unmeasured gets its reason in `field_note`, never a guessed
    field (see `probe_fields`). `progress(done, total, message)` counts the
    forward passes as one step, the graph walk as one and each layer measured as one more
    (`total` grows once, when the graph tells how many layers need measuring).

    Example:
        >>> table = layer_table(loaded.module, (3, 224, 224))
        >>> [row.name for row in table.rows][:3]
    """
    model = as_loaded(model).module
    with model_guard(model):
        names = [name for name, _ in model.named_modules() if name]
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        example = torch.zeros(1, *input_shape, device=device, dtype=dtype)
        progress(0, 2, "running every layer")
        with torch.no_grad(), capture(model, names, detach=True, strict=False) as first:
            first.run(example)
        calls = dict(first.calls)
        extra = [LayerRef(name, k).spec for name, count in calls.items() for k in range(1, count)]
        shapes = {spec: tuple(t.shape[1:]) for spec, t in first.items()}
        ran = [LayerRef(name, k).spec for name in first.calls for k in range(calls[name])]
        if extra:
            # A second pass that records every call (first calls too), so that rows follow the
            # order in which calls finish: `_swish#1` (the head's activation) sits next to
            # `_conv_head`, not next to the stem where `_swish` first ran.
            specs_all = [*first.outputs, *extra]
            with torch.no_grad(), capture(model, specs_all, detach=True, strict=False) as later:
                later.run(example)
            shapes.update({spec: tuple(t.shape[1:]) for spec, t in later.items()})
            ran = [*later.outputs, *(spec for spec in ran if spec not in later.outputs)]
        specs = list(ran)
        specs += [name for name in names if name not in calls]  # modules that never ran

        def fields_progress(done: int, total: int, message: str) -> None:
            progress(1 + done, 1 + total, message)  # after the step of the passes above

        probe = probe_fields(
            model,
            input_shape,
            [s for s in specs if s in shapes],
            budget_s=field_budget_s,
            progress=fields_progress,
        )
        fields = probe.fields
        modules = dict(model.named_modules())
        rows = []
        for spec in specs:
            ref = parse_layer(spec)
            module = modules[ref.name]
            rows.append(
                LayerRow(
                    name=spec,
                    type=type(module).__name__,
                    calls=calls.get(ref.name, 0),
                    output_shape=shapes.get(spec),
                    params=sum(p.numel() for p in module.parameters()),
                    field=fields.get(spec),
                    field_note=probe.not_known.get(spec),
                )
            )
        return LayerTable(input_shape=input_shape, rows=rows)
