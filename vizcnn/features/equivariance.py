"""Translation equivariance per layer: how far f(shift(x)) is from shift(f(x)).

An input shifted by s pixels should shift a layer's map by s / stride units (the layer's stride
from the receptive-field table). Per layer and shift, the relative error is
||f(T_s x) - T_{s/stride} f(x)|| / ||T_{s/stride} f(x)|| over the compared region, pooled over
images. A fractional s / stride (odd shifts after a stride-2 layer) is compared with the linear
interpolation of the two nearest whole shifts: the error that remains there is what striding and
pooling cost. Layers without a spatial map (pooled vectors, logits) are compared without a shift:
their error measures invariance.

Two ways to shift: `crop` cuts windows at offsets 0 and s from a wider image (natural content at
both edges; the units near the borders see different padding and are cropped by `border`), `roll`
shifts circularly (a network with circular padding and stride 1 is then exactly equivariant).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.hooks import Layer, capture, find_module, layer_names, model_guard, parse_layer
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight
from vizcnn.receptive.measured import receptive_fields

OUTPUT = "output"  # the row name of the model's final output


DEFAULT_BATCH = 8  # images per forward pass where `RunOptions.batch` is None


@dataclass(frozen=True)
class EquivarianceConfig:
    """What to measure."""

    # layer specs or submodules (rows named by dotted name); () = the main stages (`stage_layers`)
    layers: tuple[Layer, ...] = ()
    shifts: tuple[int, ...] = tuple(range(1, 17))  # input shifts in pixels, each > 0
    direction: Literal["x", "y", "xy"] = "x"  # shift right-left, up-down, or diagonally
    mode: Literal["crop", "roll"] = "crop"  # windows of a wider image, or circular shift
    border: float = 0.125  # share of each map side left out at both ends before comparing

    def __post_init__(self) -> None:
        if not self.shifts or any(s < 1 for s in self.shifts):
            raise VizError(f"shifts must be whole pixels >= 1, got {list(self.shifts)}")
        if self.direction not in ("x", "y", "xy"):
            raise VizError(f"direction {self.direction!r} invalid; use x, y or xy")
        if self.mode not in ("crop", "roll"):
            raise VizError(f"mode {self.mode!r} invalid; use crop or roll")
        if not 0 <= self.border < 0.5:
            raise VizError(f"border must be in [0, 0.5), got {self.border}")

    def offset(self, shift: int) -> tuple[int, int]:
        """The (dy, dx) input offset of a shift."""
        return (shift if "y" in self.direction else 0, shift if "x" in self.direction else 0)

    @property
    def margin(self) -> tuple[int, int]:
        """Extra (rows, columns) a `crop` image needs beyond the model's input size."""
        if self.mode == "roll":
            return (0, 0)
        return self.offset(max(self.shifts))


def parse_shifts(text: str) -> tuple[int, ...]:
    """`"1..16"`, `"1,2,4,8"` or `"8"` as a tuple of shifts."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    shifts: list[int] = []
    for part in parts:
        match = re.fullmatch(r"(\d+)\s*(?:\.\.|-)\s*(\d+)", part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise VizError(f"bad shift range {part!r}; write LOW..HIGH with LOW <= HIGH")
            shifts += range(low, high + 1)
        elif part.isdigit():
            shifts.append(int(part))
        else:
            raise VizError(f"bad shifts {text!r}; write 1..16, 1,2,4,8 or 8")
    if not shifts or min(shifts) < 1:
        raise VizError(f"bad shifts {text!r}; shifts are whole pixels >= 1")
    return tuple(dict.fromkeys(shifts))


def stage_layers(model: nn.Module) -> list[str]:
    """The model's top-level modules, with Sequential / ModuleList containers opened one level."""
    names: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
            names += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            names.append(name)
    return names


@dataclass
class LayerEquivariance:
    """One layer's relative error per shift."""

    layer: str  # layer spec, or "output" for the model's output
    depth: int  # position in the forward pass (0 = first measured layer)
    shape: tuple[int, ...]  # output shape, batch dimension dropped
    stride: tuple[float, float] | None  # input pixels per map unit; None: compared unshifted
    errors: dict[int, float] = field(default_factory=dict)  # shift -> relative error

    @property
    def kind(self) -> str:
        return "invariance" if self.stride is None else "equivariance"

    def mean(self, parity: int | None = None) -> float:
        """Mean error over all shifts, or over odd (1) / even (0) shifts; NaN if none."""
        values = [
            e
            for s, e in self.errors.items()
            if (parity is None or s % 2 == parity) and not math.isnan(e)
        ]
        return sum(values) / len(values) if values else math.nan

    def to_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "depth": self.depth,
            "shape": list(self.shape),
            "stride": list(self.stride) if self.stride is not None else None,
            "kind": self.kind,
            "errors": {str(s): _num(e) for s, e in self.errors.items()},
            "mean": _num(self.mean()),
            "mean_odd": _num(self.mean(1)),
            "mean_even": _num(self.mean(0)),
        }


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(f"{value:.6g}")


@dataclass
class EquivarianceResult:
    """Every layer's errors, the final output's invariance and top-1 agreement."""

    rows: list[LayerEquivariance]  # in forward order; the last is the model output
    shifts: tuple[int, ...]
    images: int  # how many images were measured
    top1_agreement: dict[int, float] | None  # shift -> share of unchanged top-1 classes

    def to_dict(self) -> dict[str, object]:
        return {
            "shifts": list(self.shifts),
            "images": self.images,
            "layers": [row.to_dict() for row in self.rows],
            "top1_agreement": {str(s): round(v, 6) for s, v in self.top1_agreement.items()}
            if self.top1_agreement is not None
            else None,
        }

    def markdown(self) -> str:
        """A markdown table: layer, shape, stride, mean / odd / even / worst relative error."""
        lines = [
            "| depth | layer | shape | stride | mean | odd shifts | even shifts | worst |",
            "|---:|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            stride = (
                "-" if row.stride is None else "x".join(f"{v:g}" for v in dict.fromkeys(row.stride))
            )
            worst = max((e for e in row.errors.values() if not math.isnan(e)), default=math.nan)
            cells = [row.mean(), row.mean(1), row.mean(0), worst]
            lines.append(
                f"| {row.depth} | {row.layer} | {'x'.join(map(str, row.shape))} | {stride} | "
                + " | ".join("-" if math.isnan(v) else f"{v:.3g}" for v in cells)
                + " |"
            )
        return "\n".join(lines) + "\n"


def _fractional_roll(fmap: torch.Tensor, shift: float, dim: int) -> torch.Tensor:
    """out[u] = fmap[u + shift] along `dim`, circularly, linearly interpolated between units."""
    whole = math.floor(shift)
    frac = shift - whole
    out = torch.roll(fmap, -whole, dims=dim)
    if frac < 1e-9:
        return out
    return (1 - frac) * out + frac * torch.roll(fmap, -whole - 1, dims=dim)


def _slide(fmap: torch.Tensor, shift: float, dim: int, region: slice) -> torch.Tensor:
    """fmap[u + shift] for u in `region` along `dim`, without wrap-around (the caller keeps
    u + ceil(shift) inside the map), linearly interpolated for a fractional shift."""
    whole = math.floor(shift)
    frac = shift - whole
    length = region.stop - region.start
    out = fmap.narrow(dim, region.start + whole, length)
    if frac < 1e-9:
        return out
    return torch.lerp(out, fmap.narrow(dim, region.start + whole + 1, length), frac)


def _squares(tensor: torch.Tensor) -> float:
    # summed in the maps' own dtype (torch sums blockwise: ~1e-7 relative in float32) and
    # accumulated over batches in Python floats; a float64 copy of every map costs 10% more time
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return float((tensor * tensor).sum())


def _compare(
    shifted: torch.Tensor,
    base: torch.Tensor,
    units: tuple[float, float] | None,
    config: EquivarianceConfig,
) -> tuple[float, float]:
    """(sum of squared differences, sum of squared reference) over the compared region."""
    if units is None or base.dim() != 4:
        return _squares(shifted - base), _squares(base)
    height, width = base.shape[-2:]
    end_y, end_x = height, width
    if config.mode == "crop":  # past the last valid unit the reference would leave the map
        end_y, end_x = height - math.ceil(units[0] - 1e-9), width - math.ceil(units[1] - 1e-9)
    by, bx = int(config.border * height), int(config.border * width)
    rows, cols = slice(by, end_y - by), slice(bx, end_x - bx)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return math.nan, math.nan
    if config.mode == "roll":
        reference = _fractional_roll(_fractional_roll(base, units[0], -2), units[1], -1)
        reference = reference[..., rows, cols]
    else:  # plain slices of the base map: no full-size copies per shift
        reference = _slide(_slide(base, units[0], -2, rows), units[1], -1, cols)
    return _squares(shifted[..., rows, cols] - reference), _squares(reference)


def _window(
    images: torch.Tensor, offset: tuple[int, int], config: EquivarianceConfig
) -> torch.Tensor:
    if config.mode == "roll":
        return torch.roll(images, (-offset[0], -offset[1]), dims=(-2, -1))
    margin = config.margin
    height, width = images.shape[-2] - margin[0], images.shape[-1] - margin[1]
    return images[..., offset[0] : offset[0] + height, offset[1] : offset[1] + width]


def _strides(
    loaded: LoadedModel,
    layers: list[str],
    shapes: dict[str, tuple[int, ...]],
    size: tuple[int, int],
) -> dict[str, tuple[float, float] | None]:
    spatial = [spec for spec in layers if len(shapes[spec]) == 3]
    fields = receptive_fields(loaded.module, (loaded.channels, *size), spatial) if spatial else {}
    strides: dict[str, tuple[float, float] | None] = {}
    for spec in layers:
        found = fields.get(spec)
        if len(shapes[spec]) != 3 or (found is not None and found.method == "global"):
            strides[spec] = None
        elif found is not None and min(found.stride) <= 0:
            # an adaptive pool that repeats a smaller map (AlexNet's avgpool at a small input):
            # its positions move with no whole-unit shift
            strides[spec] = None
        elif found is not None:
            strides[spec] = (float(found.stride[0]), float(found.stride[1]))
        else:  # no field known: the size ratio is the best estimate
            strides[spec] = (size[0] / shapes[spec][1], size[1] / shapes[spec][2])
    return strides


def measure_equivariance(
    model: ModelLike,
    images: torch.Tensor,
    config: EquivarianceConfig | None = None,
    *,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> EquivarianceResult:
    """Relative equivariance error of every layer for every shift, and output invariance.

    Args:
        model: a `LoadedModel` or bare `nn.Module`.
        images: `(N, C, H, W)` in [0, 1]. With `mode="crop"` they must be `config.margin` larger
            than the size to measure at (`prepare_images` does it); with `roll`, any size.
        config: layers, shifts, direction, mode, border.
        progress: called after each forward pass.
        run: how it runs (`RunOptions`): `batch` images per forward pass (None:
            `DEFAULT_BATCH`; memory, not the result). It runs float32 and ignores `amp`.

    Returns:
        An `EquivarianceResult`: one row per layer in forward order, then the model output.

    Example:
        >>> config = EquivarianceConfig(shifts=(1, 2, 4))
        >>> images = prepare_images(loaded, [sample_image("coffee")], config)
        >>> print(measure_equivariance(loaded, images, config).markdown())
    """
    config = config or EquivarianceConfig()
    loaded = as_loaded(model)
    module = loaded.module
    named = layer_names(module, config.layers)
    config = replace(config, layers=tuple(named))
    if images.dim() != 4 or images.shape[0] == 0:
        raise VizError(f"images must be (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    warn_if_normalized(images)
    margin = config.margin
    size = (images.shape[-2] - margin[0], images.shape[-1] - margin[1])
    if min(size) < 8:
        raise VizError(f"images of {tuple(images.shape[-2:])} too small for shifts {margin}")
    explicit = bool(config.layers)
    requested = named if explicit else stage_layers(module)
    for spec in requested:
        find_module(module, parse_layer(spec).name)
    preflight(loaded, named, output=True, size=size)
    device, dtype = loaded.device, loaded.dtype
    batch = as_run_options(run).batch_or(DEFAULT_BATCH)
    total = math.ceil(len(images) / batch) * (1 + len(config.shifts))
    with model_guard(module):
        # a probe of one image: which layers fire (in firing order), their shapes and strides;
        # the strides may need a measured receptive field (a backward pass), so outside no_grad
        probe = loaded.normalize(_window(images[:1].to(device, dtype), (0, 0), config))
        with torch.no_grad(), capture(module, requested, detach=True, strict=explicit) as acts:
            probe_out = require_output_tensor(acts.run(probe))
        layers = list(acts.outputs)
        shapes = {spec: tuple(acts.outputs[spec].shape[1:]) for spec in layers}
        shapes[OUTPUT] = tuple(probe_out.shape[1:])
        strides = _strides(loaded, layers, shapes, size)
        strides[OUTPUT] = None
    sums = {spec: {s: [0.0, 0.0] for s in config.shifts} for spec in shapes}
    agree = {s: 0 for s in config.shifts}
    done = 0
    with (
        model_guard(module),
        torch.no_grad(),
        capture(module, layers, detach=True) as acts,
    ):
        for start in range(0, len(images), batch):
            part = images[start : start + batch].to(device, dtype)
            base_out = require_output_tensor(
                acts.run(loaded.normalize(_window(part, (0, 0), config)))
            )
            base = dict(acts.outputs)
            base[OUTPUT] = base_out
            done += 1
            progress(done, total, "equivariance")
            for shift in config.shifts:
                offset = config.offset(shift)
                out = require_output_tensor(
                    acts.run(loaded.normalize(_window(part, offset, config)))
                )
                current = {**acts.outputs, OUTPUT: out}
                for spec, stride in strides.items():
                    units = (
                        None if stride is None else (offset[0] / stride[0], offset[1] / stride[1])
                    )
                    diff, ref = _compare(current[spec], base[spec], units, config)
                    sums[spec][shift][0] += diff
                    sums[spec][shift][1] += ref
                if base_out.dim() == 2 and base_out.shape[1] > 1:
                    agree[shift] += int((out.argmax(1) == base_out.argmax(1)).sum())
                done += 1
                progress(done, total, f"equivariance: shift {shift}")
    rows = []
    for depth, spec in enumerate([*layers, OUTPUT]):
        errors = {
            s: math.sqrt(d / r) if r > 0 else (0.0 if d == 0 else math.nan)
            for s, (d, r) in sums[spec].items()
        }
        rows.append(LayerEquivariance(spec, depth, shapes[spec], strides[spec], errors))
    classifier = len(shapes[OUTPUT]) == 1 and shapes[OUTPUT][0] > 1
    return EquivarianceResult(
        rows=rows,
        shifts=tuple(config.shifts),
        images=len(images),
        top1_agreement={s: n / len(images) for s, n in agree.items()} if classifier else None,
    )


def prepare_images(
    model: ModelLike, images: Sequence[torch.Tensor], config: EquivarianceConfig
) -> torch.Tensor:
    """Photos `(C, h, w)` in [0, 1] resized and centre-cropped to the model's input size plus
    the margin the shifts need: `(N, C, H + my, W + mx)`."""
    from vizcnn.data.datasets import preprocess

    warn_if_normalized(images)  # before `preprocess`, whose resampling clamps to [0, 1]
    loaded = as_loaded(model)
    height, width = loaded.input_size
    size = (height + config.margin[0], width + config.margin[1])
    return torch.stack([preprocess(image, size, loaded.resize_crop) for image in images])
