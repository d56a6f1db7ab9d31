"""The zennit adapter: the one place vizcnn calls zennit (layer-wise relevance propagation).

`lrp(module, z, target, composite, ...)` returns the relevance of the model's (normalized) input
`z` for one target logit per image. zennit puts a rule on every module it knows (convolutions,
linear layers, pooling, BatchNorm, its activation modules) through hooks; its canonizers merge a
BatchNorm into the convolution whose output it reads (`NamedMergeBatchNorm`, pairs found by a
forward pass) and, for torchvision
ResNets, make the residual sum a module with its own rule (`ResNetCanonizer`). What hooks cannot
reach, functional activations, activation modules zennit does not list (timm's), squeeze-
excitation products and residual sums outside torchvision ResNets, is ruled by
`vizcnn.core.relu_rules.relevance_rule` during the forward pass (docs/attribute.md, "LRP").

The output's relevance is the target logit itself (one-hot times the logit), so the relevance at
the input sums to the logit less what the rules absorb: every layer's bias keeps its share (as
zennit does, biases are not propagated), epsilon absorbs `epsilon / (z + epsilon)` of each
neuron's share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.relu_rules import relevance_rule

try:
    import zennit  # noqa: F401  (only to say in one line that the extra is missing)
except ImportError:  # pragma: no cover - the message is what the tests see without zennit
    raise VizError("LRP needs zennit: pip install 'vizcnn[lrp]' (or pip install zennit)") from None

from zennit import composites as zc
from zennit import rules as zr
from zennit import types as zt
from zennit.canonizers import Canonizer, NamedMergeBatchNorm
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

# every rule leaves the biases out of a layer's contributions (zennit's `zero_params`): the
# relevance is shared among the layer's inputs alone, so it is conserved layer to layer instead
# of leaking into the biases, which BatchNorm merging makes large
_NO_BIAS = ["bias"]


def _epsilon_everywhere(epsilon: float, canonizers: list[Canonizer]) -> zc.LayerMapComposite:
    layer_map = zc.layer_map_base() + [
        (zt.Convolution, zr.Epsilon(epsilon=epsilon, zero_params=_NO_BIAS)),
        (torch.nn.Linear, zr.Epsilon(epsilon=epsilon, zero_params=_NO_BIAS)),
    ]
    return zc.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)


class _ExactMerge(NamedMergeBatchNorm):
    """zennit's merge, but the emptied BatchNorm is the identity exactly: zennit leaves it
    dividing by `sqrt(1 + eps)`, 2.5% off after fifty BatchNorms of eps 1e-3 (lite0)."""

    @staticmethod
    def merge_batch_norm(modules: list[nn.Module], batch_norm: nn.Module) -> None:
        NamedMergeBatchNorm.merge_batch_norm(modules, batch_norm)
        var = batch_norm.running_var
        assert isinstance(var, torch.Tensor)
        var.data = torch.full_like(var.data, 1.0) - float(batch_norm.eps)  # type: ignore[arg-type]


def _mergeable(norm: nn.Module) -> bool:
    """A BatchNorm with an affine part and running statistics (what a merge reads)."""
    keys = ("weight", "bias", "running_mean", "running_var")
    return all(isinstance(getattr(norm, key, None), torch.Tensor) for key in keys)


def _merged_pairs(module: nn.Module, z: torch.Tensor) -> tuple[list[Any], torch.Tensor]:
    """Every (convolution or linear, BatchNorm) pair where the BatchNorm reads the layer's output
    directly, found by one forward pass (named attributes are merged, not only `nn.Sequential`
    neighbours as zennit's `SequentialMergeBatchNorm` finds them), and that pass's logits."""
    names = {m: n for n, m in module.named_modules()}
    made: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> layer (outputs kept alive)
    pairs: dict[str, str] = {}

    def after_layer(layer: nn.Module, _: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            made[id(out)] = (names[layer], out)

    def before_norm(norm: nn.Module, inputs: tuple[Any, ...]) -> None:
        seen = made.get(id(inputs[0])) if inputs else None
        if seen is not None and seen[1] is inputs[0]:
            pairs.setdefault(names[norm], seen[0])

    handles = []
    for m in module.modules():
        if isinstance(m, (zt.Convolution, zt.Linear)):
            handles.append(m.register_forward_hook(after_layer))
        elif isinstance(m, zt.BatchNorm) and _mergeable(m):
            handles.append(m.register_forward_pre_hook(before_norm))
    try:
        with torch.no_grad():
            logits = module(z)
    finally:
        for handle in handles:
            handle.remove()
    return [((layer,), norm) for norm, layer in pairs.items()], logits


def _canonizers(module: nn.Module, pairs: list[Any]) -> list[Canonizer]:
    """BatchNorm merged into the layer before it; torchvision ResNets' residual sums."""
    from torchvision.models import ResNet

    found: list[Canonizer] = [_ExactMerge(pairs)]
    if isinstance(module, ResNet):
        found += [ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
    return found


def _composite(
    name: str,
    canonizers: list[Canonizer],
    epsilon: float,
    gamma: float,
    low: torch.Tensor,
    high: torch.Tensor,
) -> Any:
    makers: dict[str, Callable[[], Any]] = {
        "epsilon": lambda: _epsilon_everywhere(epsilon, canonizers),
        "epsilon-plus": lambda: zc.EpsilonPlus(
            epsilon=epsilon, zero_params=_NO_BIAS, canonizers=canonizers
        ),
        "epsilon-plus-flat": lambda: zc.EpsilonPlusFlat(
            epsilon=epsilon, zero_params=_NO_BIAS, canonizers=canonizers
        ),
        "gamma": lambda: zc.EpsilonGammaBox(
            low=low,
            high=high,
            epsilon=epsilon,
            gamma=gamma,
            zero_params=_NO_BIAS,
            canonizers=canonizers,
        ),
        "alpha-beta": lambda: zc.EpsilonAlpha2Beta1(
            epsilon=epsilon, zero_params=_NO_BIAS, canonizers=canonizers
        ),
        "alpha-beta-flat": lambda: zc.EpsilonAlpha2Beta1Flat(
            epsilon=epsilon, canonizers=canonizers
        ),
        "excitation-backprop": lambda: zc.ExcitationBackprop(
            zero_params=_NO_BIAS, canonizers=canonizers
        ),
    }
    if name not in makers:
        raise VizError(f"unknown LRP composite {name!r}; valid: {', '.join(makers)}")
    return makers[name]()


def _output_relevance(
    outputs: torch.Tensor,
    target: torch.Tensor,
    score: Callable[[torch.Tensor], torch.Tensor] | None,
) -> torch.Tensor:
    """The relevance the outputs start with: the target logit itself (one-hot times the
    logit), or for a score target each output's share of the score, `output * d score /
    d output` (exact for a weighted sum of outputs, as `SegmentationTarget` is)."""
    if score is None:
        picked = torch.zeros_like(outputs)
        rows = torch.arange(outputs.shape[0], device=outputs.device)
        picked[rows, target] = outputs.detach()[rows, target]
        return picked
    with torch.enable_grad():
        free = outputs.detach().requires_grad_(True)
        (slope,) = torch.autograd.grad(score(free).sum(), free)
    return free.detach() * slope


def lrp(
    module: nn.Module,
    z: torch.Tensor,
    target: torch.Tensor,
    composite: str,
    *,
    score: Callable[[torch.Tensor], torch.Tensor] | None = None,
    epsilon: float,
    gamma: float,
    low: torch.Tensor,
    high: torch.Tensor,
) -> torch.Tensor:
    """The relevance `(B, C, H, W)` of the model's input `z` for logit `target` `(B,)`.

    Args:
        module: the network, `(B, C, H, W)` normalized input to `(B, K)` logits; zennit's hooks
            and canonizers are on it only for the call and removed after it.
        z: the normalized input.
        composite: a name in `vizcnn.attribution.methods.LRP_COMPOSITES`.
        score: a score target `(outputs) -> (B,)` explained instead of the logit `target`.
        epsilon: the epsilon rule's stabilizer; gamma: the gamma rule's (`gamma` composite).
        low, high: the lowest and highest input values `(1, C, 1, 1)` (the z-box first layer).
    """
    pairs, plain = _merged_pairs(module, z)
    made = _composite(
        composite,
        _canonizers(module, pairs),
        epsilon,
        gamma,
        low.expand_as(z).clone(),
        high.expand_as(z).clone(),
    )
    leaf = z.detach().clone().requires_grad_(True)
    with made.context(module) as ruled:
        with relevance_rule(ruled):
            logits = ruled(leaf)
        if not isinstance(logits, torch.Tensor) or (score is None and logits.dim() != 2):
            raise VizError("LRP needs a model that returns (B, K) logits (or a score target)")
        # merging must not change the function (a layer output read by a BatchNorm and by
        # something else would): BatchNorm's eps stays, hence the tolerance
        scale = plain.abs().max().clamp(min=1.0)
        if not torch.allclose(logits.detach(), plain, rtol=0, atol=1e-2 * float(scale)):
            raise VizError(
                "LRP's BatchNorm merge changed the model's output (a layer's output is read by a "
                "BatchNorm and by another module); use another attribution method"
            )
        picked = _output_relevance(logits, target, score)
        (relevance,) = torch.autograd.grad(logits, leaf, picked)
    return relevance
