"""Results show themselves in a notebook: IPython's display formatter gets PNG bytes from each
result type, and `vizcnn.show` draws tensors, batches and results.

The formatter is IPython's own `DisplayFormatter` (IPython is in the `test` extra); each PNG it
returns is decoded and compared pixel for pixel with the result's `contact_sheet()`, itself
checked against the tiles it is made of.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import vizcnn
from mine_helpers import loaded_tiny
from vizcnn.attribution.figures import heat
from vizcnn.data.datasets import TensorImages
from vizcnn.io.display import MAX_TILES, HasContactSheet, show
from vizcnn.io.imaging import to_uint8
from vizcnn.mining.patches import layer_sheet

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _formatted_png(result: object) -> bytes:
    """What Jupyter would display for `result` as the last expression of a cell."""
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(result)
    assert "image/png" in data, sorted(data)
    png = data["image/png"]
    return png if isinstance(png, bytes) else png.encode("latin-1")


def _assert_displays_as_its_sheet(result: HasContactSheet) -> None:
    png = _formatted_png(result)
    assert png.startswith(PNG_SIGNATURE)
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    expected = np.asarray(result.contact_sheet().convert("RGB"))
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(np.asarray(show(result).convert("RGB")), expected)


def _tile_at(sheet: Image.Image, top: int, left: int, tile: torch.Tensor) -> np.ndarray:
    height, width = tile.shape[-2:]
    return np.asarray(sheet)[top : top + height, left : left + width]


def test_show_tiles_a_batch_in_a_grid_with_each_image_where_it_belongs() -> None:
    batch = torch.rand(5, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    sheet = show(batch, columns=2)
    padding = 2
    assert sheet.size == (2 * 10 + 3 * padding, 3 * 8 + 4 * padding)
    for index, tile in enumerate(batch):
        row, col = divmod(index, 2)
        top, left = padding + row * (8 + padding), padding + col * (10 + padding)
        np.testing.assert_array_equal(_tile_at(sheet, top, left, tile), to_uint8(tile))


def test_show_takes_one_image_grey_maps_and_lists_of_mixed_channels() -> None:
    image = torch.rand(3, 6, 7)
    np.testing.assert_array_equal(np.asarray(show(image))[2:8, 2:9], to_uint8(image))
    grey = torch.rand(6, 7)
    np.testing.assert_array_equal(np.asarray(show(grey))[2:8, 2:9], to_uint8(grey[None]))
    mixed = show([torch.rand(1, 4, 4), torch.rand(3, 4, 4)])
    assert mixed.mode == "RGB"
    assert show(mixed) is mixed  # a PIL image is shown as it is


def test_show_caps_a_large_batch() -> None:
    sheet = show(torch.zeros(MAX_TILES + 10, 1, 2, 2), columns=MAX_TILES)
    assert sheet.size[0] == MAX_TILES * 2 + (MAX_TILES + 1) * 2


@pytest.mark.parametrize("bad", ["picture.png", 3, torch.zeros(1, 1, 1, 2, 2), []])
def test_show_refuses_what_is_not_an_image_in_one_line(bad: object) -> None:
    with pytest.raises(vizcnn.VizError) as error:
        show(bad)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_render_result_displays_its_images_with_unit_names() -> None:
    loaded = loaded_tiny()
    result = vizcnn.render(loaded, "conv2:0-2", vizcnn.RenderConfig(steps=2), seed=0)
    _assert_displays_as_its_sheet(result)
    sheet = result.contact_sheet()
    # the first tile is the first rendered image, pixel for pixel
    np.testing.assert_array_equal(
        _tile_at(sheet, 2, 2, result.images[0]), to_uint8(result.images[0])
    )
    assert len(result.units) == 3


def test_mined_patches_display_as_their_layer_sheet() -> None:
    loaded = loaded_tiny()
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dataset = TensorImages(images)
    config = vizcnn.MineConfig(layer="conv2", channels=(0, 1), k=2)
    top = vizcnn.mine_topk(loaded, dataset, config)
    mined = vizcnn.mine_patches(loaded, dataset, top)
    _assert_displays_as_its_sheet(mined)
    np.testing.assert_array_equal(np.asarray(mined.contact_sheet()), np.asarray(layer_sheet(mined)))


def test_attributions_display_a_heat_map_per_method_and_image() -> None:
    loaded = loaded_tiny()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = vizcnn.attribute(loaded, images, ["saliency", "gradcam"])
    _assert_displays_as_its_sheet(result)
    sheet = np.asarray(result.contact_sheet())
    # second row, first column: saliency of image 1 on the inferno map, recomputed here
    from matplotlib import colormaps

    expected = colormaps["inferno"](heat(result.maps["saliency"][1]))[..., :3]
    expected = (torch.from_numpy(expected).permute(2, 0, 1).float()).to(torch.float32)
    caption = 14
    top = 2 + (32 + caption) + 2
    np.testing.assert_array_equal(
        _tile_at(Image.fromarray(sheet), top, 2, expected), to_uint8(expected)
    )


def test_accentuation_result_displays_its_images_with_their_units() -> None:
    loaded = loaded_tiny()
    photo = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    result = vizcnn.accentuate(loaded, photo, "conv2:1", reg_layer="conv1", steps=2, crops=1)
    _assert_displays_as_its_sheet(result)
    sheet = result.contact_sheet()
    np.testing.assert_array_equal(
        _tile_at(sheet, 2, 2, result.images[0]), to_uint8(result.images[0])
    )
    assert result.units == ["conv2:1", "conv2:1"]
