"""Retraining ablated copies with equal budgets: `none`, `head` (new layers + classifier) or `all`.

Zeiler & Fergus retrained every variant of Table 3 from scratch; a fair comparison gives every
variant, and an un-ablated control, the same optimizer, learning rate, batches and number of
steps. Everything random (initialization, batch order) comes from one generator, the `seed`
argument (an int or a `torch.Generator`, as every technique takes it), so the same seed gives
identical weights. Under `torchrun` the model is wrapped in
DistributedDataParallel and each rank takes its share of every batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vizcnn.ablation.surgery import Ablated, init_params
from vizcnn.core.adam import Adam
from vizcnn.core.devices import Seed, as_generator
from vizcnn.core.distributed import current_shard
from vizcnn.core.errors import VizError
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress

RETRAIN = ("none", "head", "all")


@dataclass(frozen=True)
class TrainConfig:
    """How every variant (and the control) is retrained."""

    retrain: str = "head"  # none | head (adapters, re-fitted layers, classifier) | all
    epochs: int = 3  # passes over the training data
    lr: float = 2e-3  # Adam learning rate
    batch_size: int = 64  # images per step (over all ranks)
    from_scratch: bool = False  # re-initialize every parameter first (retrain=all only), as Z&F

    def __post_init__(self) -> None:
        if self.retrain not in RETRAIN:
            raise VizError(
                f"unknown TrainConfig.retrain {self.retrain!r}; use one of {', '.join(RETRAIN)}"
            )
        if self.epochs < 1 and self.retrain != "none":
            raise VizError(f"TrainConfig.epochs must be at least 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise VizError(f"TrainConfig.lr must be a positive number, got {self.lr}")
        if self.batch_size < 1:
            raise VizError(f"TrainConfig.batch_size must be at least 1, got {self.batch_size}")
        if self.from_scratch and self.retrain != "all":
            raise VizError(
                "TrainConfig.from_scratch needs TrainConfig.retrain='all' (every layer must "
                "then be trained)"
            )


def check_retrain(config: TrainConfig, name: str, ablated: Ablated) -> None:
    """`retrain='none'` is refused for a variant whose adapters or re-fitted layers are untrained."""
    if config.retrain == "none" and ablated.needs_training:
        kinds = ", ".join(
            f"{c.layer} ({c.kind})" for c in ablated.changes if c.kind in ("adapter", "refit")
        )
        raise VizError(
            f"variant {name!r} needs training ({kinds}); use TrainConfig.retrain='head' or 'all', or "
            "remove layers whose input and output shapes agree"
        )


def trainable_names(ablated: Ablated, retrain: str) -> list[str]:
    """Parameter names (in the copy) that `retrain` updates."""
    names = [n for n, _ in ablated.module.named_parameters()]
    if retrain == "all":
        return names
    if retrain == "none":
        return []
    head = ablated.head
    chosen = set(ablated.new_params)
    if head is not None:
        chosen |= {n for n in names if n == head or n.startswith(head + ".")}
    return [n for n in names if n in chosen]


def train(
    ablated: Ablated,
    data: Dataset[tuple[torch.Tensor, int]],
    normalize: Callable[[torch.Tensor], torch.Tensor],
    config: TrainConfig,
    *,
    seed: Seed = 0,
    device: torch.device | str = "cpu",
    progress: ProgressCallback = no_progress,
    message: str = "training",
) -> list[float]:
    """Train `ablated.module` in place (it is our copy) and return the loss of every step.

    Args:
        ablated: from `ablate` (or `ablate(model)` with no removal: the control).
        data: items `(image (C, H, W) in [0, 1], label)`.
        normalize: maps `(B, C, H, W)` images to the network's input space.
        config: the budget, the same for every variant.
        seed: the re-initialization (`config.from_scratch`) and the batch order: an int seeds
            a CPU generator, a `torch.Generator` is drawn from (and advanced).

    Example:
        >>> losses = train(ablate(net, ["classifier.3"]), train_set, loaded.normalize,
        ...                TrainConfig(retrain="head", epochs=1))
    """
    if config.retrain == "none":
        return []
    module = ablated.module.to(device)
    generator = as_generator(seed)
    if config.from_scratch:
        init_params(module, generator)
    wanted = set(trainable_names(ablated, config.retrain))
    params = []
    for name, param in module.named_parameters():
        param.requires_grad_(name in wanted)
        if name in wanted:
            params.append(param)
    if not params:
        raise VizError("nothing to train: the network has no parameters in the chosen part")
    # head: the frozen body keeps eval-mode BatchNorm statistics and no dropout
    module.train(config.retrain == "all")
    shard = current_shard()
    step_model: nn.Module = module
    if shard.world_size > 1 and dist.is_initialized():
        step_model = nn.parallel.DistributedDataParallel(module)
    optimizer = Adam(params, lr=config.lr)
    n = len(data)  # type: ignore[arg-type]
    # Under torchrun every rank must take part in every step (DDP's backward is collective):
    # a last batch with fewer images than ranks is skipped, the same on every rank.
    starts = [
        s
        for s in range(0, n, config.batch_size)
        if min(config.batch_size, n - s) >= shard.world_size
    ]
    if not starts:
        raise VizError(
            f"{n} training images cannot be shared by {shard.world_size} processes; "
            "use more images or fewer processes"
        )
    total = config.epochs * len(starts)
    losses: list[float] = []
    progress(0, total, message)
    for _ in range(config.epochs):
        # one permutation per epoch, the same on every rank; each rank takes its slice of a batch
        order = torch.randperm(n, generator=generator)
        for start in starts:
            whole = order[start : start + config.batch_size]
            batch = whole[shard.rank :: shard.world_size]
            items = [data[int(i)] for i in batch]
            images = torch.stack([item[0] for item in items]).to(device)
            labels = torch.tensor([int(item[1]) for item in items], device=device)
            # DDP averages gradients over ranks: scaling each rank's sum by ranks / batch makes
            # that average the whole batch's mean loss, also when the ranks' shares differ
            logits = require_output_tensor(step_model(normalize(images)))
            summed = F.cross_entropy(logits, labels, reduction="sum")
            loss = summed * (shard.world_size / len(whole))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            progress(len(losses), total, message)
    module.eval()
    module.requires_grad_(False)
    return losses
