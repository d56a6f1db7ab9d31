"""Results that show themselves in a notebook, and `show`: any image tensor or result as a picture.

Jupyter asks an object for `_repr_png_()` when it is the last expression of a cell. Every result
type that has a natural picture (a render's images, mined patches, attribution maps) defines
`contact_sheet() -> PIL.Image` and inherits `_repr_png_` from `ContactSheet`; a new result type
(concepts, accentuations) joins by doing the same, and `show` then draws it too.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import make_grid, to_pil

# a notebook cell should stay readable: more tiles than this are cut, with a note on the sheet
MAX_TILES = 64


@runtime_checkable
class HasContactSheet(Protocol):
    """A result that draws itself: a render, mined patches, attribution maps, ..."""

    def contact_sheet(self) -> Image.Image: ...


class ContactSheet:
    """Mixin: `_repr_png_` (what IPython's display formatter calls) from `contact_sheet()`."""

    def contact_sheet(self) -> Image.Image:
        raise NotImplementedError  # each result type draws its own sheet

    def _repr_png_(self) -> bytes:
        return png_bytes(self.contact_sheet())


def png_bytes(image: Image.Image) -> bytes:
    """`image` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _tiles(item: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(item, torch.Tensor):
        if item.dim() == 2:  # (H, W): one grey image
            return [item[None]]
        if item.dim() == 3:
            return [item]
        if item.dim() == 4:
            return list(item)
        raise VizError(
            f"cannot show a tensor of shape {tuple(item.shape)}; give (H, W), (C, H, W) or "
            "(B, C, H, W) in [0, 1]"
        )
    tiles = [t for part in item for t in _tiles(part)]
    if not tiles:
        raise VizError("nothing to show: the sequence is empty")
    return tiles


def _displayable(tile: torch.Tensor) -> torch.Tensor:
    # as `to_uint8` shows one image: 2 channels as their mean, 4+ as their first three
    if tile.shape[0] == 2:
        return tile.mean(0, keepdim=True)
    return tile[:3]


def show(
    item: torch.Tensor | Sequence[torch.Tensor] | HasContactSheet | Image.Image,
    columns: int | None = None,
) -> Image.Image:
    """A picture of `item`: an image tensor, a batch in a grid, or a result's contact sheet.

    Args:
        item: an `(H, W)`, `(C, H, W)` or `(B, C, H, W)` tensor in [0, 1] (1, 3 or more
            channels: the first three are shown), a list of such tensors (sizes may differ), a
            PIL image (returned as it is) or a result with `contact_sheet()` (`RenderResult`,
            `MinedPatches`, `Attributions`).
        columns: grid columns for a batch; about the square root of the count by default.

    Returns:
        A PIL image; in a notebook it displays itself.

    Example:
        >>> show(torch.rand(6, 3, 32, 32), columns=3).size
        (104, 70)
    """
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, HasContactSheet):
        return item.contact_sheet()
    if not isinstance(item, (torch.Tensor, Sequence)) or isinstance(item, str):
        raise VizError(
            f"cannot show a {type(item).__name__}; give an image tensor, a list of them, a PIL "
            "image or a vizcnn result (RenderResult, MinedPatches, Attributions)"
        )
    tiles = [_displayable(t.detach().float().cpu()) for t in _tiles(item)[:MAX_TILES]]
    if len({t.shape[0] for t in tiles}) > 1:  # grey tiles among colour ones: grey in colour
        tiles = [t.expand(3, -1, -1) for t in tiles]
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    return to_pil(make_grid(tiles, columns=columns))
