"""The captum adapter: the one place vizcnn calls captum.

Each function takes `net`, an `nn.Module` mapping `(B, C, H, W)` images to `(B, K)` logits, a batch
`(B, C, H, W)` and one target class per image `(B,)`, and returns `(B, C, H, W)`. The callers
(`methods.py`) run them inside `model_guard` with in-place flags off.

Guided backpropagation and deconvolution go through captum's `GuidedBackprop` / `Deconvolution`
*inside* `vizcnn.core.relu_rules.relu_rule`: captum's hooks only reach `nn.ReLU` modules, the rule
reaches every activation (functional `F.relu` in GoogLeNet, `nn.ReLU6` in EfficientNet-Lite,
SiLU, GELU, Hardswish, Mish, LeakyReLU, ... in timm's networks) through a TorchFunctionMode, and
refuses in one line what it cannot see. Where both apply (an `nn.ReLU` module), the two rules
agree and applying them twice changes nothing (clamping at zero is idempotent).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from vizcnn.core.relu_rules import relu_rule


def _leaf(x: torch.Tensor) -> torch.Tensor:
    # a fresh leaf that requires grad: captum would otherwise set the flag and warn about it
    return x.detach().clone().requires_grad_(True)


@contextmanager
def _rule(net: nn.Module, rule: str) -> Iterator[None]:
    """`relu_rule` for the call, without captum's note that it hooks ReLU modules."""
    with warnings.catch_warnings(), relu_rule(net, rule):  # type: ignore[arg-type]
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        yield


def _as_tensor(result: object) -> torch.Tensor:
    if isinstance(result, tuple):
        result = result[0]
    assert isinstance(result, torch.Tensor)
    return result


def saliency(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The signed gradient of the target logit with respect to the pixels (Simonyan et al. 2014)."""
    return _as_tensor(Saliency(net).attribute(_leaf(x), target=target, abs=False))


def integrated_gradients(
    net: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    steps: int,
    internal_batch: int | None,
) -> torch.Tensor:
    """Integrated gradients from `baseline` `(B, C, H, W)` to `x` (Sundararajan et al. 2017)."""
    ig = IntegratedGradients(net)
    return _as_tensor(
        ig.attribute(
            _leaf(x),
            baselines=baseline,
            target=target,
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=internal_batch,
        )
    )


def _seed_default_generator(device: torch.device, seed: int) -> None:
    """Seed the generator `torch.normal` draws from on `device` when given none, and no other."""
    if device.type == "cpu":
        torch.random.default_generator.manual_seed(seed)
    elif device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    else:  # MPS (and any other backend): one generator per process
        torch.get_device_module(device.type).manual_seed(seed)


def smoothgrad(
    net: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    samples: int,
    stdev: float,
    seed: int,
    samples_batch: int | None,
) -> torch.Tensor:
    """SmoothGrad: `NoiseTunnel` over the signed gradient (`Saliency`), `samples` noisy copies.

    captum takes no generator: it draws the noise with `torch.normal` from the default generator
    of `x`'s device. That one generator is forked (with the CPU's, which `fork_rng` always keeps)
    and seeded from `seed` here, so the result is reproducible and the caller's global random
    state is left as it was (tests/test_attribution_methods.py checks both).
    """
    devices = [] if x.device.type == "cpu" else [x.device]
    with torch.random.fork_rng(devices=devices, device_type=x.device.type):
        # not torch.manual_seed: it would also reseed every other device's generator (all
        # CUDA devices even for a CPU tensor), which no fork restores
        _seed_default_generator(x.device, seed)
        nt = NoiseTunnel(Saliency(net))
        return _as_tensor(
            nt.attribute(
                _leaf(x),
                nt_type="smoothgrad",
                nt_samples=samples,
                nt_samples_batch_size=samples_batch,
                stdevs=stdev,
                target=target,
                abs=False,
            )
        )


def guided_backprop(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015), every activation (`relu_rule`)."""
    with _rule(net, "guided"):
        return _as_tensor(GuidedBackprop(net).attribute(_leaf(x), target=target))


def deconvolution(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The deconvnet rule (Zeiler & Fergus 2014), every activation (`relu_rule`)."""
    with _rule(net, "deconv"):
        return _as_tensor(Deconvolution(net).attribute(_leaf(x), target=target))


def guided_gradcam(
    net: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop times the (nearest-upsampled) Grad-CAM map."""
    with _rule(net, "guided"):
        return _as_tensor(GuidedGradCam(net, layer).attribute(_leaf(x), target=target))


def occlusion(
    net: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    window: int,
    stride: int,
    per_eval: int,
) -> torch.Tensor:
    """Occlusion (Zeiler & Fergus 2014): the logit drop when a `window` square goes to `baseline`."""
    channels = x.shape[1]
    # captum accumulates occlusion in float32 whatever the input's dtype: cast back
    attribution = _as_tensor(
        Occlusion(net).attribute(
            x,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=baseline,
            target=target,
            perturbations_per_eval=per_eval,
        )
    )
    return attribution.to(x.dtype)
