"""Attribution methods as callables: `GradCAM(model, layer)(images, targets)` gives the maps.

Each method is bound to a model with its own options, as in captum and pytorch-grad-cam, and
returns maps with respect to the [0, 1] pixels, on the images' device:

| name           | class                 | what (captum class)                                  | maps        |
|----------------|-----------------------|------------------------------------------------------|-------------|
| saliency       | `Saliency`            | gradient of the target logit (`Saliency`, abs=False) | (B, C, H, W) signed |
| ig             | `IntegratedGradients` | integrated gradients from a flat baseline            | (B, C, H, W) signed |
| smoothgrad     | `SmoothGrad`          | `NoiseTunnel` over the gradient (`Saliency`)         | (B, C, H, W) signed |
| guided         | `GuidedBackprop`      | guided backprop (`GuidedBackprop` + `relu_rule`)     | (B, C, H, W) signed |
| deconv         | `Deconvolution`       | deconvnet (`Deconvolution` + `relu_rule`)            | (B, C, H, W) signed |
| gradcam        | `GradCAM`             | as `LayerGradCam`, ReLU, bilinear (`cams.gradcam`)   | (B, 1, H, W) >= 0   |
| guided-gradcam | `GuidedGradCAM`       | `GuidedGradCam` (+ `relu_rule`)                      | (B, C, H, W) signed |
| occlusion      | `Occlusion`           | logit drop under a sliding flat square (`Occlusion`) | (B, C, H, W) signed |
| lrp            | `LRP`                 | layer-wise relevance propagation (zennit, a composite) | (B, C, H, W) signed |

C is the input's channel count. The class-activation-map family (Grad-CAM++, XGrad-CAM,
HiResCAM, Layer-CAM, Eigen-CAM, Score-CAM, Ablation-CAM, FullGrad) is in `cams.py` and registers
itself in `METHODS`. Every call runs inside `model_guard` with in-place flags off: the model is
left exactly as found.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch import nn

from vizcnn.attribution.classifier import (
    Classifier,
    Targets,
    predict,
    shape_of_predictions,
    targets_of,
)
from vizcnn.attribution.targets import ScoreNet, ScoreTarget, is_score_target
from vizcnn.core.devices import draw_seed, seed_record
from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.hooks import Layer, find_module, inplace_off, model_guard
from vizcnn.hooks import layer_name as resolve_layer
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded

M = TypeVar("M", bound="Method")


def _captum() -> ModuleType:
    """The captum adapter, imported on first use: captum takes about a second to import."""
    from vizcnn.attribution import adapter

    return adapter


def _at_least(method: str, name: str, value: float, low: float) -> None:
    if value < low:
        raise VizError(f"{method} {name} = {value} must be at least {low:g}")


def _baseline_ok(method: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise VizError(f"{method} baseline = {value} must lie in [0, 1]")


def check_images(images: torch.Tensor) -> None:
    """`(B, C, H, W)` or a one-line VizError; warns about normalized-looking pixels."""
    if images.dim() != 4:
        raise VizError(f"images must be (B, C, H, W); got shape {tuple(images.shape)}")
    warn_if_normalized(images)


@dataclass(frozen=True, eq=False)
class Method:
    """An attribution method bound to a model: `method(images, targets)` gives its maps.

    Subclasses are small frozen dataclasses: `model` first, then the method's own options with
    their defaults (read them as `IntegratedGradients.steps`).
    """

    model: ModelLike = field(repr=False)  # a `LoadedModel` or a bare `nn.Module`
    loaded: LoadedModel = field(init=False, repr=False)

    name: ClassVar[str] = ""  # the method's name in `METHODS` and in result dicts
    one_channel: ClassVar[bool] = False  # maps are (B, 1, H, W) instead of the input's channels

    def __post_init__(self) -> None:
        object.__setattr__(self, "loaded", as_loaded(self.model))
        self._check()

    def _check(self) -> None:
        """Validate the options (a one-line VizError naming the field)."""

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The maps of batch `x` on the model's device for targets `t` `(B,)`, inside the guard."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The method's options as plain values (for a provenance block)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.init and f.name != "model"
        }

    def on(self: M, model: ModelLike) -> M:
        """The same method with the same options on another model (e.g. a randomized copy)."""
        return dataclasses.replace(self, model=model, **self._portable())

    def _portable(self) -> dict[str, Any]:
        return {}

    def __call__(
        self, images: torch.Tensor, targets: Targets | ScoreTarget = "top1"
    ) -> torch.Tensor:
        """The maps of `images` `(B, C, H, W)` in [0, 1] for `targets`, on the images' device.

        Args:
            images: C = 1 (repeated), 4 (RGBA onto white) or the model's channel count.
            targets: the class to explain per image: a `(B,)` tensor of indices, a list or tuple
                of B indices or class names (case-insensitive, `top1` allowed), one index or
                name for every image, or a score target: a callable `(outputs) -> (B,)` such as
                `SegmentationTarget` (the method explains that score).

        Returns:
            `(B, 1, H, W)` for one-channel methods (Grad-CAM), else `(B, C, H, W)`.
        """
        check_images(images)
        loaded = self.loaded
        net = Classifier(loaded)
        x = images.to(device=loaded.device, dtype=loaded.dtype)
        with model_guard(loaded.module), inplace_off(loaded.module):
            if is_score_target(targets):
                scorer = ScoreNet(net, targets)  # type: ignore[arg-type]
                t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
                maps = self._maps(scorer, x, t).detach()  # type: ignore[arg-type]
            else:
                known = cast(Targets, targets)
                # explicit classes need no prediction: no forward pass beyond the method's own
                shapes = shape_of_predictions(loaded, known, x) or predict(net, x)
                t = targets_of(loaded, known, shapes)
                maps = self._maps(net, x, t).detach()
        return maps.to(images.device)


@dataclass(frozen=True, eq=False)
class Saliency(Method):
    """The signed gradient of the target logit (Simonyan et al. 2014).

    Example:
        >>> maps = Saliency(model)(images, targets=[281, "espresso"])  # (2, 3, 224, 224)
    """

    name: ClassVar[str] = "saliency"

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _captum().saliency(net, x, t)


@dataclass(frozen=True, eq=False)
class IntegratedGradients(Method):
    """Integrated gradients from a flat grey image (Sundararajan et al. 2017).

    Example:
        >>> maps = IntegratedGradients(model, steps=64, baseline=0.5)(images, "espresso")
    """

    steps: int = 32  # integration steps (Gauss-Legendre)
    baseline: float = 0.0  # flat grey level in [0, 1] the path starts from (0 = black)
    batch: int = 32  # images x steps per forward pass (memory, not the result)

    name: ClassVar[str] = "ig"

    def _check(self) -> None:
        _at_least("IntegratedGradients", "steps", self.steps, 1)
        _at_least("IntegratedGradients", "batch", self.batch, 1)
        _baseline_ok("IntegratedGradients", self.baseline)

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flat = torch.full_like(x, self.baseline)
        return _captum().integrated_gradients(net, x, t, flat, self.steps, self.batch)


@dataclass(frozen=True, eq=False)
class SmoothGrad(Method):
    """The gradient averaged over noisy copies of the image (Smilkov et al. 2017).

    An int `seed` gives the same maps on every call; a `torch.Generator` is advanced by each
    call. torch's global random state is left as it was.

    Example:
        >>> maps = SmoothGrad(model, samples=32, stdev=0.1, seed=0)(images)
    """

    samples: int = 16  # noisy copies per image
    stdev: float = 0.15  # noise std in [0, 1] pixel units (15% of the range)
    seed: int | torch.Generator = 0  # the noise
    batch: int = 32  # noisy images per forward pass (memory; the noise depends on it)

    name: ClassVar[str] = "smoothgrad"

    def _check(self) -> None:
        _at_least("SmoothGrad", "samples", self.samples, 1)
        _at_least("SmoothGrad", "batch", self.batch, 1)
        if not self.stdev > 0:
            raise VizError(f"SmoothGrad stdev = {self.stdev} must be > 0")

    def options(self) -> dict[str, Any]:
        options = super().options()
        if isinstance(self.seed, torch.Generator):
            options["seed"] = seed_record(self.seed)  # its state: another state, other maps
        return options

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        per_batch = max(1, self.batch // x.shape[0])
        seed = draw_seed(self.seed)  # captum draws from the global RNG, forked in the adapter
        return _captum().smoothgrad(net, x, t, self.samples, self.stdev, seed, per_batch)


@dataclass(frozen=True, eq=False)
class GuidedBackprop(Method):
    """Guided backpropagation (Springenberg et al. 2015), generalised to every activation.

    A rectifier passes `f'(x) * max(g, 0)`, a gate (sigmoid, tanh, hardsigmoid) the plain
    gradient; what the rule cannot see is a one-line VizError (`vizcnn.core.relu_rules`).
    """

    name: ClassVar[str] = "guided"

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _captum().guided_backprop(net, x, t)


@dataclass(frozen=True, eq=False)
class Deconvolution(Method):
    """The deconvnet rule (Zeiler & Fergus 2014): a rectifier passes `max(g, 0)`, any activation.

    Gates pass the plain gradient; what the rule cannot see is a one-line VizError.
    """

    name: ClassVar[str] = "deconv"

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _captum().deconvolution(net, x, t)


def default_layer(loaded: LoadedModel) -> str:
    """The Grad-CAM layer: the model's own choice, else its last stage's output (a block's
    output, where the residual sum and activation have happened; `LoadedModel.layer_choice`)."""
    return loaded.layer_choice("gradcam").layers[0]


@dataclass(frozen=True, eq=False)
class _LayerMethod(Method):
    """A method at one layer, given by name or submodule (None: `default_layer`)."""

    layer: Layer | None = None  # name or submodule (None: `default_layer`)
    layer_name: str = field(init=False, default="")  # the layer's dotted name, resolved

    def _check(self) -> None:
        # never `layer or ...`: an empty nn.Sequential is falsy
        layer = "" if self.layer is None else self.layer
        name = resolve_layer(self.loaded.module, layer) or default_layer(self.loaded)
        find_module(self.loaded.module, name)
        object.__setattr__(self, "layer_name", name)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "layer": self.layer_name}

    def _portable(self) -> dict[str, Any]:
        return {"layer": self.layer_name}  # a submodule of this model is not in another one

    def _layer(self) -> nn.Module:
        return find_module(self.loaded.module, self.layer_name)


@dataclass(frozen=True, eq=False)
class GradCAM(_LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017) at `layer`: ReLU'd, upsampled bilinearly, `(B, 1, H, W)`.

    Example:
        >>> cam = GradCAM(model, "_blocks.15")(images, targets=torch.tensor([967, 281]))
        >>> cam.shape  # (2, 1, 224, 224)
    """

    name: ClassVar[str] = "gradcam"
    one_channel: ClassVar[bool] = True

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        from vizcnn.attribution.cams import gradcam  # the CAM family's one forward + backward

        return gradcam(net, self._layer(), x, t)


@dataclass(frozen=True, eq=False)
class GuidedGradCAM(_LayerMethod):
    """Guided Grad-CAM: guided backprop times the (nearest-upsampled) Grad-CAM map at `layer`."""

    name: ClassVar[str] = "guided-gradcam"

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _captum().guided_gradcam(net, self._layer(), x, t)


def occlusion_geometry(
    window: int, stride: int, size: torch.Size | tuple[int, int]
) -> tuple[int, int]:
    """The occluding square's side and stride for images of `size` `(H, W)` (0 = automatic)."""
    side = window or max(2, min(size) // 7)
    if side > min(size):
        raise VizError(f"Occlusion window {side} exceeds the image side {min(size)}")
    return side, stride or max(1, side // 2)


@dataclass(frozen=True, eq=False)
class Occlusion(Method):
    """The target logit's drop when a flat square covers each place (Zeiler & Fergus 2014).

    Example:
        >>> maps = Occlusion(model, window=16, stride=8, baseline=0.5)(images)
    """

    window: int = 0  # occluding square side in pixels (0: a seventh of the shorter side)
    stride: int = 0  # its step in pixels (0: half the window)
    baseline: float = 0.0  # flat grey level in [0, 1] of the square (0 = black)
    batch: int = 32  # occluded images per forward pass (memory, not the result)

    name: ClassVar[str] = "occlusion"

    def _check(self) -> None:
        if self.window < 0 or self.stride < 0:
            raise VizError("Occlusion window and stride must be >= 0 (0 = automatic)")
        _at_least("Occlusion", "batch", self.batch, 1)
        _baseline_ok("Occlusion", self.baseline)

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        window, stride = occlusion_geometry(self.window, self.stride, x.shape[-2:])
        flat = torch.full_like(x, self.baseline)
        per_eval = max(1, self.batch // x.shape[0])
        return _captum().occlusion(net, x, t, flat, window, stride, per_eval=per_eval)


# LRP composites by name (zennit's classes, `vizcnn.attribution.lrp_adapter`), default first
LRP_COMPOSITES: dict[str, str] = {
    "epsilon-plus-flat": "EpsilonPlusFlat: flat first layer, z+ convolutions, epsilon linear",
    "epsilon": "Epsilon on every convolution and linear layer (LRP-epsilon; 0: LRP-0)",
    "epsilon-plus": "EpsilonPlus: z+ convolutions, epsilon linear layers",
    "gamma": "EpsilonGammaBox: z-box first layer, gamma convolutions, epsilon linear",
    "alpha-beta": "EpsilonAlpha2Beta1: alpha=2 beta=1 convolutions, epsilon linear",
    "alpha-beta-flat": "EpsilonAlpha2Beta1Flat: alpha-beta with a flat first layer",
    "excitation-backprop": "ExcitationBackprop: z+ everywhere (Zhang et al. 2018)",
}


def _zennit() -> ModuleType:
    """The zennit adapter, imported on first use (a one-line VizError without zennit)."""
    from vizcnn.attribution import lrp_adapter

    return lrp_adapter


@dataclass(frozen=True, eq=False)
class LRP(Method):
    """Layer-wise relevance propagation (Bach et al. 2015) through zennit, with a `composite`.

    The relevance starts as the target logit and is propagated to the pixels by the
    composite's rules; BatchNorm is merged into the convolution before it, torchvision ResNets'
    residual sums get zennit's ResNet canonizer. Every element-wise activation (ReLU, SiLU,
    GELU, Hardswish, Mish, ...) passes relevance unchanged, a squeeze-excitation product gives
    all of it to the signal, other residual sums split it in proportion (docs/attribute.md).
    The map sums to the logit less what biases and epsilon absorb.

    Example:
        >>> maps = LRP(model, composite="gamma")(images, "espresso")  # (B, C, H, W)
    """

    composite: str = "epsilon-plus-flat"  # a name in `LRP_COMPOSITES`
    epsilon: float = 1e-6  # the epsilon rule's stabilizer (0: LRP-0)
    gamma: float = 0.25  # the gamma rule's weight on positive contributions (`gamma`)

    name: ClassVar[str] = "lrp"

    def _check(self) -> None:
        if self.composite not in LRP_COMPOSITES:
            raise VizError(
                did_you_mean(self.composite, LRP_COMPOSITES, "LRP composite")
                + f" (valid: {', '.join(LRP_COMPOSITES)})"
            )
        if not self.epsilon >= 0 or not self.gamma >= 0:
            raise VizError(f"LRP epsilon ({self.epsilon}) and gamma ({self.gamma}) must be >= 0")
        if importlib.util.find_spec("zennit") is None:  # said now, before any work
            raise VizError("the lrp method needs zennit: pip install 'vizcnn[lrp]'")

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        loaded = self.loaded
        score = None
        if isinstance(net, ScoreNet):  # a score target: its share of each output starts it
            score, net = net.target, net.classifier
        if x.shape[1] not in (1, loaded.channels):
            raise VizError(
                f"lrp takes images with {loaded.channels} channels or 1; got {x.shape[1]}"
            )
        edges = torch.stack([torch.zeros_like(x[:1, :, :1, :1]), torch.ones_like(x[:1, :, :1, :1])])
        low, high = (loaded.normalize(net.adapt(e)) for e in edges)
        # relevance of the normalized input: normalization is per pixel, so its relevance is
        # the pixel's (a gradient through it would divide by the std)
        z = loaded.normalize(net.adapt(x))
        relevance = _zennit().lrp(
            loaded.module,
            z,
            t,
            self.composite,
            score=score,
            epsilon=self.epsilon,
            gamma=self.gamma,
            low=low,
            high=high,
        )
        if not torch.isfinite(relevance).all():
            raise VizError(
                f"LRP's {self.composite} composite overflowed on {loaded.name} (terms that "
                "cancel in a layer); use composite epsilon-plus-flat, alpha-beta or a larger "
                f"epsilon (now {self.epsilon:g})"
            )
        if x.shape[1] != relevance.shape[1]:  # a grey image repeated: its pixels' relevance
            relevance = relevance.sum(1, keepdim=True)
        return relevance.to(x.dtype)


# every method by name, in panel order
METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Saliency,
        IntegratedGradients,
        SmoothGrad,
        GuidedBackprop,
        Deconvolution,
        GradCAM,
        GuidedGradCAM,
        Occlusion,
        LRP,
    )
}
DEFAULT_METHODS = ("saliency", "ig", "guided", "gradcam")  # `attribute`'s and the CLI's


def register(*classes: type[Method]) -> None:
    """Add methods to `METHODS` under their `name` (after the ones there: panel order)."""
    for cls in classes:
        if cls.name in METHODS and METHODS[cls.name] is not cls:
            raise VizError(f"two attribution methods are called {cls.name!r}")
        METHODS[cls.name] = cls


def method_class(name: str) -> type[Method]:
    """The class of the method called `name` (a VizError naming the closest names)."""
    if name not in METHODS:
        raise VizError(did_you_mean(name, METHODS, "attribution method"))
    return METHODS[name]


def make_methods(
    model: ModelLike, names: tuple[str, ...] | list[str], **options: Any
) -> list[Method]:
    """One method per name on `model`, each given those of `options` that it has.

    Options no chosen method has are ignored, so one set (e.g. the CLI's) serves any choice;
    a name no method has is a VizError.

    Example:
        >>> make_methods(model, ["ig", "gradcam"], steps=64, layer="_blocks.15", samples=8)
        [IntegratedGradients(steps=64, ...), GradCAM(layer='_blocks.15', ...)]
    """
    classes = [method_class(name) for name in names]
    known = {f.name for cls in METHODS.values() for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(options) - known)
    if unknown:
        raise VizError(f"no attribution method has the option(s) {', '.join(unknown)}")
    loaded = as_loaded(model)
    made = []
    for cls in classes:
        fields = {f.name for f in dataclasses.fields(cls) if f.init} - {"model"}
        made.append(cls(loaded, **{k: v for k, v in options.items() if k in fields}))
    return made


# the class-activation-map family registers itself on import; imported last, as it builds on
# the classes above (importing `cams` first works too: it imports this module before it
# registers)
from vizcnn.attribution import cams as _cams  # noqa: E402, F401
