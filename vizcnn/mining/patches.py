"""Second pass of mining: the winning images' patches under each hit's receptive field.

Only the images that made some channel's top k are loaded again. Each hit (channel c, unit
(y, x)) becomes the input box its unit sees (`vizcnn.receptive.graph`), padded where the box leaves
the image, scaled to a thumbnail; optionally next to its deconvnet or guided-backprop
projection (captum's `NeuronDeconvolution` / `NeuronGuidedBackprop`), cropped to the same box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import torch
import torch.nn.functional as F
from PIL import Image

from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.relu_rules import RULES, relu_rule
from vizcnn.data.datasets import ImageSource
from vizcnn.hooks import Layer, capture, layer_name, model_guard
from vizcnn.io.display import ContactSheet
from vizcnn.io.imaging import labeled_sheet, make_grid, resize
from vizcnn.mining.topk import TopK
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.receptive.field import Field
from vizcnn.receptive.measured import receptive_fields

PROJECTIONS = ("deconv", "guided", "none")
DEFAULT_PROJECTIONS = "none"  # patches alone; "deconv" / "guided" add the unit's projection
DEFAULT_THUMBNAIL = 64  # pixels on a tile's longest side
CUTTING = "cutting patches"  # the progress message of `mine_patches`


@dataclass
class Hit:
    """One of a channel's top-k images: where, how strongly, and its tiles."""

    channel: int  # channel of the mined layer
    rank: int  # 0 = best
    value: float  # the image's score for the channel (spatial max or mean)
    image_id: int  # index into the data set
    image: str  # the image's name (path, or sample:name@top,left,side)
    position: tuple[int, int]  # (y, x) of the unit in the layer's map
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in the model input, exclusive
    patch: torch.Tensor  # (C, h, w) thumbnail of the box, in [0, 1]
    projection: torch.Tensor | None = None  # (C, h, w) projection of the unit, in [0, 1]


@dataclass
class MinedPatches(ContactSheet):
    """Every mined channel's hits, with the field used to cut them.

    In a notebook it shows itself as `layer_sheet(self)`: each channel's top-k grid, labelled.
    """

    layer: str
    field: Field  # receptive field of the layer's units at the model's input size
    projections: str  # "deconv", "guided" or "none"
    hits: dict[int, list[Hit]] = dataclass_field(
        default_factory=dict
    )  # channel -> hits, best first

    def contact_sheet(self) -> Image.Image:
        """Every channel's patch grid on one labelled sheet (`layer_sheet`)."""
        return layer_sheet(self)


def cut_box(image: torch.Tensor, box: tuple[int, int, int, int], fill: float = 0.5) -> torch.Tensor:
    """The `(C, bottom-top, right-left)` part of `(C, H, W)` under `box`, `fill` outside the image.

    Example:
        >>> cut_box(torch.ones(3, 8, 8), (-2, -2, 4, 4)).shape
        torch.Size([3, 6, 6])
    """
    top, left, bottom, right = box
    height, width = image.shape[-2:]
    pads = (max(0, -left), max(0, right - width), max(0, -top), max(0, bottom - height))
    padded = F.pad(image, pads, value=fill)
    top, left = top + pads[2], left + pads[0]
    return padded[:, top : top + (bottom - box[0]), left : left + (right - box[1])]


def thumbnail(patch: torch.Tensor, longest: int) -> torch.Tensor:
    """Scale `(C, h, w)` so its longest side is `longest` pixels (nearest when enlarging a lot)."""
    height, width = patch.shape[-2:]
    scale = longest / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if scale >= 2:  # small fields (first layers): keep pixels crisp
        return F.interpolate(patch[None], size=size, mode="nearest")[0]
    return resize(patch[None], size)[0]


def check_projectable(loaded: ModelLike, layer: Layer) -> None:
    """VizError unless `layer` (`name#k` for the k-th call, or a submodule) gives a map."""
    loaded = as_loaded(loaded)
    with model_guard(loaded.module):
        layer = layer_name(loaded.module, layer)
        probe = torch.zeros(
            1, loaded.channels, *loaded.input_size, device=loaded.device, dtype=loaded.dtype
        )
        with torch.no_grad(), capture(loaded.module, [layer], stop_early=True, detach=True) as acts:
            acts.run(probe)
        if acts[layer].dim() != 4:
            raise VizError(
                f"projections need a layer with a (B, C, H, W) map; {layer!r} gives shape "
                f"{tuple(acts[layer].shape)}: use projections='none'"
            )


def check_patch_options(
    loaded: LoadedModel,
    layer: Layer,
    projections: str = DEFAULT_PROJECTIONS,
    thumbnail_size: int = DEFAULT_THUMBNAIL,
) -> None:
    """VizError now for `mine_patches` options that would fail it after the mining pass.

    Checks the projection method, the thumbnail size, that `layer`'s units have a receptive
    field, and, with projections, that `layer` gives a `(B, C, H, W)` map
    (`check_projectable`). Call it before `mine_topk`.
    """
    if projections not in PROJECTIONS:
        raise VizError(f"unknown projections {projections!r}; use deconv, guided or none")
    if thumbnail_size < 8:
        raise VizError(f"thumbnail size must be at least 8 pixels, got {thumbnail_size}")
    layer = layer_name(loaded.module, layer)
    input_shape = (loaded.channels, *loaded.input_size)
    if receptive_fields(loaded.module, input_shape, [layer])[layer] is None:
        raise VizError(f"no receptive field for layer {layer!r}; its units do not see the input")
    if projections != "none":
        check_projectable(loaded, layer)


def project(
    loaded: ModelLike,
    images: torch.Tensor,
    layer: Layer,
    units: torch.Tensor,
    method: str,
    *,
    check: bool = True,
) -> torch.Tensor:
    """Deconvnet or guided-backprop projection of one unit per image onto the input.

    The gradient of each image's unit with respect to the input, with every activation's
    backward replaced by the deconvnet or guided rule (`vizcnn.core.relu_rules.relu_rule`, the
    same rules as attribution's): modules and functional calls (`F.relu` in torchvision's
    GoogLeNet, `F.gelu` in timm blocks) alike, a one-line VizError where the rule cannot see an
    activation. Runs under `model_guard`.

    Args:
        loaded: the model (`LoadedModel` or bare `nn.Module`; left as found).
        images: `(B, C, H, W)` in [0, 1] at the model's input size.
        layer: the layer spec (`name#k` for the k-th call of a reused module) or submodule.
        units: `(B, 3)` int64 (channel, y, x) of the unit to project for each image.
        method: "deconv" or "guided".
        check: verify first that the layer gives a `(B, C, H, W)` map (see
            `check_projectable`); callers projecting many batches check once.

    Returns:
        `(B, C, H, W)` attribution in the model's input space.

    Example:
        >>> guided = project(loaded, images, "inception4a", torch.tensor([[5, 3, 3]]), "guided")
    """
    loaded = as_loaded(loaded)
    if method not in RULES:
        raise VizError(f"unknown projection {method!r}; use {' or '.join(RULES)}")
    with model_guard(loaded.module):
        layer = layer_name(loaded.module, layer)
        if check:
            check_projectable(loaded, layer)
        model = loaded.module
        inputs = loaded.normalize(images.to(device=loaded.device, dtype=loaded.dtype))
        inputs.requires_grad_(True)
        rows = torch.arange(units.shape[0], device=loaded.device)
        index = units.to(loaded.device)
        with (
            torch.enable_grad(),
            relu_rule(model, method),  # type: ignore[arg-type]
            capture(model, [layer], stop_early=True) as acts,
        ):
            acts.run(inputs)
            # images are independent (eval mode): one backward gives each image its own unit's map
            chosen = acts[layer][rows, index[:, 0], index[:, 1], index[:, 2]]
            (grad,) = torch.autograd.grad(chosen.sum(), inputs)
        return grad.detach()


def _display(projection: torch.Tensor) -> torch.Tensor:
    # Deconvnet images are signed; centre on grey and scale by a robust maximum.
    scale = torch.quantile(projection.abs().flatten().float(), 0.995).clamp_min(1e-12)
    return (0.5 + 0.5 * projection / scale).clamp(0, 1)


def mine_patches(
    model: ModelLike,
    dataset: ImageSource,
    topk: TopK,
    *,
    projections: str = DEFAULT_PROJECTIONS,
    thumbnail_size: int = DEFAULT_THUMBNAIL,
    batch_size: int = 16,
    fill: float = 0.5,
    progress: ProgressCallback = no_progress,
) -> MinedPatches:
    """Cut every hit's receptive-field box (and its projection) out of the winning images.

    Args:
        model: the model that was mined, `LoadedModel` or bare `nn.Module` (left unchanged).
        dataset: the same data set `topk` was mined from.
        topk: result of `mine_topk`.
        projections: "deconv", "guided" or "none".
        thumbnail_size: longest side of each tile, in pixels.
        batch_size: images per projection batch.
        fill: grey level where a box leaves the image.
        progress: called with (hits done, hits, message).

    Example:
        >>> mined = mine_patches(loaded, data, top, projections="deconv")
        >>> mined.hits[0][0].patch.shape
        torch.Size([3, 64, 64])
    """
    loaded = as_loaded(model)
    if projections not in PROJECTIONS:
        raise VizError(f"unknown projections {projections!r}; use deconv, guided or none")
    if thumbnail_size < 8:
        raise VizError(f"thumbnail size must be at least 8 pixels, got {thumbnail_size}")
    with model_guard(loaded.module):
        input_shape = (loaded.channels, *loaded.input_size)
        found = receptive_fields(loaded.module, input_shape, [topk.layer])[topk.layer]
        if found is None:
            raise VizError(
                f"no receptive field for layer {topk.layer!r}; its units do not see the input"
            )
        result = MinedPatches(layer=topk.layer, field=found, projections=projections)
        if projections != "none":
            check_projectable(loaded, topk.layer)
        # Hits sorted by image, so each winning image is read once and only a batch's worth of
        # images is held at a time (every channel of a wide layer can have thousands of winners).
        todo = sorted(
            (
                (row, slot, hit)
                for row in range(len(topk.channels))
                for slot, hit in enumerate(topk.hits(row))
            ),
            key=lambda item: (item[2][1], item[0], item[1]),
        )
        total = len(todo)
        progress(0, total, CUTTING)
        cache: dict[int, torch.Tensor] = {}
        for start in range(0, total, batch_size):
            chunk = todo[start : start + batch_size]
            cache = {
                i: cache[i] if i in cache else dataset.image(i) for i in {h[1] for _, _, h in chunk}
            }
            projected = None
            if projections != "none":
                batch = torch.stack([cache[hit[1]] for _, _, hit in chunk])
                units = torch.tensor(
                    [[topk.channels[row], hit[2], hit[3]] for row, _, hit in chunk],
                    dtype=torch.int64,
                )
                projected = project(
                    loaded, batch, topk.layer, units, projections, check=False
                ).cpu()
            for index, (row, slot, (value, image_id, y, x)) in enumerate(chunk):
                box = _box(found, y, x, loaded.input_size)
                tile = thumbnail(cut_box(cache[image_id], box, fill), thumbnail_size)
                shown = None
                if projected is not None:
                    crop = cut_box(projected[index], box, 0.0)
                    shown = thumbnail(_display(crop), thumbnail_size)
                channel = topk.channels[row]
                hit = Hit(
                    channel,
                    slot,
                    value,
                    image_id,
                    dataset.names[image_id],
                    (y, x),
                    box,
                    tile,
                    shown,
                )
                result.hits.setdefault(channel, []).append(hit)
            progress(min(start + batch_size, total), total, CUTTING)
        for hits in result.hits.values():
            hits.sort(key=lambda hit: hit.rank)
        result.hits = {
            channel: result.hits[channel] for channel in topk.channels if channel in result.hits
        }
        return result


def _box(found: Field, y: int, x: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    if found.method == "global":  # every unit sees the whole image
        return 0, 0, size[0], size[1]
    return found.box(y, x)


def channel_grid(hits: list[Hit], columns: int = 3) -> torch.Tensor:
    """A channel's patches in a grid (k = 9 gives 3x3), its projections' grid to the left."""
    if not hits:
        raise VizError("no hits to put in a grid")
    patches = make_grid([hit.patch for hit in hits], columns=columns)
    projected = [hit.projection for hit in hits if hit.projection is not None]
    if len(projected) != len(hits):
        return patches
    return make_grid([make_grid(projected, columns=columns), patches], columns=2, padding=4)


def layer_sheet(mined: MinedPatches, columns: int | None = None) -> Image.Image:
    """All mined channels' grids on one labelled contact sheet."""
    channels = sorted(mined.hits)
    if not channels:
        raise VizError(f"nothing was mined for {mined.layer!r}: no image made any channel's top k")
    grids = [channel_grid(mined.hits[c]) for c in channels]
    columns = columns or math.ceil(math.sqrt(len(grids)))
    return labeled_sheet(grids, [f"{mined.layer} c{c}" for c in channels], columns=columns)
