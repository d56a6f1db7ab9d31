"""Class-activation maps: one map per image from one layer's activations `A` `(B, C, h, w)`.

Each method weighs the layer's channels (or positions) by its paper's rule, sums over the
channels, applies ReLU and upsamples bilinearly to the image, `(B, 1, H, W)` like `GradCAM`.
`G` is the gradient of the target's score with respect to `A`; sums run over positions (i, j).

| name        | class              | paper                        | the map before ReLU and upsampling              |
|-------------|--------------------|------------------------------|-------------------------------------------------|
| gradcam++   | `GradCAMPlusPlus`  | Chattopadhay et al. 2018     | sum_c (sum_ij alpha relu(G)) A_c, alpha = G^2 / (2 G^2 + sum_ij A G^3) |
| xgradcam    | `XGradCAM`         | Fu et al. 2020               | sum_c (sum_ij G A / sum_ij A) A_c               |
| hirescam    | `HiResCAM`         | Draelos & Carin 2020         | sum_c G_c * A_c (element-wise)                  |
| layercam    | `LayerCAM`         | Jiang et al. 2021            | sum_c relu(G_c) * A_c (element-wise)            |
| eigencam    | `EigenCAM`         | Muhammad & Yeasin 2020       | A's first principal component (no target)       |
| scorecam    | `ScoreCAM`         | Wang et al. 2020             | sum_c p_t(x * norm(up(A_c))) A_c                |
| ablationcam | `AblationCAM`      | Desai & Ramaswamy 2020       | sum_c (y - y with A_c = 0) / y * A_c             |
| fullgrad    | `FullGrad`         | Srinivas & Fleuret 2019      | psi(x' dx') + sum over conv/BN biases psi(b G)  |

Score-CAM's and Ablation-CAM's extra forward passes run `batch` masked images (or ablated
layer outputs) at a time: a memory bound that leaves the maps unchanged. Everything stays on the
model's device; the only host syncs are one per call (which of Score-CAM's maps are constant).
Score-CAM's masked passes (one per channel: all of its cost) follow `amp` as render and dream do:
bfloat16 autocast where the hardware runs it natively ("auto"), float32 with `amp=False`; the
layer's activations, the masks and the weighted sum stay float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.attribution.classifier import Classifier
from vizcnn.attribution.methods import Method, _at_least, _LayerMethod, register
from vizcnn.attribution.targets import ScoreNet
from vizcnn.core.errors import VizError
from vizcnn.core.outputs import output_tensor
from vizcnn.core.precision import AUTO, AmpSetting, Precision, check_amp, choose_precision

_EPS = 1e-7  # in the denominators of Grad-CAM++, XGrad-CAM and the rescaling, as pytorch-grad-cam


def upsample(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """`(B, c, h, w)` to `(B, c, H, W)` bilinearly, as `GradCAM` (captum's `interpolate`)."""
    return F.interpolate(cam, size=tuple(size), mode="bilinear", align_corners=False)


@contextmanager
def layer_output(
    layer: nn.Module, replace: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Iterator[list[torch.Tensor]]:
    """Record `layer`'s output on each forward pass run in the block (the list grows by one per
    call); `replace` gives the output the rest of the network sees instead.

    Where nothing upstream needs a gradient (frozen parameters, images without `requires_grad`)
    the output becomes a leaf that requires one: the backward pass then stops at the layer, and
    the forward builds no graph before it. The network continues with a copy, so in-place ops
    after the layer leave the record as it was. The hook is removed when the block ends.
    """
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor | None:
        tensor = output_tensor(output)
        if tensor is None or tensor.dim() != 4:
            shape = type(output).__name__ if tensor is None else tuple(tensor.shape)
            raise VizError(
                f"{type(module).__name__} layer returns {shape}; class-activation maps need "
                "(B, C, h, w) activations (give a convolutional layer)"
            )
        if replace is not None:
            tensor = replace(tensor)
        elif torch.is_grad_enabled() and not tensor.requires_grad:
            tensor = tensor.detach().requires_grad_(True)
        seen.append(tensor)
        if not isinstance(output, torch.Tensor):
            return None
        # the rest of the network gets a copy: an in-place op after the layer (DenseNet's
        # F.relu(x, inplace=True) after `features.norm5`) must not change the recorded tensor
        return tensor.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def target_score(outputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Each image's target logit `(B,)` (a `ScoreNet`'s one output has target 0)."""
    return outputs.gather(1, t[:, None])[:, 0]


def _last(seen: list[torch.Tensor]) -> torch.Tensor:
    if not seen:
        raise VizError("the CAM layer never ran in the forward pass; give a layer the model uses")
    return seen[-1]


def activations_and_gradients(
    net: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`A` and `G` `(B, C, h, w)`: the layer's output and the target score's gradient there.

    One forward and one backward pass for the whole batch; the scores are summed, which gives
    each image its own gradient (images do not interact in eval mode).
    """
    with layer_output(layer) as seen, torch.enable_grad():
        score = target_score(net(x), t)
        acts = _last(seen)
        if score.requires_grad and acts.requires_grad:
            (grads,) = torch.autograd.grad(score.sum(), acts, allow_unused=True)
        else:
            grads = None
    acts = acts.detach()
    return acts, torch.zeros_like(acts) if grads is None else grads


def activations(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's output `(B, C, h, w)` and the network's outputs, without gradients."""
    with torch.no_grad(), layer_output(layer) as seen:
        net(x)
        return _last(seen)


def gradcam(net: nn.Module, layer: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): relu(sum_c mean_ij(G_c) A_c), upsampled, `(B, 1, H, W)`:
    captum's `LayerGradCam` with `relu_attributions` and bilinear `interpolate`, in one forward
    and a backward that stops at the layer."""
    acts, grads = activations_and_gradients(net, layer, x, t)
    cam = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True)
    return upsample(cam.clamp(min=0), x.shape[-2:])


@dataclass(frozen=True, eq=False)
class _CAM(_LayerMethod):
    """A class-activation map at `layer`: `_cam` gives it at the layer's resolution."""

    one_channel: ClassVar[bool] = True

    def _cam(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`(B, h, w)` before ReLU."""
        raise NotImplementedError

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cam = self._cam(net, x, t).clamp(min=0)
        return upsample(cam[:, None], x.shape[-2:])


@dataclass(frozen=True, eq=False)
class _GradientCAM(_CAM):
    """A CAM from `A` and `G` (one forward and one backward pass)."""

    def _weigh(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _cam(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        acts, grads = activations_and_gradients(net, self._layer(), x, t)
        return self._weigh(acts, grads)


@dataclass(frozen=True, eq=False)
class GradCAMPlusPlus(_GradientCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018): channel weights sum_ij alpha_ij relu(G_ij), with
    the closed-form alpha of the exponential of the score, where the higher derivatives are
    powers of G: alpha = G^2 / (2 G^2 + sum_ij(A) G^3) (0 where G = 0).

    Example:
        >>> cam = GradCAMPlusPlus(model, "layer4")(images, targets=[281, "espresso"])
    """

    name: ClassVar[str] = "gradcam++"

    def _weigh(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        squared = grads.pow(2)
        denominator = 2 * squared + acts.sum(dim=(2, 3), keepdim=True) * grads.pow(3)
        alpha = torch.where(grads != 0, squared / (denominator + _EPS), 0.0)
        weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
        return (weights * acts).sum(dim=1)


@dataclass(frozen=True, eq=False)
class XGradCAM(_GradientCAM):
    """XGrad-CAM (Fu et al. 2020): channel weights sum_ij G A / sum_ij A (axiom-based).

    Example:
        >>> cam = XGradCAM(model, "layer4")(images)
    """

    name: ClassVar[str] = "xgradcam"

    def _weigh(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        total = acts.sum(dim=(2, 3), keepdim=True)
        weights = (grads * acts).sum(dim=(2, 3), keepdim=True) / (total + _EPS)
        return (weights * acts).sum(dim=1)


@dataclass(frozen=True, eq=False)
class HiResCAM(_GradientCAM):
    """HiResCAM (Draelos & Carin 2020): sum_c G * A element-wise, no averaging of the gradient,
    so the map shows exactly which positions raised the score (Grad-CAM when G is constant over
    positions).

    Example:
        >>> cam = HiResCAM(model, "layer4")(images)
    """

    name: ClassVar[str] = "hirescam"

    def _weigh(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads * acts).sum(dim=1)


@dataclass(frozen=True, eq=False)
class LayerCAM(_GradientCAM):
    """Layer-CAM (Jiang et al. 2021): sum_c relu(G) * A element-wise; works at shallow layers.

    Example:
        >>> cam = LayerCAM(model, "layer2")(images)
    """

    name: ClassVar[str] = "layercam"

    def _weigh(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads.clamp(min=0) * acts).sum(dim=1)


@dataclass(frozen=True, eq=False)
class EigenCAM(_CAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations' first principal component over the
    positions (channels as features, centred), no gradient and no target. Its sign is fixed so
    that it correlates positively with the activations summed over the channels.

    Example:
        >>> cam = EigenCAM(model, "layer4")(images)  # the same map for every target
    """

    name: ClassVar[str] = "eigencam"

    def _cam(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        acts = activations(net, self._layer(), x)
        batch, _, height, width = acts.shape
        rows = acts.flatten(2).transpose(1, 2)  # (B, positions, channels)
        centred = rows - rows.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        projection = (centred @ vh[:, 0, :, None])[..., 0]  # (B, positions), mean 0
        # the projection has mean 0, so its covariance with the channel sum is this dot product
        sign = torch.sign((projection * rows.sum(dim=2)).sum(dim=1, keepdim=True))
        projection = projection * torch.where(sign == 0, 1.0, sign)
        return projection.view(batch, height, width)


def _class_probability(net: nn.Module, outputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Score-CAM's score of `outputs` (float32): the target's softmax probability, or a score
    target's own score."""
    if isinstance(net, ScoreNet):
        return outputs[:, 0]
    return outputs.softmax(dim=1).gather(1, t[:, None])[:, 0]


@dataclass(frozen=True, eq=False)
class ScoreCAM(_CAM):
    """Score-CAM (Wang et al. 2020): each channel weighed by the target's softmax probability
    when the image is masked by that channel's map (upsampled, rescaled to [0, 1]).

    Channels whose map is constant carry no spatial information and get weight 0 without a
    forward pass (as the authors' code skips them). For a score target (a callable), the weight
    is its score of the masked image.

    The masked passes are the whole cost (one forward of the network per channel). They run in
    bfloat16 where the hardware does so natively (`amp="auto"`, as render and dream): 1.9-2.6x
    faster than float32 on a CPU with AVX512-BF16 (resnet18, lite0), the probabilities within
    about 0.01 of float32's (benchmarks/RESULTS.md gives the maps' difference); `amp=False` runs
    them in float32.
    A float64 model always runs in float64.

    Example:
        >>> cam = ScoreCAM(model, "layer4", batch=64)(images)  # 64 masked images per pass
        >>> exact = ScoreCAM(model, "layer4", amp=False)(images)  # float32 masked passes
    """

    batch: int = 32  # masked images per forward pass (memory, not the result)
    amp: AmpSetting = AUTO  # the masked passes: bfloat16 autocast (True, "auto") or float32

    name: ClassVar[str] = "scorecam"

    def _check(self) -> None:
        _at_least("ScoreCAM", "batch", self.batch, 1)
        try:
            check_amp(self.amp)
        except VizError as error:
            raise VizError(f"ScoreCAM: {error}") from None
        super()._check()

    def options(self) -> dict[str, Any]:
        # provenance records the precision the masked passes ran in, not only what was asked
        precision = self._precision()
        ran = precision.name if precision.enabled else str(self.loaded.dtype).split(".")[-1]
        return {**super().options(), "precision": ran}

    def _precision(self) -> Precision:
        """bf16 autocast for the masked passes where `amp` asks and the device runs it; only a
        float32 model: autocast leaves float64 tensors alone, so a float64 model stays float64."""
        if self.loaded.dtype != torch.float32:
            return choose_precision(self.loaded.device, False)
        return choose_precision(self.loaded.device, self.amp)

    def _cam(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        acts = activations(net, self._layer(), x)
        weights = torch.zeros(acts.shape[:2], device=acts.device, dtype=acts.dtype)
        varying = acts.amax(dim=(2, 3)) > acts.amin(dim=(2, 3))
        pairs = varying.nonzero()  # (n, 2): image, channel; the call's one host sync
        precision = self._precision()
        with torch.no_grad():
            for chunk in pairs.split(self.batch):
                image, channel = chunk[:, 0], chunk[:, 1]
                maps = upsample(acts[image, channel][:, None], x.shape[-2:])
                low = maps.amin(dim=(2, 3), keepdim=True)
                high = maps.amax(dim=(2, 3), keepdim=True)
                masks = (maps - low) / (high - low).clamp(min=torch.finfo(maps.dtype).tiny)
                masked = x[image] * masks
                if masked.device.type == "cpu":
                    # oneDNN's convolutions run channels-last batches faster (1.3-1.6x on lite0
                    # and resnet18 in float32, more in bfloat16); the input's layout only, the
                    # model is untouched
                    masked = masked.contiguous(memory_format=torch.channels_last)
                with precision.autocast():
                    outputs = net(masked)
                outputs = outputs.to(acts.dtype)  # the score in the layer's precision
                weights[image, channel] = _class_probability(net, outputs, t[image])
        return (weights[:, :, None, None] * acts).sum(dim=1)


@dataclass(frozen=True, eq=False)
class AblationCAM(_CAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): each channel weighed by the relative drop of the
    target's score when that channel of the layer is set to 0, (y - y_c) / y.

    The ablated layer outputs of one image go through the rest of the network `batch` at a
    time. The network before the layer is the same for every copy: it runs on one copy (each
    module before the layer gets the first of its identical inputs, and what it returns
    broadcasts against the ablated copies), or on all of them where the model does not allow
    that (the maps are the same).

    Example:
        >>> cam = AblationCAM(model, "layer4", batch=256)(images)
    """

    batch: int = 128  # ablated copies of the layer's output per forward pass (memory)

    name: ClassVar[str] = "ablationcam"

    def _check(self) -> None:
        _at_least("AblationCAM", "batch", self.batch, 1)
        super()._check()

    def _cam(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        layer = self._layer()
        acts = activations(net, layer, x)
        channels = acts.shape[1]
        weights = torch.empty(acts.shape[:2], device=acts.device, dtype=acts.dtype)
        shared = True  # the prefix runs once per pass until the model refuses it
        for i in range(acts.shape[0]):
            # row 0 is the layer as it is: y comes from the same kind of pass as the y_c, so
            # the rounding of a batch of images does not enter the relative drop
            score = acts.new_zeros(())
            for start in range(0, channels + 1, self.batch):
                rows = torch.arange(start, min(start + self.batch, channels + 1), device=x.device)
                ablated = acts[i].expand(len(rows), -1, -1, -1).clone()
                hit = rows > 0
                ablated[hit.nonzero()[:, 0], rows[hit] - 1] = 0
                copies = x[i : i + 1].expand(len(rows), -1, -1, -1)
                outputs = None
                if shared:
                    outputs = _ablated_run(net, self.loaded.module, layer, copies, ablated, True)
                    shared = outputs is not None
                if outputs is None:
                    outputs = _ablated_run(net, self.loaded.module, layer, copies, ablated, False)
                assert outputs is not None
                scores = target_score(outputs, t[i].expand(len(rows)))
                if start == 0:
                    score = scores[0]
                # y = 0 exactly: the relative drop is undefined; the plain drop keeps its sign
                drop = (score - scores[hit]) / torch.where(score == 0, 1.0, score)
                weights[i, rows[hit] - 1] = drop
        return (weights[:, :, None, None] * acts).sum(dim=1)


def _ablated_run(
    net: nn.Module,
    model: nn.Module,
    layer: nn.Module,
    copies: torch.Tensor,
    ablated: torch.Tensor,
    shared: bool,
) -> torch.Tensor | None:
    """The outputs for identical `copies` `(n, ...)` with `layer`'s output set to `ablated`.

    `shared`: every module of `model` below its root that runs before the layer gets only the
    first of its `n` inputs, so the common prefix is computed once; None where the model does
    not run that way (a forward reshaping with the root's batch size before the layer, say).
    """
    count = copies.shape[0]
    fired = False

    def replace(_output: torch.Tensor) -> torch.Tensor:
        nonlocal fired
        fired = True
        return ablated

    def first_copy(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if fired:
            return None
        return tuple(
            a[:1] if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == count else a
            for a in args
        )

    modules = [m for m in model.modules() if m is not model] if shared and count > 1 else []
    handles = [m.register_forward_pre_hook(first_copy) for m in modules]
    try:
        with torch.no_grad(), layer_output(layer, replace=replace):
            try:
                outputs = net(copies)
            except RuntimeError:
                if not modules:
                    raise
                return None
    finally:
        for handle in handles:
            handle.remove()
    if outputs.shape[0] != count:
        if not modules:
            raise VizError(f"Ablation-CAM: the model returned {outputs.shape[0]} rows for {count}")
        return None
    return outputs


# layers whose bias FullGrad cannot place on the image: it would leave out part of the score
_UNPLACED = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.ConvTranspose2d)


def _effective_bias(module: nn.Module) -> torch.Tensor:
    """The per-channel constant a conv or eval-mode BatchNorm adds to its output."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        shift = module.bias if module.bias is not None else 0.0
        if module.running_mean is None or module.running_var is None:
            raise VizError(
                "FullGrad needs BatchNorm running statistics; a BatchNorm without them "
                "(track_running_stats=False) has no fixed bias"
            )
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        return (shift - module.running_mean * scale).detach()
    assert isinstance(module, nn.Conv2d) and module.bias is not None
    return module.bias.detach()


def biased_layers(model: nn.Module, name: str = "the model") -> list[nn.Module]:
    """The Conv2d layers with a bias and the BatchNorm2d layers of `model`, in order; a one-line
    VizError where FullGrad cannot sum its biases' gradients."""
    found: list[nn.Module] = [
        m
        for m in model.modules()
        if (isinstance(m, nn.Conv2d) and m.bias is not None) or isinstance(m, nn.BatchNorm2d)
    ]
    unplaced = [
        (path, m)
        for path, m in model.named_modules()
        if isinstance(m, _UNPLACED) and getattr(m, "bias", None) is not None
    ]
    if unplaced:
        path, module = unplaced[0]
        raise VizError(
            f"FullGrad sums the bias-gradients of Conv2d and BatchNorm2d layers; {name} also "
            f"has biased {type(module).__name__} layers ({path}): the sum would be incomplete"
        )
    if not found:
        raise VizError(
            f"FullGrad needs conv biases or BatchNorm layers; {name} has neither (bias-free "
            "convolutions without BatchNorm, or BatchNorm folded away)"
        )
    return found


def _rescaled(maps: torch.Tensor) -> torch.Tensor:
    """psi without the upsampling: |maps| rescaled to [0, 1] per image and channel."""
    maps = maps.abs()
    maps = maps - maps.amin(dim=(2, 3), keepdim=True)
    return maps / (maps.amax(dim=(2, 3), keepdim=True) + _EPS)


# the network continues with copies: an in-place op after the layer must not change (and so
# invalidate for autograd) the recorded tensor
def _record_output(
    seen: list[tuple[nn.Module, torch.Tensor]], module: nn.Module, _inputs: Any, output: Any
) -> Any:
    if not isinstance(output, torch.Tensor):
        return None
    seen.append((module, output))
    return output.clone()


def _record_input(
    seen: list[tuple[nn.Module, torch.Tensor]], module: nn.Module, _act: nn.Module, args: Any
) -> Any:
    seen.append((module, args[0]))
    return (args[0].clone(), *args[1:])


@contextmanager
def _bias_outputs(modules: Sequence[nn.Module]) -> Iterator[list[tuple[nn.Module, torch.Tensor]]]:
    """Record where each module's bias lands on every call in the block: its output, or for a
    BatchNorm with its activation inside (timm's `BatchNormAct2d`) the activation's input."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    handles = []
    for module in modules:
        act = getattr(module, "act", None)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and isinstance(act, nn.Module):
            handles.append(act.register_forward_pre_hook(partial(_record_input, seen, module)))
        else:
            handles.append(module.register_forward_hook(partial(_record_output, seen)))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True, eq=False)
class FullGrad(Method):
    """FullGrad (Srinivas & Fleuret 2019): psi(x' * dy/dx') for the normalized image x' plus,
    for every conv bias and
    BatchNorm (its eval-mode bias b - mean gamma / sqrt(var + eps)), psi(b * dy/d output), where
    psi takes the absolute value, rescales each channel to [0, 1] and upsamples; summed over the
    channels and layers, `(B, 1, H, W)`.

    Refused in one line where the biases do not allow it: no conv bias and no BatchNorm, or
    other biased layers (LayerNorm, GroupNorm) whose share it cannot place.

    Example:
        >>> maps = FullGrad(model)(images)
    """

    layers: tuple[nn.Module, ...] = field(init=False, default=(), repr=False)

    name: ClassVar[str] = "fullgrad"
    one_channel: ClassVar[bool] = True

    def _check(self) -> None:
        object.__setattr__(
            self, "layers", tuple(biased_layers(self.loaded.module, self.loaded.name))
        )

    def _maps(self, net: Classifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        leaf = x.detach().requires_grad_(True)
        with _bias_outputs(self.layers) as seen, torch.enable_grad():
            score = target_score(net(leaf), t)
            outputs = [out for _, out in seen]
            grads = torch.autograd.grad(score.sum(), [leaf, *outputs], allow_unused=True)
        size = x.shape[-2:]
        # the input term of the network the model sees: the normalization's shift -mean/std is
        # a bias too, so "x" is the normalized image, and x' dy/dx' = dy/dx * (x - mean)
        shift = x.new_tensor(self.loaded.mean)[None, :, None, None]
        centred = leaf - shift if leaf.shape[1] == shift.shape[1] else leaf
        total = upsample(_rescaled(grads[0] * centred).sum(dim=1, keepdim=True), size)
        # psi is linear after the rescaling: sum the channels at each layer's resolution, then
        # upsample once per resolution instead of once per channel
        by_size: dict[tuple[int, int], torch.Tensor] = {}
        for (module, _), grad in zip(seen, grads[1:], strict=True):
            if grad is None:
                continue
            bias = _effective_bias(module).to(grad.dtype)
            part = _rescaled(grad * bias[None, :, None, None]).sum(dim=1, keepdim=True)
            key = (grad.shape[2], grad.shape[3])
            by_size[key] = by_size[key] + part if key in by_size else part
        for part in by_size.values():
            total = total + upsample(part, size)
        return total


CAMS: tuple[type[Method], ...] = (
    GradCAMPlusPlus,
    XGradCAM,
    HiResCAM,
    LayerCAM,
    EigenCAM,
    ScoreCAM,
    AblationCAM,
    FullGrad,
)
register(*CAMS)
