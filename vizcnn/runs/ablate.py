"""`ablate_folder` and `lesion_folder`: what `vizcnn ablate` writes, byte for byte but for
timestamps.

The folder holds `chart.png`, `results.md` and `results.json` (provenance and every row),
written atomically, the JSON last, under the folder's lock. Under `torchrun` every rank trains
and evaluates its share and only the main rank takes the lock and writes.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vizcnn.ablation.data import DIGITS, digits, open_labelled
from vizcnn.ablation.experiment import AblationResult, VariantResult, plan, run_ablation
from vizcnn.ablation.lesion import Lesion, LesionResult, lesion_study
from vizcnn.ablation.summary import (
    lesion_chart,
    lesion_dict,
    lesion_markdown,
    results_chart,
    results_dict,
    results_markdown,
)
from vizcnn.ablation.training import TrainConfig
from vizcnn.ablation.variants import CONTROL, DIGITS_VARIANTS, Variant
from vizcnn.core.distributed import current_shard
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.io.imaging import atomic_write, save_json, save_png
from vizcnn.io.paths import ensure_writable, safe_stem
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block, plan_results, write_result

__all__ = [
    "ABLATE_CROPS",
    "DIGITS_CONFIG",
    "AblationRun",
    "LesionRun",
    "ablate_folder",
    "experiment_config",
    "lesion_folder",
]

Labelled = Dataset[tuple[torch.Tensor, int]]
ABLATE_CROPS = 4  # data `samples`: random crops per bundled photo
# the built-in digits experiment (Zeiler & Fergus Table 3): every row trained from scratch
DIGITS_CONFIG = TrainConfig(retrain="all", epochs=15, from_scratch=True)
FILES = ("chart.png", "results.md", "results.json")
TRAINED = "trained"  # subfolder of the retrained rows (`_TrainedFolder`)


@dataclass
class AblationRun:
    """What `ablate_folder` measured (every rank) and wrote (the main rank)."""

    folder: Path
    result: AblationResult
    variants: list[Variant]
    seconds: float

    @property
    def baseline(self) -> VariantResult:
        """The row the variants are compared with: the control when retraining, else the
        original."""
        return self.result.rows[1] if self.result.config.retrain != "none" else self.result.rows[0]


@dataclass
class LesionRun:
    """What `lesion_folder` measured (every rank) and wrote (the main rank)."""

    folder: Path
    result: LesionResult
    seconds: float

    @property
    def worst(self) -> Lesion | None:
        """The removable block whose removal changes the predictions most (None: none
        removable)."""
        kept = [les for les in self.result.lesions if les.scores is not None]
        return min(kept, key=lambda les: les.scores.agreement or 0.0) if kept else None  # type: ignore[union-attr]


def experiment_config(
    builtin: bool,
    *,
    retrain: str | None = None,
    epochs: int | None = None,
    from_scratch: bool = False,
    **fields: Any,
) -> TrainConfig:
    """A `TrainConfig` whose unset `retrain`/`epochs` come from the built-in digits experiment
    (`DIGITS_CONFIG`, trained from scratch unless `retrain` is given) when `builtin`, else from
    `TrainConfig`; `fields` are the other fields (lr, batch_size).

    Example:
        >>> experiment_config(True, epochs=1)  # the built-in experiment, one epoch
    """
    base = DIGITS_CONFIG if builtin else TrainConfig()
    return TrainConfig(
        retrain=retrain or base.retrain,
        epochs=epochs if epochs is not None else base.epochs,
        from_scratch=from_scratch or (base.from_scratch and retrain is None),
        **fields,
    )


def _name(data: str | Path | Labelled) -> str:
    return str(data) if isinstance(data, (str, Path)) else type(data).__name__


def _data(
    loaded: LoadedModel, data: str | Path | Labelled, crops: int, seed: int
) -> tuple[Labelled, str]:
    if isinstance(data, (str, Path)):
        found = open_labelled(
            data,
            loaded.channels,
            loaded.input_size,
            crops_per_image=crops,
            seed=seed,
            resize_crop=loaded.resize_crop,
        )
        return found, str(data)
    return data, _name(data)


def _main_rank_lock(folder: Path) -> AbstractContextManager[object]:
    """The folder's lock for the whole run on the main rank (the one that writes); the other
    ranks of a torchrun job follow it."""
    return folder_lock(folder) if current_shard().is_main else nullcontext()


def _check_results(folder: Path, block: dict[str, Any], overwrite: bool) -> None:
    """Refuse now, not after hours of training, a folder whose results were made with other
    settings, unless `overwrite` (main rank; the others follow it). Results with these settings
    are simply made again (the retrained rows are kept, `_TrainedFolder`)."""
    if current_shard().is_main:
        # results.md is plain Markdown: the chart and the JSON carry the provenance
        described = [folder / name for name in FILES if not name.endswith(".md")]
        plan_results([(described, block)], overwrite=overwrite)


class _TrainedFolder:
    """Each retrained row of `ablate_folder`, kept in `FOLDER/trained/` as it finishes: the
    weights (`NAME.pt`, a state dict) and then `NAME.json` (its provenance and losses), so a run
    stopped after some rows resumes with the next one. A row is reused only when it was trained
    with the same model, variant, budget, seed and training data (the run store's rule)."""

    def __init__(self, folder: Path, blocks: dict[str, dict[str, Any]], overwrite: bool) -> None:
        self.folder = folder / TRAINED
        # as they read back from JSON (tuples become lists), so equal settings compare equal
        self.blocks = json.loads(json.dumps(blocks, default=str))
        names = list(blocks)
        plan = plan_results(
            [([self._meta(name)], self.blocks[name]) for name in names], overwrite=overwrite
        )
        self.done = {names[position] for position in plan.done}

    def _meta(self, name: str) -> Path:
        return self.folder / f"{safe_stem(name, 'row')}.json"

    def load(self, name: str, module: nn.Module) -> list[float] | None:
        if name not in self.done:
            return None
        meta = json.loads(self._meta(name).read_text(encoding="utf-8"))
        state = torch.load(self._meta(name).with_suffix(".pt"), weights_only=True)
        module.load_state_dict(state)
        return [float(loss) for loss in meta["losses"]]

    def save(self, name: str, module: nn.Module, losses: list[float]) -> None:
        if not current_shard().is_main:
            return
        state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        meta = {"provenance": self.blocks[name], "losses": losses}
        write_result(
            self.folder,
            {f"{safe_stem(name, 'row')}.pt": buffer.getvalue()},
            meta,
            meta_name=self._meta(name).name,
        )


def _write(
    folder: Path, block: dict[str, Any], result: dict[str, Any], table: str, chart: Any
) -> None:
    """The three files, the JSON last; only the main rank writes (holding the folder's lock)."""
    if not current_shard().is_main:
        return
    save_png(chart, folder / "chart.png", {"provenance": block})
    atomic_write(folder / "results.md", lambda file: file.write(table.encode()))
    save_json({**result, "provenance": block}, folder / "results.json")


def ablate_folder(
    model: ModelLike,
    data: str | Path | Labelled,
    folder: str | Path,
    variants: Sequence[Variant] | None = None,
    config: TrainConfig | None = None,
    *,
    train_data: str | Path | Labelled | None = None,
    crops: int = ABLATE_CROPS,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
    overwrite: bool = False,
) -> AblationRun:
    """Remove layers (or zero channels) on copies of `model`, retrain them with equal budgets,
    evaluate every row on `data`, and write the table, chart and JSON to `folder`.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`; never modified.
        data: `digits` (the test split of lenet5_digits), an ImageFolder, `samples` or a flat
            image folder (unlabelled: agreement only), or a dataset of `(image, label)`.
        folder: output folder (created if missing).
        variants: what to remove (`parse_variant`, `parse_units`); None: the built-in digits
            experiment (`DIGITS_VARIANTS`, for `data="digits"` and lenet5_digits only).
        config: the retraining budget every row gets (None: `DIGITS_CONFIG` for the built-in
            experiment, else `TrainConfig()`).
        train_data: what to retrain on (an ImageFolder or a dataset); None with
            `data="digits"`: the digits training split.
        crops: random crops per photo of `samples`.
        seed: those crops, the adapters' initialization and the retraining (an int: it is
            recorded in the provenance and the results).
        progress: one callback for every phase (training each row, evaluating).
        overwrite: replace the results of an earlier run in `folder` (refused otherwise, before
            any training).
        run: how it runs (`RunOptions`): `batch` images per evaluation pass (None: the
            training batch, at least 256), `workers` DataLoader processes; training's batch
            is `config.batch_size` (it changes the result).

    Example:
        >>> run = ablate_folder(load_model("lenet5_digits"), "digits", "ablate/",
        ...                     [parse_variant("no-fc2=classifier.3,classifier.4")],
        ...                     TrainConfig(retrain="head", epochs=2))
    """
    started = time.perf_counter()
    target = ensure_writable(folder, "folder", flag="folder")
    loaded = as_loaded(model)
    preflight(loaded, output=True)
    builtin = variants is None
    if builtin and not (str(data) == DIGITS and loaded.name == "lenet5_digits"):
        raise VizError(
            "give variants (the built-in variant set is for data='digits' with lenet5_digits)"
        )
    chosen = list(DIGITS_VARIANTS if variants is None else variants)
    config = config or (DIGITS_CONFIG if builtin else TrainConfig())
    test_set, data_name = _data(loaded, data, crops, seed)
    train_set: Labelled | None = None
    if config.retrain != "none":
        if train_data is not None:
            train_set, _ = _data(loaded, train_data, crops, seed)
        elif str(data) == DIGITS:
            train_set = digits("train")
        else:
            raise VizError(
                f"retrain={config.retrain!r} needs train_data (an ImageFolder of labelled images)"
            )
    how = as_run_options(run)
    planned = plan(loaded, chosen, config, seed=seed)  # every variant checked before training
    train_name = train_data if train_data is None else _name(train_data)
    options = {
        **vars(config),
        "seed": seed,  # with the budget, as before the seed left TrainConfig
        "variants": [vars(v) for v in chosen],
        "train_data": train_name,
    }
    block = model_block("ablate", loaded, options, data=data_name, seed=seed)
    with _main_rank_lock(target):
        _check_results(target, block, overwrite)
        trained = None
        if config.retrain != "none":
            # a row's settings: the budget, the seed, the training data and what it removes
            rows = {CONTROL: None, **{v.named(loaded.module).name: v for v in chosen}}
            row_blocks = {
                name: {
                    **block,
                    "technique": "ablate-row",
                    "data": str(train_name or DIGITS),
                    "options": {
                        **vars(config),
                        "variant": vars(variant) if variant is not None else CONTROL,
                        "train_data": train_name,
                        "crops": crops,
                    },
                }
                for name, variant in rows.items()
            }
            trained = _TrainedFolder(target, row_blocks, overwrite)
        result = run_ablation(
            loaded,
            chosen,
            test_set,
            config,
            train_data=train_set,
            seed=seed,
            device=loaded.device,
            planned=planned,
            progress=lambda _: progress,
            run=replace(how, batch=how.batch_or(max(config.batch_size, 256))),
            trained=trained,
        )
        seconds = time.perf_counter() - started
        block = {**block, "seconds": round(seconds, 3)}
        _write(target, block, results_dict(result), results_markdown(result), results_chart(result))
    return AblationRun(target, result, chosen, seconds)


def lesion_folder(
    model: ModelLike,
    data: str | Path | Labelled,
    folder: str | Path,
    *,
    crops: int = ABLATE_CROPS,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
    overwrite: bool = False,
) -> LesionRun:
    """The lesion study (Veit et al.): remove each block alone, no retraining, compare the
    predictions with the intact network's; write the table, chart and JSON to `folder`.

    Args:
        model: a `LoadedModel` or a bare `nn.Module` returning logits; never modified.
        data: as `ablate_folder`'s (labels optional).
        folder: output folder (created if missing).
        crops: random crops per photo of `samples`.
        seed: those crops.
        progress: called after each batch.
        overwrite: replace the results of an earlier run in `folder` (refused otherwise).
        run: how it runs (`RunOptions`): `batch` images per forward pass (None:
            `TrainConfig.batch_size`, recorded), `workers` DataLoader processes.

    Example:
        >>> run = lesion_folder(load_model("efficientnet_lite0"), "samples", "lesion/")
    """
    started = time.perf_counter()
    target = ensure_writable(folder, "folder", flag="folder")
    loaded = as_loaded(model)
    preflight(loaded, output=True)
    test_set, data_name = _data(loaded, data, crops, seed)
    how = as_run_options(run)
    batch_size = how.batch_or(TrainConfig.batch_size)
    options = {"blocks": True, "batch": batch_size, "crops": crops}
    block = model_block("ablate", loaded, options, data=data_name, seed=seed)
    with _main_rank_lock(target):
        _check_results(target, block, overwrite)
        result = lesion_study(
            loaded,
            test_set,
            device=loaded.device,
            progress=progress,
            run=replace(how, batch=batch_size),
        )
        seconds = time.perf_counter() - started
        block = {**block, "seconds": round(seconds, 3)}
        _write(target, block, lesion_dict(result), lesion_markdown(result), lesion_chart(result))
    return LesionRun(target, result, seconds)
