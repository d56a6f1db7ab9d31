"""The lesion study (Veit et al. 2016): remove one block at a time, no retraining, no labels needed.

A block whose input and output shapes agree (a residual block: `x + f(x)`) is replaced by the
identity, which equals zeroing its residual branch. A block that changes the shape (downsampling,
more channels) cannot be removed without an adapter that would need training: it is listed as
not removable. Each removable lesion is compared with the intact network on the same images:
top-1 agreement, top-5 overlap, mean KL divergence, and accuracy where the data has labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from vizcnn.ablation.evaluate import Scores, evaluate
from vizcnn.ablation.surgery import ablate, check_layers, record_io
from vizcnn.ablation.variants import Block, find_blocks
from vizcnn.core.errors import VizError
from vizcnn.core.guard import model_guard
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.hooks import Layer, layer_names
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight

INTACT = "intact"


def _composite(module: torch.nn.Module) -> bool:
    return any(True for _ in module.children())


def chained_blocks(loaded: LoadedModel) -> list[Block]:
    """Blocks found by running the network once: the children of a module that calls them one
    after another (each child's input is the previous child's output), all composite, outermost
    first — timm's RegNet stages (`s1.b1`, ...) and other stages that are not a `Sequential`.
    A module that concatenates its children's outputs (DenseNet's dense blocks) is no chain."""
    modules = dict(loaded.module.named_modules())
    groups = {
        name: [f"{name}.{child}" if name else child for child, _ in module.named_children()]
        for name, module in modules.items()
        if len(list(module.children())) >= 2 and all(map(_composite, module.children()))
    }
    if not groups:
        return []
    example = torch.zeros(1, loaded.channels, *loaded.input_size, device=loaded.device)
    names = [child for children in groups.values() for child in children]
    with model_guard(loaded.module), torch.no_grad(), record_io(loaded.module, names) as seen:
        loaded.module(loaded.normalize(example.to(loaded.dtype)))
    found: list[Block] = []
    taken: list[str] = []
    for name, children in groups.items():  # named_modules order: outer modules first
        if not name or any(name == t or name.startswith(t + ".") for t in taken):
            continue  # the network's own children (stem, stages, head) are its trunk
        ran = [child for child in children if child in seen.outputs]
        chain = len(ran) >= 2 and all(
            seen.inputs[after] is seen.outputs[before]
            for before, after in zip(ran, ran[1:], strict=False)
        )
        if not chain:
            continue
        taken += ran
        for child in ran:
            params = sum(p.numel() for p in modules[child].parameters())
            found.append(Block(child, len(found), name, params))
    return found


@dataclass
class Lesion:
    """One block of the study."""

    block: str  # dotted name
    depth: int  # position among the blocks, 0 = nearest the input
    params: int  # parameters of the block
    removable: bool  # input and output shapes agree: identity without retraining
    reason: str  # why not, when not removable
    scores: Scores | None = None  # against the intact network (None when not removable)


@dataclass
class LesionResult:
    intact: Scores  # the intact network (accuracy where labelled; agreement with itself = 1)
    lesions: list[Lesion]


def lesion_study(
    model: ModelLike,
    data: Dataset[tuple[torch.Tensor, int]],
    *,
    blocks: Sequence[Layer] | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> LesionResult:
    """Remove each block in turn and compare the network's predictions with the intact one's.

    Args:
        model: a `LoadedModel` or `nn.Module` returning logits; never modified.
        data: items `(image (C, H, W) in [0, 1], label)` (label -1 when unknown).
        blocks: block names or submodules (default: `find_blocks`, e.g. `_blocks.0` ...
            `_blocks.15`, else `chained_blocks`); results name them by dotted name.
        run: how it runs (`RunOptions`): `batch` images per forward pass (None: 32; every
            lesioned copy sees each batch), `workers` DataLoader processes.

    Example:
        >>> result = lesion_study(load_model("efficientnet_lite0"), UnlabelledData(samples))
        >>> [(l.block, l.scores.agreement) for l in result.lesions if l.removable]
    """
    loaded = as_loaded(model)
    preflight(loaded, output=True)
    if blocks is None:
        found = find_blocks(loaded.module) or chained_blocks(loaded)
        names = [b.name for b in found]
        params = {b.name: b.params for b in found}
    else:
        names = layer_names(loaded.module, blocks)
        check_layers(loaded.module, names)
        params = {
            n: sum(p.numel() for p in loaded.module.get_submodule(n).parameters()) for n in names
        }
    if not names:
        raise VizError(
            f"{loaded.name} has no blocks (composite modules that a Sequential, a ModuleList or "
            "a module calls one after another); name them with lesion_study(blocks=...), or "
            "remove layers with variants"
        )
    lesions: list[Lesion] = []
    networks = {INTACT: loaded.module}
    for depth, name in enumerate(names):
        cut = ablate(loaded, [name])
        removable = not cut.needs_training
        reason = "" if removable else f"changes the shape ({cut.changes[0].detail} needed)"
        lesions.append(Lesion(name, depth, params[name], removable, reason))
        if removable:
            networks[name] = cut.module.to(device)
    scores = evaluate(
        networks,
        data,
        loaded.normalize,
        reference=INTACT,
        device=device,
        progress=progress,
        run=RunOptions(batch=32) if run is None else run,
    )
    for lesion in lesions:
        lesion.scores = scores.get(lesion.block)
    return LesionResult(scores[INTACT], lesions)
