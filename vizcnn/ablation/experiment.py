"""The ablation experiment: validate every variant, retrain with equal budgets, evaluate all.

Rows: `original` (the model as given, untouched), `control` (an un-ablated copy with the same
retraining as the variants, when retraining) and one per variant. Changes are reported against
both, as Zeiler & Fergus's fairness argument asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from vizcnn.ablation.evaluate import Scores, evaluate
from vizcnn.ablation.surgery import Ablated, Change, ablate
from vizcnn.ablation.training import TrainConfig, check_retrain, train
from vizcnn.ablation.variants import CONTROL, ORIGINAL, Variant, check_names
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.models.preflight import preflight


@dataclass
class VariantResult:
    """One row of the results table."""

    name: str  # original, control or the variant's name
    description: str  # what it corresponds to
    removed: list[str]  # layers removed (or zeroed)
    changes: list[Change]  # what surgery did
    params: int  # parameters of the network evaluated
    params_removed: int  # original's parameters minus this network's
    params_new: int  # parameters freshly initialized (adapters, re-fitted layers)
    adapter: bool  # an adapter or re-fitted layer was needed
    trained: str  # none | head | all (what was retrained)
    scores: Scores = field(default_factory=Scores)
    final_loss: float | None = None  # mean loss over the last epoch's steps
    train_scores: Scores | None = None  # on the training data (Z&F's "train top-1" column)


@dataclass
class AblationResult:
    """Every row, with the training budget they shared."""

    rows: list[VariantResult]
    config: TrainConfig
    seed: int = 0  # adapters' initialization and the retraining (`run_ablation`'s seed)

    def row(self, name: str) -> VariantResult:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def change(self, name: str, against: str, metric: str = "top1_accuracy") -> float | None:
        """Accuracy difference (in fraction) of row `name` minus row `against`."""
        mine = getattr(self.row(name).scores, metric)
        base = (
            getattr(self.row(against).scores, metric)
            if any(r.name == against for r in self.rows)
            else None
        )
        return None if mine is None or base is None else mine - base


def plan(
    model: ModelLike,
    variants: Sequence[Variant],
    config: TrainConfig,
    *,
    seed: int = 0,
    example: torch.Tensor | None = None,
) -> dict[str, Ablated]:
    """Build every variant's copy (no training): a bad variant fails here, before any work.

    `seed` initializes the adapters and re-fitted layers (`ablate`); give `run_ablation` the same.
    """
    if not variants:
        raise VizError("no variants: give at least one Variant (parse_variant or parse_units)")
    check_names(variants)
    module = as_loaded(model).module
    variants = [variant.named(module) for variant in variants]
    planned: dict[str, Ablated] = {}
    for variant in variants:
        try:
            cut = ablate(
                model, variant.remove, units=dict(variant.units), example=example, seed=seed
            )
        except VizError as exc:
            raise VizError(f"variant {variant.name!r}: {exc}") from None
        check_retrain(config, variant.name, cut)
        planned[variant.name] = cut
    return planned


class TrainedRows(Protocol):
    """Where retrained rows are kept between runs, so an interrupted run resumes per row.

    `load` fills `module` (the row's copy, as `plan` cut it) with the weights a previous run
    trained under the same settings and returns that training's losses, or None when there are
    none; `save` keeps a row as soon as it is trained.
    """

    def load(self, name: str, module: nn.Module) -> list[float] | None: ...

    def save(self, name: str, module: nn.Module, losses: list[float]) -> None: ...


def run_ablation(
    model: ModelLike,
    variants: Sequence[Variant],
    test_data: Dataset[tuple[torch.Tensor, int]],
    config: TrainConfig,
    *,
    train_data: Dataset[tuple[torch.Tensor, int]] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    planned: dict[str, Ablated] | None = None,
    progress: Callable[[str], ProgressCallback] = lambda _: no_progress,
    run: RunOptions | None = None,
    trained: TrainedRows | None = None,
) -> AblationResult:
    """Retrain (per `config`) and evaluate the control and every variant on `test_data`.

    Args:
        model: the network as given; it is evaluated as `original` and never modified.
        variants: what to remove; see `Variant`.
        test_data: items `(image in [0, 1], label)` the table is measured on.
        config: the retraining budget every row (control included) gets.
        train_data: needed unless `config.retrain == "none"`.
        seed: adapters' and re-fitted layers' initialization, and each row's retraining (every
            row starts from this seed: equal budgets); recorded in the result.
        planned: `plan(...)`'s output when already computed (the CLI validates first).
        progress: phase name -> a progress callback for that phase (one bar each).
        run: how evaluation runs (`RunOptions`: `batch`, `workers`), as for `evaluate`.
        trained: keeps each retrained row and gives it back to a later run with the same
            settings (`ablate_folder` keeps them in its folder); None: every row is trained.

    Example:
        >>> result = run_ablation(load_model("lenet5_digits"), DIGITS_VARIANTS, digits("test"),
        ...                       TrainConfig(retrain="all", epochs=5), train_data=digits("train"))
    """
    loaded = as_loaded(model)
    preflight(loaded, output=True)
    variants = [variant.named(loaded.module) for variant in variants]
    if config.retrain != "none" and train_data is None:
        raise VizError(f"retrain={config.retrain!r} needs training data: pass train_data=")
    cuts = planned if planned is not None else plan(model, variants, config, seed=seed)
    by_name = {v.name: v for v in variants}
    rows: list[VariantResult] = []
    networks = {ORIGINAL: loaded.module}
    original = Ablated(loaded.module, [], _params(loaded.module), _params(loaded.module))
    rows.append(_row(ORIGINAL, "the model as given", [], original, "none"))
    if config.retrain != "none":
        cuts = {CONTROL: ablate(model, example=None, seed=seed), **cuts}
    for name, cut in cuts.items():
        losses: list[float] = []
        if config.retrain != "none" and train_data is not None:
            kept = trained.load(name, cut.module) if trained is not None else None
            if kept is not None:
                losses = kept
            else:
                losses = train(
                    cut,
                    train_data,
                    loaded.normalize,
                    config,
                    seed=seed,
                    device=device,
                    progress=progress(f"training {name}"),
                    message=f"training {name}",
                )
                if trained is not None:
                    trained.save(name, cut.module, losses)
        variant = by_name.get(name)
        description = variant.description if variant else "un-ablated, same retraining"
        removed = (
            [*map(str, variant.remove), *(f"{layer}:{c}" for layer, c in variant.units)]
            if variant
            else []
        )
        row = _row(name, description, removed, cut, config.retrain)
        if losses:
            per_epoch = max(1, len(losses) // max(config.epochs, 1))
            row.final_loss = sum(losses[-per_epoch:]) / per_epoch
        rows.append(row)
        networks[name] = cut.module.to(device)
    scores = evaluate(
        networks,
        test_data,
        loaded.normalize,
        reference=ORIGINAL,
        device=device,
        progress=progress("evaluating"),
        run=run,
    )
    for row in rows:
        row.scores = scores[row.name]
    if train_data is not None and config.retrain != "none":
        fitted = evaluate(
            networks,
            train_data,
            loaded.normalize,
            device=device,
            progress=progress("evaluating on the training data"),
            run=run,
        )
        for row in rows:
            row.train_scores = fitted[row.name]
    return AblationResult(rows, config, seed)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _row(
    name: str, description: str, removed: list[str], cut: Ablated, trained: str
) -> VariantResult:
    new = dict(cut.module.named_parameters())
    return VariantResult(
        name=name,
        description=description,
        removed=removed,
        changes=list(cut.changes),
        params=cut.params_after,
        params_removed=cut.params_removed,
        params_new=sum(new[n].numel() for n in cut.new_params),
        adapter=cut.adapter,
        trained=trained,
    )
