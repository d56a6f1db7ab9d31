"""The regularizer of feature accentuation: which layer holds, how far it moved, how strongly.

`accentuate` keeps the activations of an earlier layer close to the photograph's own. Here:
the default layer (`default_reg_layer`, an early stage output before the unit) and the check
that a given one runs before the unit; the paired crops (`transform_pair`: the same boxes and
noise for the optimized image and the photograph, so the distance compares like with like);
the distance (`layer_distance`, relative L2 or the chord between unit vectors); and the
balance of the two pulls (`balanced_backward`, faccent's balanced alpha).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vizcnn.core.errors import VizError
from vizcnn.hooks import capture, model_guard
from vizcnn.io.imaging import resize
from vizcnn.models.base import LoadedModel
from vizcnn.optvis.objectives import LOGITS
from vizcnn.optvis.param import ImagePhaseParam
from vizcnn.optvis.transforms import Noise, Transform, apply_draw, draw, sampling_grid

DISTANCES = ("l2", "cosine")
# the regularized layer by default: the last stage output at this stride or finer that runs
# before the unit (lite0: _blocks.2, ResNets: layer1), edges and textures at 56 x 56
REG_LAYER_REDUCTION = 4


def _forward_order(loaded: LoadedModel, layers: Sequence[str], size: tuple[int, int]) -> list[str]:
    """`layers` in the order their outputs appear in one forward pass (one probe pass)."""
    probe = torch.full((1, loaded.channels, *size), 0.5, device=loaded.device, dtype=loaded.dtype)
    with (
        model_guard(loaded.module),
        torch.no_grad(),
        capture(loaded.module, list(layers), stop_early=True, detach=True) as acts,
    ):
        acts.run(loaded.normalize(probe))
    return list(acts.outputs)


def default_reg_layer(loaded: LoadedModel, unit_layers: Sequence[str]) -> str:
    """The regularized layer used when none is given: an early stage output before the unit.

    The last stage output (`vizcnn.models.structure.stages`) with a stride of at most
    `REG_LAYER_REDUCTION` that runs before every layer the unit reads (lite0: `_blocks.2`,
    ResNets: `layer1`); if none runs that early, the first stage output before the unit.
    """
    from vizcnn.models.structure import stages

    inner = [layer for layer in unit_layers if layer != LOGITS]
    found = stages(loaded)
    names = [stage.name for stage in found]
    fine = {stage.name for stage in found if stage.reduction <= REG_LAYER_REDUCTION}
    if not names:
        raise VizError(f"cannot find the stages of {loaded.name}; give reg_layer")
    order = _forward_order(loaded, sorted(set(names) | set(inner)), loaded.input_size)
    first_unit = min((order.index(layer) for layer in inner), default=len(order))
    before = [name for name in order[:first_unit] if name in names and name not in inner]
    if not before:
        raise VizError(
            f"no stage output of {loaded.name} runs before the unit's layer "
            f"{', '.join(inner)}; give reg_layer an earlier layer"
        )
    early = [name for name in before if name in fine]
    return early[-1] if early else before[0]


def check_reg_layer(loaded: LoadedModel, reg_layer: str, unit_layers: Sequence[str]) -> None:
    """Refuse, in one line, a regularized layer that does not run before every unit layer."""
    inner = [layer for layer in unit_layers if layer != LOGITS]
    if not inner:
        return
    order = _forward_order(loaded, sorted({reg_layer, *inner}), loaded.input_size)
    late = [layer for layer in inner if order.index(layer) <= order.index(reg_layer)]
    if late:
        raise VizError(
            f"reg layer {reg_layer!r} does not run before the unit's layer {late[0]!r}; "
            "the regularized layer must be an earlier one (default: an early stage output)"
        )


def transform_pair(
    images: torch.Tensor,
    photos: torch.Tensor,
    transforms: Sequence[Transform],
    out_size: tuple[int, int],
    generator: torch.Generator | None,
    then: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`apply_transforms` of `images`, and the same draw (boxes and noise) applied to `photos`.

    The first result equals `apply_transforms(images, transforms, out_size, generator, then)`
    with the same generator state, bit for bit: the draws are taken in the same order.
    `photos` may have fewer rows than `images`: photo row i takes image row i's draw.
    """
    paired = photos.shape[0]
    if paired > images.shape[0]:
        raise VizError(f"{paired} photographs for {images.shape[0]} images; give at most one each")
    geometric = [t for t in transforms if not isinstance(t, Noise)]
    if not geometric:
        out = resize(images, out_size)
        target = resize(photos, out_size)
        if then is not None:
            out, target = then(out), then(target)
    else:
        drawn = draw(geometric, images.shape[0], (images.shape[-2], images.shape[-1]), generator)
        grid = sampling_grid(drawn, images, out_size)  # one grid for both: same boxes
        out = apply_draw(images, drawn, out_size, then, grid=grid)
        target = apply_draw(photos, drawn, out_size, then, grid=grid[:paired])
    for step in transforms:
        if isinstance(step, Noise) and not step.sd >= 0:
            raise VizError(f"noise sd must be >= 0, got {step.sd}")
        if isinstance(step, Noise) and step.sd > 0:
            device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn(out.shape, generator=generator, device=device, dtype=torch.float32)
            noise = (step.sd * noise).to(device=out.device, dtype=out.dtype)
            out, target = out + noise, target + noise[:paired]
    return out, target


def layer_distance(acts: torch.Tensor, target: torch.Tensor, distance: str) -> torch.Tensor:
    """Per-image relative distance `(B,)` between activations `(B, C, ...)` and a target.

    `l2`: mean over positions of ||a - t|| over channels, divided by the mean ||t||;
    `cosine`: mean over positions of ||a/|a| - t/|t||| (in [0, 2]).
    """
    acts, target = acts.float(), target.float().detach()
    if acts.dim() < 2:
        raise VizError(f"the regularized layer's output has shape {tuple(acts.shape)}, no channels")
    if distance == "cosine":
        acts, target = F.normalize(acts, dim=1, eps=1e-8), F.normalize(target, dim=1, eps=1e-8)
        scale = torch.ones(acts.shape[0], device=acts.device)
    else:
        scale = _position_mean(torch.linalg.vector_norm(target, dim=1)).clamp_min(1e-8)
    return _position_mean(torch.linalg.vector_norm(acts - target, dim=1)) / scale


def _position_mean(values: torch.Tensor) -> torch.Tensor:
    """`(B, ...)` per-position values to their `(B,)` mean (a `(B,)` vector layer: as is)."""
    return values.flatten(1).mean(1) if values.dim() > 1 else values


def balanced_backward(
    param: ImagePhaseParam, unit_loss: torch.Tensor, gaps: torch.Tensor, reg_weight: float
) -> torch.Tensor:
    """Backward of `unit_loss + reg_weight * sum(balance * gaps)` with each image's balance set
    so that both terms' gradients on its phases have the same L1 norm (faccent's balanced
    alpha); returns the balance `(B,)`."""
    (unit_grad,) = torch.autograd.grad(unit_loss, param.values, retain_graph=True)
    (reg_grad,) = torch.autograd.grad(gaps.sum(), param.values, allow_unused=True)
    if reg_grad is None:
        reg_grad = torch.zeros_like(unit_grad)
    pull = reg_grad.abs().flatten(1).sum(1)
    push = unit_grad.abs().flatten(1).sum(1)
    # an image whose regularizer has no gradient yet (no change at the reg layer) keeps a
    # balance of 1 rather than an infinite one
    balance = torch.where(pull > 0, push / pull.clamp_min(1e-30), torch.ones_like(push))
    param.values.grad = (
        unit_grad + reg_weight * balance.view(-1, *[1] * (unit_grad.dim() - 1)) * reg_grad
    )
    return balance.detach()
