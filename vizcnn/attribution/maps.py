"""`attribute`: several methods over a batch in one call, with predictions and map checks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from PIL import Image
from torch import nn

from vizcnn.attribution.checks import MapChecks, MapWarning
from vizcnn.attribution.classifier import Classifier, Predictions, Targets, predict, targets_of
from vizcnn.attribution.methods import (
    DEFAULT_METHODS,
    Method,
    _LayerMethod,
    check_images,
    method_class,
)
from vizcnn.attribution.targets import ScoreNet, ScoreTarget, is_score_target
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.hooks import inplace_off, model_guard
from vizcnn.io.display import MAX_TILES, ContactSheet
from vizcnn.io.imaging import labeled_sheet
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.models.preflight import preflight

# what `attribute(..., methods=...)` takes: names (default options) and method objects, or one
MethodsLike = str | Method | Sequence[str | Method]


@dataclass
class Attributions(ContactSheet):
    """`attribute`'s result: one `(B, C, H, W)` map per method plus what the model predicted.

    In a notebook it shows itself as a contact sheet: one row per image, one heat map per method
    (the rule of `vizcnn.attribution.figures.heat`, on the inferno colour map).
    """

    maps: dict[str, torch.Tensor]  # method -> (B, C, H, W), C = the input's channels
    targets: torch.Tensor  # (B,) class attributed per image (-1: a score target's score)
    predictions: Predictions  # probabilities and top-5 per image
    layer: str  # the (first) Grad-CAM layer used ("" when no method needed one)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per method
    # blank maps and methods equal to the plain gradient, one per finding; str(w) is the message
    warnings: list[MapWarning] = field(default_factory=list)

    def contact_sheet(self) -> Image.Image:
        """Heat maps, a row per image (the first rows up to `MAX_TILES` maps), a column per method."""
        # matplotlib only when a sheet is drawn: `import vizcnn` stays light
        from matplotlib import colormaps

        from vizcnn.attribution.figures import CMAP, heat

        if not self.maps:
            raise VizError("no attribution maps to show")
        colour = colormaps[CMAP]
        methods = list(self.maps)
        rows = max(1, min(len(self.targets), MAX_TILES // len(methods)))
        tiles, labels = [], []
        for row in range(rows):
            for method in methods:
                rgb = colour(heat(self.maps[method][row]))[..., :3]
                tiles.append(torch.from_numpy(rgb).permute(2, 0, 1).float())
                labels.append(f"{method} t={int(self.targets[row])}")
        return labeled_sheet(tiles, labels, columns=len(methods))


def as_methods(model: ModelLike, methods: MethodsLike | None = None) -> list[Method]:
    """The methods `attribute` runs on `model`: a name gets the method's default options, a
    method object keeps its options and runs on `model` (`Method.on`)."""
    loaded = as_loaded(model)
    items = [methods] if isinstance(methods, (str, Method)) else list(methods or DEFAULT_METHODS)
    if not items:
        raise VizError("no attribution method given; choose from " + ", ".join(DEFAULT_METHODS))
    chosen: list[Method] = []
    for item in items:
        if isinstance(item, str):
            chosen.append(method_class(item)(loaded))
        elif item.loaded.module is loaded.module:
            chosen.append(item)
        else:
            chosen.append(item.on(loaded))
    names = [m.name for m in chosen]
    if len(set(names)) != len(names):
        raise VizError(f"methods {names} name one twice")
    return chosen


DEFAULT_BATCH = 8  # images per call of a method where `RunOptions.batch` is None


def _expand(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # one map for every channel, so every method's maps have the input's shape
    return maps.expand(-1, x.shape[1], -1, -1).contiguous()


def attribute(
    model: ModelLike,
    images: torch.Tensor,
    methods: MethodsLike | None = None,
    *,
    targets: Targets | ScoreTarget = "top1",
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> Attributions:
    """Attribution maps of `images` for several methods, `run.batch` images at a time.

    Runs on the model's device inside `model_guard` with in-place flags off; the model is left
    exactly as found. Maps are with respect to the [0, 1] pixels, in the input's channels
    (a one-channel method's map is repeated over them; call `GradCAM` itself for `(B, 1, H, W)`).

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (described with ImageNet statistics).
        images: `(B, C, H, W)` in [0, 1]; C = 1 (repeated), 4 (RGBA onto white) or the model's.
        methods: names from `METHODS` (default options) and method objects (`GradCAM(model,
            layer=...)`, their options), in panel order; default `DEFAULT_METHODS`.
        targets: the class to explain per image: a `(B,)` tensor of indices, a list or tuple of
            B indices or class names (case-insensitive, `top1` allowed), one for every image, or
            a score target `(outputs) -> (B,)` (a callable, e.g. `SegmentationTarget`).
        progress: called as `progress(done, total, message)` in units of images x methods.
        run: how it runs (`RunOptions`): `batch` images per call of a method (None:
            `DEFAULT_BATCH`; memory, not the maps). Attribution ignores `run.amp`: it runs
            float32, except Score-CAM's masked passes, which follow `ScoreCAM.amp`.

    Returns:
        `Attributions` with `maps[method]` of shape `(B, C, H, W)` on the images' device, and
        `warnings`: all-zero maps (e.g. Grad-CAM at a layer with no gradient) and guided / deconv
        maps equal to saliency (no activation on the path), one `MapWarning` per finding.

    Example:
        >>> result = attribute(model, images, ["saliency", GradCAM(model, "_blocks.15")],
        ...                    targets=["espresso", 281])  # B = 2
        >>> result.maps["gradcam"].shape  # (2, 3, 224, 224)
        >>> for warning in result.warnings:
        ...     print(warning)  # e.g. guided equals saliency on every image (...)
    """
    loaded = as_loaded(model)
    chosen = as_methods(loaded, methods)
    batch = as_run_options(run).batch_or(DEFAULT_BATCH)
    check_images(images)
    x_all = images.to(device=loaded.device, dtype=loaded.dtype)
    names = [m.name for m in chosen]
    layers = {m.name: m.layer_name for m in chosen if isinstance(m, _LayerMethod)}
    preflight(loaded, sorted(set(layers.values())), output=True, size=images.shape[-2:])
    net = Classifier(loaded)
    count = images.shape[0]
    total = count * len(chosen)
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    done = 0
    with model_guard(loaded.module), inplace_off(loaded.module):
        predictions = predict(net, x_all)
        scorer: nn.Module = net
        if is_score_target(targets):  # each method explains the callable's score: output 0
            scorer = ScoreNet(net, targets)  # type: ignore[arg-type]
            resolved = torch.full((count,), -1, dtype=torch.long, device=x_all.device)
        else:
            resolved = targets_of(loaded, cast(Targets, targets), predictions)
        picked = resolved.clamp(min=0)
        checks = MapChecks(names, layers, loaded.module)
        progress(0, total, "attribution")
        for index in torch.split(torch.arange(count, device=x_all.device), batch):
            x, t = x_all[index], picked[index]
            chunk: dict[str, torch.Tensor] = {}
            for method in chosen:
                start = time.perf_counter()
                part = method._maps(scorer, x, t).detach()  # type: ignore[arg-type]
                chunk[method.name] = _expand(part, x) if method.one_channel else part
                seconds[method.name] += time.perf_counter() - start
                maps[method.name].append(chunk[method.name].to(images.device))
                done += len(index)
                progress(done, total, method.name)
            checks.add(chunk)  # on the device, before the chunk's maps are let go
    return Attributions(
        maps={name: torch.cat(parts) for name, parts in maps.items()},
        targets=resolved.to(images.device),
        predictions=predictions,
        layer=next(iter(layers.values()), ""),
        seconds=seconds,
        warnings=checks.warnings(),
    )


def layer_of(methods: Sequence[Method]) -> str:
    """The (first) layer the methods use, "" when none takes one."""
    return next((m.layer_name for m in methods if isinstance(m, _LayerMethod)), "")
