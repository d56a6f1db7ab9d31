"""The attribution methods by name, their options, and `attribute`: a batch in, one map per method out.

| name           | what (captum class)                                   | sign        |
|----------------|-------------------------------------------------------|-------------|
| saliency       | gradient of the target logit (`Saliency`, abs=False)  | signed      |
| ig             | integrated gradients from a flat baseline             | signed      |
| smoothgrad     | `NoiseTunnel` over the gradient (`Saliency`)          | signed      |
| guided         | guided backprop (`GuidedBackprop` + `relu_rule`)      | signed      |
| deconv         | deconvnet (`Deconvolution` + `relu_rule`)             | signed      |
| gradcam        | `LayerGradCam`, ReLU, bilinear `interpolate`          | >= 0        |
| guided-gradcam | `GuidedGradCam` (+ `relu_rule`)                       | signed      |
| occlusion      | logit drop under a sliding flat square (`Occlusion`)  | signed      |
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from vizcnn.attribution import adapter
from vizcnn.attribution.checks import MapChecks, MapWarning
from vizcnn.attribution.classifier import (
    Classifier,
    Predictions,
    Targets,
    check_target,
    predict,
    resolve_targets,
    targets_of,
)
from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.hooks import Layer, find_module, inplace_off, model_guard
from vizcnn.hooks import layer_name as resolve_layer
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded


@dataclass(frozen=True)
class AttributionConfig:
    """Options of `attribute`; the CLI's options map one to one onto these fields."""

    methods: tuple[str, ...] = ("saliency", "ig", "gradcam")  # names from METHODS, in panel order
    target: str | int = "top1"  # top1, a class name (espresso) or an index (967), for every image
    layer: Layer | None = None  # Grad-CAM layer, name or submodule (None: the last Conv2d)
    baseline: float = 0.0  # flat grey level in [0, 1] for IG, occlusion and deletion (0 = black)
    ig_steps: int = 32  # integration steps of integrated gradients
    smoothgrad_samples: int = 16  # noisy copies per image for SmoothGrad
    smoothgrad_stdev: float = 0.15  # noise std in [0, 1] pixel units (15% of the range)
    occlusion_window: int = 0  # occluding square side in pixels (0: a seventh of the shorter side)
    occlusion_stride: int = 0  # its step in pixels (0: half the window)
    batch: int = 8  # images per call of a method; also bounds IG / SmoothGrad internal batches
    seed: int = 0  # SmoothGrad noise

    def __post_init__(self) -> None:
        if not self.methods:
            raise VizError("no attribution method given; choose from " + ", ".join(METHODS))
        for name in self.methods:
            if name not in METHODS:
                raise VizError(did_you_mean(name, METHODS, "attribution method"))
        if len(set(self.methods)) != len(self.methods):
            raise VizError(f"methods {list(self.methods)} name one twice")
        if not 0.0 <= self.baseline <= 1.0:
            raise VizError(f"baseline {self.baseline} must lie in [0, 1]")
        for name in ("ig_steps", "smoothgrad_samples", "batch"):
            if getattr(self, name) < 1:
                raise VizError(f"{name} = {getattr(self, name)} must be at least 1")
        if self.smoothgrad_stdev <= 0:
            raise VizError(f"smoothgrad_stdev = {self.smoothgrad_stdev} must be > 0")
        if self.occlusion_window < 0 or self.occlusion_stride < 0:
            raise VizError("occlusion window and stride must be >= 0 (0 = automatic)")


@dataclass(frozen=True)
class _Call:
    """What a method needs besides the batch: the options, the Grad-CAM layer, the baseline."""

    config: AttributionConfig
    layer: nn.Module  # the Grad-CAM layer (the whole model when no method needs one)


def _baseline(x: torch.Tensor, call: _Call) -> torch.Tensor:
    return torch.full_like(x, call.config.baseline)


def _occlusion(net: Classifier, x: torch.Tensor, t: torch.Tensor, call: _Call) -> torch.Tensor:
    window, stride = occlusion_geometry(call.config, x.shape[-2:])
    return adapter.occlusion(
        net, x, t, _baseline(x, call), window, stride, per_eval=max(1, 32 // x.shape[0])
    )


def occlusion_geometry(
    config: AttributionConfig, size: torch.Size | tuple[int, int]
) -> tuple[int, int]:
    """The occluding square's side and stride for images of `size` `(H, W)`."""
    window = config.occlusion_window or max(2, min(size) // 7)
    if window > min(size):
        raise VizError(f"occlusion window {window} exceeds the image side {min(size)}")
    return window, config.occlusion_stride or max(1, window // 2)


def _expand(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # one map for every channel, so every method returns the input's shape
    return cam.expand(-1, x.shape[1], -1, -1).contiguous()


Method = Callable[[Classifier, torch.Tensor, torch.Tensor, _Call], torch.Tensor]

METHODS: dict[str, Method] = {
    "saliency": lambda net, x, t, c: adapter.saliency(net, x, t),
    "ig": lambda net, x, t, c: adapter.integrated_gradients(
        net, x, t, _baseline(x, c), c.config.ig_steps, internal_batch=c.config.batch * 4
    ),
    "smoothgrad": lambda net, x, t, c: adapter.smoothgrad(
        net,
        x,
        t,
        c.config.smoothgrad_samples,
        c.config.smoothgrad_stdev,
        c.config.seed,
        samples_batch=max(1, (c.config.batch * 4) // x.shape[0]),
    ),
    "guided": lambda net, x, t, c: adapter.guided_backprop(net, x, t),
    "deconv": lambda net, x, t, c: adapter.deconvolution(net, x, t),
    "gradcam": lambda net, x, t, c: _expand(adapter.gradcam(net, c.layer, x, t), x),
    "guided-gradcam": lambda net, x, t, c: adapter.guided_gradcam(net, c.layer, x, t),
    "occlusion": _occlusion,
}


LAYER_METHODS = frozenset({"gradcam", "guided-gradcam"})  # the methods that use `layer`


def default_layer(loaded: LoadedModel) -> str:
    """The Grad-CAM layer: the model's own choice, else its last `nn.Conv2d`."""
    if loaded.default_layers.get("gradcam"):
        return loaded.default_layers["gradcam"][0]
    convs = [n for n, m in loaded.module.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise VizError(f"{loaded.name} has no Conv2d layer for Grad-CAM; name one with --layer")
    return convs[-1]


@dataclass
class Attributions:
    """`attribute`'s result: one `(B, C, H, W)` map per method plus what the model predicted."""

    maps: dict[str, torch.Tensor]  # method -> (B, C, H, W), C = the input's channels
    targets: torch.Tensor  # (B,) class attributed per image
    predictions: Predictions  # probabilities and top-5 per image
    layer: str  # Grad-CAM layer used ("" when no method needed one)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per method
    # blank maps and methods equal to the plain gradient, one per finding; str(w) is the message
    warnings: list[MapWarning] = field(default_factory=list)


def check_config(loaded: LoadedModel, config: AttributionConfig) -> str:
    """Validate the target and Grad-CAM layer against the model; returns the layer name."""
    check_target(loaded, config.target)
    if not LAYER_METHODS.intersection(config.methods) and config.layer is None:
        return ""
    # a submodule is named by its dotted path; never `config.layer or ...`: an empty
    # nn.Sequential is falsy
    layer = "" if config.layer is None else config.layer
    name = resolve_layer(loaded.module, layer) or default_layer(loaded)
    find_module(loaded.module, name)
    return name


def attribute(
    model: ModelLike,
    images: torch.Tensor,
    config: AttributionConfig | None = None,
    *,
    targets: Targets | None = None,
    progress: ProgressCallback = no_progress,
) -> Attributions:
    """Attribution maps of `images` for every method in `config.methods`.

    Runs on the model's device inside `model_guard` with in-place flags off; the model is left
    exactly as found. Maps are with respect to the [0, 1] pixels, in the input's channels.

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (described with ImageNet statistics).
        images: `(B, C, H, W)` in [0, 1]; C = 1 (repeated), 4 (RGBA onto white) or the model's.
        config: methods, target, Grad-CAM layer and per-method options.
        targets: the class to explain per image, overriding `config.target`: a `(B,)` tensor of
            indices (e.g. the sanity check's fixed targets), a list or tuple of B indices or class
            names (case-insensitive, `top1` allowed), or one index or name for every image.
        progress: called as `progress(done, total, message)` in units of images x methods.

    Returns:
        `Attributions` with `maps[method]` of shape `(B, C, H, W)` on the images' device, and
        `warnings`: all-zero maps (e.g. Grad-CAM at a layer with no gradient) and guided / deconv
        maps equal to saliency (a model without ReLUs), one `MapWarning` per finding.

    Example:
        >>> config = AttributionConfig(methods=("saliency", "guided", "gradcam"))
        >>> result = attribute(model, images, config, targets=["espresso", 281])  # B = 2
        >>> result.maps["gradcam"].shape  # (2, 3, 224, 224)
        >>> for warning in result.warnings:
        ...     print(warning)  # e.g. guided equals saliency on every image (...)
    """
    config = config or AttributionConfig()
    loaded = as_loaded(model)
    if images.dim() != 4:
        raise VizError(f"images must be (B, C, H, W); got shape {tuple(images.shape)}")
    warn_if_normalized(images)
    layer_name = check_config(loaded, config)
    device, dtype = loaded.device, loaded.dtype
    x_all = images.to(device=device, dtype=dtype)
    net = Classifier(loaded)
    batch = images.shape[0]
    chunks = list(torch.split(torch.arange(batch), config.batch))
    total = batch * len(config.methods)
    maps: dict[str, list[torch.Tensor]] = {name: [] for name in config.methods}
    seconds = dict.fromkeys(config.methods, 0.0)
    done = 0
    with model_guard(loaded.module), inplace_off(loaded.module):
        layer = find_module(loaded.module, layer_name) if layer_name else loaded.module
        call = _Call(config, layer)
        predictions = predict(net, x_all)
        if targets is None:
            resolved = resolve_targets(loaded, config.target, predictions)
        else:
            resolved = targets_of(loaded, targets, predictions)
        checks = MapChecks(config.methods, layer_name, loaded.module)
        progress(0, total, "attribution")
        for index in chunks:
            x, t = x_all[index.to(device)], resolved[index.to(device)]
            chunk: dict[str, torch.Tensor] = {}
            for name in config.methods:
                start = time.perf_counter()
                chunk[name] = METHODS[name](net, x, t, call).detach()
                seconds[name] += time.perf_counter() - start
                maps[name].append(chunk[name].to(images.device))
                done += len(index)
                progress(done, total, name)
            checks.add(chunk)  # on the device, before the chunk's maps are let go
    return Attributions(
        maps={name: torch.cat(parts) for name, parts in maps.items()},
        targets=resolved.to(images.device),
        predictions=predictions,
        layer=layer_name,
        seconds=seconds,
        warnings=checks.warnings(),
    )
