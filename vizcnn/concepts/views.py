"""What a concept looks like and what it does: coefficients and heatmaps on images, removal
importance, top patches, direction renders. Each takes the model and a `Concepts`
(`find_concepts`) and works on its own.

**Removal importance** (CRAFT's removal view, not its Sobol indices): for concept i, the layer's
activations `A` of an image are replaced by `A - U_i W_i` (U_i the image's coefficients of the
concept at every position, by non-negative least squares against the fixed directions) and the
rest of the network runs on; the importance is how much the target logit falls, averaged over
the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from vizcnn.concepts.discovery import DEFAULT_BATCH, Concepts
from vizcnn.concepts.nmf import nnls
from vizcnn.concepts.sources import ConceptData, open_concept_data
from vizcnn.core.devices import Seed
from vizcnn.core.errors import VizError
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import SAMPLE_CROPS, ImageSource, collate
from vizcnn.hooks import capture, model_guard, replace_output
from vizcnn.io.display import MAX_TILES, ContactSheet
from vizcnn.io.imaging import labeled_sheet
from vizcnn.mining.patches import DEFAULT_THUMBNAIL, cut_box, thumbnail
from vizcnn.mining.reservoir import PositionSample
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.objectives import direction
from vizcnn.optvis.rendering import RenderResult, render
from vizcnn.receptive.field import Field
from vizcnn.receptive.measured import receptive_fields

__all__ = [
    "DEFAULT_RENDER_STEPS",
    "ConceptPatch",
    "ConceptPatches",
    "concept_coefficients",
    "concept_heatmaps",
    "concept_importance",
    "concept_patches",
    "concept_renders",
    "logits_without_concepts",
    "sampled_concept_patches",
]

DEFAULT_RENDER_STEPS = 256  # direction renders: lucid's fft recipe converges well by then


def _check_images(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != loaded.channels or images.shape[0] == 0:
        raise VizError(
            f"images must be (B, {loaded.channels}, H, W) in [0, 1] with B >= 1, got shape "
            f"{tuple(images.shape)}"
        )
    return images


def _layer_acts(loaded: LoadedModel, concepts: Concepts, images: torch.Tensor) -> torch.Tensor:
    """`(B, C, h, w)` activations of the concepts' layer (float32, no graph)."""
    with (
        model_guard(loaded.module),
        torch.no_grad(),
        capture(loaded.module, [concepts.layer], stop_early=True, detach=True) as acts,
    ):
        acts.run(loaded.normalize(images.to(loaded.device, loaded.dtype)))
        found = acts[concepts.layer].float()
    if found.dim() != 4 or found.shape[1] != concepts.channels:
        raise VizError(
            f"layer {concepts.layer!r} gives shape {tuple(found.shape)}; the concepts have "
            f"{concepts.channels} channels: were they found on this model?"
        )
    return found


def _coefficients_of(acts: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """NNLS coefficients `(B, k, h, w)` of activations `(B, C, h, w)` against W `(k, C)`."""
    batch, channels, height, width = acts.shape
    rows = acts.permute(0, 2, 3, 1).reshape(-1, channels)
    U = nnls(rows, W.to(rows))
    return U.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()


def concept_coefficients(
    model: ModelLike, concepts: Concepts, images: torch.Tensor, *, run: RunOptions | None = None
) -> torch.Tensor:
    """Each image's coefficients of each concept at every position of the layer's map.

    Non-negative least squares of every position's activation vector against the fixed
    directions `concepts.W` (`vizcnn.concepts.nmf.nnls`).

    Args:
        images: `(B, C, H, W)` in [0, 1] at the model's input size.
        run: `RunOptions` (`batch` images per forward, None: `DEFAULT_BATCH`).

    Returns:
        `(B, k, h, w)` float32, >= 0, on the model's device.

    Example:
        >>> U = concept_coefficients(loaded, concepts, images)  # (B, k, 14, 14)
    """
    loaded = as_loaded(model)
    images = _check_images(loaded, images)
    step = as_run_options(run).batch_or(DEFAULT_BATCH)
    parts = [
        _coefficients_of(_layer_acts(loaded, concepts, images[s : s + step]), concepts.W)
        for s in range(0, images.shape[0], step)
    ]
    return torch.cat(parts)


def concept_heatmaps(
    model: ModelLike, concepts: Concepts, images: torch.Tensor, *, run: RunOptions | None = None
) -> torch.Tensor:
    """The coefficients (`concept_coefficients`) upsampled bilinearly to the images' size.

    Returns:
        `(B, k, H, W)` float32 >= 0, in coefficient units (divide by a concept's largest
        coefficient, e.g. `concepts.coefficients.max(0).values`, to compare images).

    Example:
        >>> maps = concept_heatmaps(loaded, concepts, images)  # (B, k, 224, 224)
    """
    coefficients = concept_coefficients(model, concepts, images, run=run)
    upsampled = F.interpolate(
        coefficients, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False
    )
    return upsampled.clamp_min(0)


def _target_index(loaded: LoadedModel, target: str | int | None) -> int | None:
    return None if target is None else loaded.class_index(target)


def logits_without_concepts(
    model: ModelLike,
    concepts: Concepts,
    images: torch.Tensor,
    removed: Sequence[int],
    *,
    coefficients: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's logits `(B, classes)` with concepts `removed` taken out of the layer:
    its activations `A` replaced by `A - sum_i U_i W_i` over `i in removed`.

    Args:
        images: `(B, C, H, W)` in [0, 1].
        removed: concept indices (empty: the plain logits).
        coefficients: `(B, k, h, w)` from `concept_coefficients` (computed when None).
    """
    loaded = as_loaded(model)
    images = _check_images(loaded, images)
    if any(not 0 <= i < concepts.k for i in removed):
        raise VizError(f"concept indices must lie in 0..{concepts.k - 1}, got {list(removed)}")
    if coefficients is None:
        coefficients = concept_coefficients(loaded, concepts, images)
    chosen = torch.tensor(sorted(set(removed)), dtype=torch.long, device=coefficients.device)
    W = concepts.W.to(coefficients)
    part = torch.einsum("bkhw,kc->bchw", coefficients[:, chosen], W[chosen])

    def remove(acts: torch.Tensor) -> torch.Tensor:
        return acts - part.to(acts)

    inputs = loaded.normalize(images.to(loaded.device, loaded.dtype))
    with model_guard(loaded.module), torch.no_grad():
        if len(chosen):
            with replace_output(loaded.module, concepts.layer, remove):
                output = loaded.module(inputs)
        else:
            output = loaded.module(inputs)
    return require_output_tensor(output).float()


def concept_importance(
    model: ModelLike,
    concepts: Concepts,
    images: torch.Tensor,
    target: str | int | None = None,
    *,
    run: RunOptions | None = None,
    per_image: bool = False,
) -> torch.Tensor:
    """Removal importance of each concept: how much the target logit falls when the concept is
    removed from the layer's activations (`A -> A - U_i W_i`), averaged over the images.

    Args:
        images: `(B, C, H, W)` in [0, 1].
        target: class name or logit index; None: each image's own top-1 class (on the
            unmodified network).
        run: `RunOptions` (`batch` images per forward, None: `DEFAULT_BATCH`).
        per_image: return `(B, k)` instead of the mean `(k,)`.

    Returns:
        `(k,)` (or `(B, k)`) float32 on the CPU: positive = the concept supports the class.

    Example:
        >>> concept_importance(loaded, concepts, images, "espresso").argmax()
    """
    loaded = as_loaded(model)
    images = _check_images(loaded, images)
    index = _target_index(loaded, target)
    step = as_run_options(run).batch_or(DEFAULT_BATCH)
    drops = []
    for start in range(0, images.shape[0], step):
        chunk = images[start : start + step]
        coefficients = concept_coefficients(loaded, concepts, chunk)
        base = logits_without_concepts(loaded, concepts, chunk, [], coefficients=coefficients)
        if index is not None and not 0 <= index < base.shape[1]:
            raise VizError(f"class {index} out of range; the model has 0..{base.shape[1] - 1}")
        rows = torch.arange(base.shape[0], device=base.device)
        column = base.argmax(dim=1) if index is None else torch.full_like(rows, index)
        chunk_drops = []
        for concept in range(concepts.k):
            edited = logits_without_concepts(
                loaded, concepts, chunk, [concept], coefficients=coefficients
            )
            chunk_drops.append(base[rows, column] - edited[rows, column])
        drops.append(torch.stack(chunk_drops, dim=1).cpu())
    result = torch.cat(drops)
    return result if per_image else result.mean(0)


@dataclass
class ConceptPatch:
    """One of a concept's top positions: where, how strongly, and its tile."""

    concept: int
    rank: int  # 0 = best
    value: float  # the coefficient
    image_id: int
    image: str
    position: tuple[int, int]  # (y, x) in the layer's map
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in the model input, exclusive
    patch: torch.Tensor  # (C, h, w) in [0, 1]


@dataclass
class ConceptPatches(ContactSheet):
    """Each concept's top patches (one per image at most), best first.

    In a notebook it shows itself as a contact sheet: a row per concept (the first
    `MAX_TILES` patches), each tile labelled with its concept and coefficient.
    """

    layer: str
    field: Field
    patches: dict[int, list[ConceptPatch]] = dataclass_field(default_factory=dict)

    def contact_sheet(self) -> Image.Image:
        """A row per concept, its patches best first, labelled `k<concept> <coefficient>`."""
        found = [self.patches[c] for c in sorted(self.patches) if self.patches[c]]
        if not found:
            raise VizError("no concept has a patch to show")
        columns = max(len(row) for row in found)
        tiles: list[torch.Tensor] = []
        labels: list[str] = []
        for row in found:
            for place in range(columns):
                if len(tiles) >= MAX_TILES:
                    break
                if place < len(row):
                    tiles.append(row[place].patch)
                    labels.append(f"k{row[place].concept} {row[place].value:.3g}")
                else:  # a short row: a blank tile keeps the next concept on its own row
                    tiles.append(torch.ones_like(row[0].patch))
                    labels.append("")
        size = max(t.shape[-1] for t in tiles), max(t.shape[-2] for t in tiles)
        tiles = [_padded(t, size) for t in tiles]
        return labeled_sheet(tiles, labels, columns=columns)


def _padded(tile: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`tile` on a white canvas of `size` (width, height), top-left, so a sheet's tiles align."""
    width, height = size
    if tile.shape[-1] == width and tile.shape[-2] == height:
        return tile
    canvas = torch.ones(tile.shape[0], height, width, dtype=tile.dtype)
    canvas[:, : tile.shape[-2], : tile.shape[-1]] = tile
    return canvas


def _box(found: Field, y: int, x: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    if found.method == "global":  # every unit sees the whole image
        return 0, 0, size[0], size[1]
    return found.box(y, x)


def concept_patches(
    model: ModelLike,
    concepts: Concepts,
    data: ConceptData,
    n: int = 9,
    *,
    thumbnail_size: int = DEFAULT_THUMBNAIL,
    run: RunOptions | None = None,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
    crops: int = SAMPLE_CROPS,
    seed: int = 0,
) -> ConceptPatches:
    """The `n` positions of `data` with the highest coefficient of each concept (each image at
    most once per concept), cut under the layer's receptive field as mining does.

    One streaming pass: every position's coefficients (NNLS against `concepts.W`), a running
    top-n per concept; then the winning images are read again to cut their boxes.

    Args:
        data: as `find_concepts` takes it (images, `ImageSource`, folder, `samples`).
        n: patches per concept.
        thumbnail_size: longest side of each tile, in pixels.
        run: `RunOptions` (`batch`, `workers`).
        progress: called after each batch with (images done, images, message).
        limit, crops, seed: for a folder / `samples`.

    Example:
        >>> found = concept_patches(loaded, concepts, "samples", limit=64)
        >>> found.patches[0][0].patch.shape
    """
    progress = progress or no_progress
    loaded = as_loaded(model)
    _check_patch_options(n, thumbnail_size)
    run = as_run_options(run)
    source, _name = open_concept_data(loaded, data, limit=limit, crops=crops, seed=seed)
    found = _field(loaded, concepts.layer)
    k = concepts.k
    best_values = torch.full((k, 0), -1.0)
    best_where = torch.zeros((k, 0, 3), dtype=torch.long)  # (image id, y, x)
    loader: DataLoader[Any] = DataLoader(
        source, batch_size=run.batch_or(DEFAULT_BATCH), num_workers=run.workers, collate_fn=collate
    )
    done, total = 0, len(source)
    for batch in loader:
        readable = torch.tensor([not error for error in batch.errors], dtype=torch.bool)
        done += len(batch.indices)
        if bool(readable.any()):
            U = concept_coefficients(loaded, concepts, batch.images[readable]).cpu()
            b, _, height, width = U.shape
            flat = U.flatten(2)  # (b, k, h*w)
            values, spot = flat.max(dim=2)  # each image's best position per concept
            ids = batch.indices[readable]
            where = torch.stack(
                [ids[:, None].expand(b, k), spot // width, spot % width], dim=2
            ).transpose(0, 1)  # (k, b, 3)
            values = torch.cat([best_values, values.T], dim=1)
            where = torch.cat([best_where, where], dim=1)
            keep = torch.topk(values, min(n, values.shape[1]), dim=1).indices
            best_values = torch.gather(values, 1, keep)
            best_where = torch.gather(where, 1, keep[:, :, None].expand(-1, -1, 3))
        progress(done, total, "concept patches")
    result = ConceptPatches(layer=concepts.layer, field=found)
    _cut_patches(result, loaded, source, best_values, best_where, thumbnail_size)
    return result


def _check_patch_options(n: int, thumbnail_size: int) -> None:
    if n < 1:
        raise VizError(f"n must be at least 1 patch per concept, got {n}")
    if thumbnail_size < 8:
        raise VizError(f"thumbnail size must be at least 8 pixels, got {thumbnail_size}")


def _field(loaded: LoadedModel, layer: str) -> Field:
    """The receptive field of `layer`'s units, or a one-line VizError where they see nothing."""
    input_shape = (loaded.channels, *loaded.input_size)
    found = receptive_fields(loaded.module, input_shape, [layer])[layer]
    if found is None:
        raise VizError(f"no receptive field for layer {layer!r}; its units do not see the input")
    return found


def _cut_patches(
    result: ConceptPatches,
    loaded: LoadedModel,
    source: ImageSource,
    values: torch.Tensor,
    where: torch.Tensor,
    thumbnail_size: int,
) -> None:
    """Fill `result` with each concept's tiles: `values` `(k, m)` best first and `where`
    `(k, m, 3)` their (image id, y, x), cut under `result.field` (each image read once)."""
    cache: dict[int, torch.Tensor] = {}
    for concept in range(values.shape[0]):
        for rank in range(values.shape[1]):
            image_id, y, x = (int(v) for v in where[concept, rank])
            if image_id not in cache:
                cache[image_id] = source.image(image_id)
            box = _box(result.field, y, x, loaded.input_size)
            tile = thumbnail(cut_box(cache[image_id], box), thumbnail_size)
            result.patches.setdefault(concept, []).append(
                ConceptPatch(
                    concept,
                    rank,
                    float(values[concept, rank]),
                    image_id,
                    source.names[image_id],
                    (y, x),
                    box,
                    tile,
                )
            )


def sampled_concept_patches(
    model: ModelLike,
    concepts: Concepts,
    sample: PositionSample,
    data: ConceptData,
    n: int = 9,
    *,
    thumbnail_size: int = DEFAULT_THUMBNAIL,
    limit: int | None = None,
    crops: int = SAMPLE_CROPS,
    seed: int = 0,
) -> ConceptPatches:
    """`concept_patches` among the sampled positions only: no forward pass.

    Each sampled row's coefficients are its NNLS against `concepts.W` (as `concept_patches`
    computes them for every position; the NMF's own coefficients are a fit of the whole sample
    and differ slightly); each concept's best position per image, the `n` best images, cut
    under the layer's receptive field. When every position was sampled
    (`sample.complete`) this is `concept_patches` over the same data; otherwise the top
    patches among `sample.sampled` positions.

    Args:
        sample: the `PositionSample` the concepts were factorized from (`concepts_from_sample`).
        data: the data the sample was taken of, to cut the tiles (image ids index it).
        n, thumbnail_size, limit, crops, seed: as `concept_patches` takes them.

    Example:
        >>> found = data_pass(loaded, data, [], [SampleConfig("_blocks.6._swish#1")])
        >>> sample = found.samples["_blocks.6._swish#1"]
        >>> patches = sampled_concept_patches(loaded, concepts_from_sample(loaded, sample, 8),
        ...                                   sample, data)
    """
    loaded = as_loaded(model)
    _check_patch_options(n, thumbnail_size)
    if sample.layer != concepts.layer or not torch.equal(sample.positions, concepts.positions):
        raise VizError(
            f"the sample of {sample.layer!r} is not the one the concepts of {concepts.layer!r} "
            "were found on; pass the sample given to concepts_from_sample"
        )
    source, _name = open_concept_data(loaded, data, limit=limit, crops=crops, seed=seed)
    if sample.sampled and int(sample.positions[:, 0].max()) >= len(source):
        raise VizError(
            f"the sample reaches image {int(sample.positions[:, 0].max())} but the data has "
            f"{len(source)} images; give the data the sample was taken of"
        )
    result = ConceptPatches(layer=concepts.layer, field=_field(loaded, concepts.layer))
    if sample.sampled == 0:
        return result
    U = nnls(sample.rows.float(), concepts.W.to(sample.rows.device).float()).cpu()
    where = sample.positions  # (n, 3), ordered by (image id, y, x)
    images, image_of = torch.unique(where[:, 0], return_inverse=True)
    rows = torch.arange(len(where))
    best_values, best_where = [], []
    for concept in range(concepts.k):
        values = U[:, concept]
        best = torch.full((len(images),), -1.0).scatter_reduce(
            0, image_of, values, "amax", include_self=True
        )
        # each image's first position (in y, x order) at its best value, as a map's argmax
        at_best = torch.where(values == best[image_of], rows, len(where))
        first = torch.full((len(images),), len(where)).scatter_reduce(
            0, image_of, at_best, "amin", include_self=True
        )
        order = torch.topk(best, min(n, len(images))).indices
        best_values.append(best[order])
        best_where.append(where[first[order]])
    _cut_patches(
        result, loaded, source, torch.stack(best_values), torch.stack(best_where), thumbnail_size
    )
    return result


def concept_renders(
    model: ModelLike,
    concepts: Concepts,
    config: RenderConfig | None = None,
    *,
    seed: Seed = 0,
    run: RunOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RenderResult:
    """Activation maximization of each concept direction: one image per concept (`diversity`
    per concept with `config.diversity`), the `direction` objective (cosine between each
    position's activation vector and `W_i`, averaged over positions) with render's recipe
    (fft parameterization, lucid's transforms).

    Args:
        config: the render recipe (None: `RenderConfig(steps=DEFAULT_RENDER_STEPS)`).
        seed, run, progress: as `vizcnn.optvis.rendering.render` takes them.

    Returns:
        `RenderResult`: images `(k * diversity, C, H, W)` in [0, 1], concept i's first.

    Example:
        >>> renders = concept_renders(loaded, concepts, RenderConfig(steps=128))
    """
    config = config or RenderConfig(steps=DEFAULT_RENDER_STEPS)
    objectives = [direction(concepts.layer, w.float().cpu()) for w in concepts.W]
    return render(model, objectives, config, seed=seed, run=run, progress=progress or no_progress)
