"""Batched evaluation of several networks on the same images: accuracy and agreement, as counts.

Every model sees each batch once, so the data is read once for all variants. Results are counts
(correct top-1, correct top-5, agreeing top-1, top-5 overlaps) and a KL sum, so per-rank results
under `torchrun` merge exactly by addition, never as averages of averages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from vizcnn.core.distributed import all_gather, current_shard
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.hooks import model_guard

UNLABELLED = -1  # label of an image without one (top-1/top-5 accuracy skip it)


@dataclass
class Scores:
    """Counts for one network over a data set (add two to merge shards)."""

    images: int = 0  # images seen
    labelled: int = 0  # of which carry a label
    top1: int = 0  # labelled images whose label is the top prediction
    top5: int = 0  # labelled images whose label is among the top five
    agree_top1: int = 0  # images whose top prediction equals the reference network's
    overlap_top5: int = 0  # sum over images of |top-5 ∩ reference top-5|
    kl_sum: float = 0.0  # sum over images of KL(reference || this), in nats
    confident: int = 0  # images where the reference's top class has probability >= 0.5
    agree_confident: int = 0  # of which this network's top-1 agrees with the reference's

    def __add__(self, other: Scores) -> Scores:
        return Scores(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @property
    def top1_accuracy(self) -> float | None:
        return self.top1 / self.labelled if self.labelled else None

    @property
    def top5_accuracy(self) -> float | None:
        return self.top5 / self.labelled if self.labelled else None

    @property
    def agreement(self) -> float | None:
        return self.agree_top1 / self.images if self.images else None

    @property
    def confident_agreement(self) -> float | None:
        """Top-1 agreement on the images the reference is confident about (p >= 0.5)."""
        return self.agree_confident / self.confident if self.confident else None

    @property
    def top5_overlap(self) -> float | None:
        """Mean fraction of the reference's top five that this network also ranks top five."""
        return self.overlap_top5 / (5 * self.images) if self.images else None

    @property
    def mean_kl(self) -> float | None:
        return self.kl_sum / self.images if self.images else None

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            **asdict(self),
            "top1_accuracy": self.top1_accuracy,
            "top5_accuracy": self.top5_accuracy,
            "agreement": self.agreement,
            "top5_overlap": self.top5_overlap,
            "confident_agreement": self.confident_agreement,
            "mean_kl": self.mean_kl,
        }


def batch_scores(
    logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None = None
) -> Scores:
    """Scores of one batch of logits `(B, K)` against labels `(B,)` (-1 = none) and, when
    given, a reference network's logits `(B, K)`."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    has = labels != UNLABELLED
    scores = Scores(images=int(logits.shape[0]), labelled=int(has.sum()))
    scores.top1 = int((top[:, 0] == labels)[has].sum())
    scores.top5 = int((top == labels[:, None]).any(1)[has].sum())
    if reference is not None:
        ref_top = reference.topk(k, dim=1).indices
        agree = top[:, 0] == ref_top[:, 0]
        scores.agree_top1 = int(agree.sum())
        scores.overlap_top5 = int((top[:, :, None] == ref_top[:, None, :]).any(2).sum())
        log_p = F.log_softmax(reference.double(), dim=1)
        log_q = F.log_softmax(logits.double(), dim=1)
        scores.kl_sum = float((log_p.exp() * (log_p - log_q)).sum())
        sure = log_p.max(dim=1).values >= math.log(0.5)
        scores.confident = int(sure.sum())
        scores.agree_confident = int(agree[sure].sum())
    return scores


def _stack(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([item[0] for item in items])
    labels = torch.tensor([int(item[1]) for item in items], dtype=torch.int64)
    return images, labels


EVAL_BATCH = 256  # images per forward pass where `RunOptions.batch` is None


def evaluate(
    models: Mapping[str, nn.Module],
    data: Dataset[tuple[torch.Tensor, int]],
    normalize: Callable[[torch.Tensor], torch.Tensor],
    *,
    reference: str | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> dict[str, Scores]:
    """Top-1/top-5 accuracy of each network and its agreement with `reference`, over `data`.

    Under `torchrun` each rank takes every world_size-th image and the counts are summed over
    ranks, so every rank returns the same, exact totals.

    Args:
        models: name -> network taking normalized `(B, C, H, W)` and returning logits `(B, K)`;
            each runs inside `model_guard` (eval mode, left as found).
        data: items `(image (C, H, W) in [0, 1], label)`, label -1 for none.
        normalize: maps `(B, C, H, W)` images to the networks' input space.
        reference: the name (in `models`) whose predictions the others are compared with.
        run: how it runs (`RunOptions`): `batch` images per forward pass (None:
            `EVAL_BATCH`), `workers` DataLoader processes; neither changes the scores.

    Example:
        >>> scores = evaluate({"net": net}, dataset, loaded.normalize)
        >>> scores["net"].top1_accuracy
    """
    run = as_run_options(run)
    shard = current_shard()
    indices = list(shard.indices(len(data)))  # type: ignore[arg-type]
    loader = DataLoader(
        Subset(data, indices),
        batch_size=run.batch_or(EVAL_BATCH),
        num_workers=run.workers,
        collate_fn=_stack,
    )
    totals = {name: Scores() for name in models}
    done = 0
    progress(0, len(indices), "evaluating")
    with ExitStack() as guards, torch.no_grad():
        for model in models.values():  # once for the pass, not per batch
            guards.enter_context(model_guard(model))
        for images, labels in loader:
            if done == 0:  # the first batch only: one reduction per pass
                warn_if_normalized(images, stacklevel=4)
            inputs = normalize(images.to(device))
            labels = labels.to(device)
            logits = {
                name: require_output_tensor(model(inputs), name).float()
                for name, model in models.items()
            }
            ref = logits[reference] if reference is not None else None
            for name in models:
                totals[name] = totals[name] + batch_scores(logits[name], labels, ref)
            done += len(labels)
            progress(done, len(indices), "evaluating")
    return _merge(totals) if shard.world_size > 1 else totals


def _merge(totals: dict[str, Scores]) -> dict[str, Scores]:
    names = list(totals)
    keys = [f.name for f in fields(Scores)]
    # float64 holds counts exactly up to 2**53
    local = torch.tensor(
        [[float(getattr(totals[n], k)) for k in keys] for n in names], dtype=torch.float64
    )
    summed = torch.stack(all_gather(local)).sum(0)
    merged = {}
    for row, name in zip(summed.tolist(), names, strict=True):
        values = dict(zip(keys, row, strict=True))
        merged[name] = Scores(
            **{k: (v if k == "kl_sum" else int(round(v))) for k, v in values.items()}  # type: ignore[arg-type]
        )
    return merged
