"""Images in and out: files to `(C, H, W)` tensors in [0, 1], tensors to PNGs with metadata, grids.

Every file is written atomically (temporary file in the same folder, then `os.replace`), so an
interrupted run never leaves a half-written picture or manifest behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps, PngImagePlugin, UnidentifiedImageError

from vizcnn.core.errors import VizError
from vizcnn.io.paths import os_reason

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}


def pil_to_tensor(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """A PIL image as a `(channels, H, W)` float tensor in [0, 1].

    RGBA and LA are composited onto white, palette and CMYK converted, 16-bit scaled, and
    `channels` = 1 gives luminance (ITU-R 601 luma), 3 gives RGB. Any other count (a 4-channel
    RGB-D or RGB-NIR model) needs a file with exactly that many bands, read as stored (an RGBA
    or CMYK file for 4 channels, alpha not composited); a photo is refused (`channel_refusal`)
    rather than guessed into channels it does not have.
    """
    image = ImageOps.exif_transpose(image) or image
    if channels not in (1, 3):
        bands = len(image.getbands())
        if bands != channels or image.mode in {"I;16", "I;16B", "I;16L", "I", "F", "P"}:
            raise channel_refusal(channels, f"an image with {bands} band(s) ({image.mode})")
        array = np.asarray(image, dtype=np.uint8)
        return torch.from_numpy(array.copy()).float().div_(255.0).permute(2, 0, 1).contiguous()
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if array.max() > 255 else 255.0
        gray = torch.from_numpy(np.clip(array / peak, 0, 1)).unsqueeze(0)
        return gray.expand(channels, -1, -1).clone()
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        gray = torch.from_numpy(np.clip(array, 0, 1)).unsqueeze(0)
        return gray.expand(channels, -1, -1).clone()
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA"}:
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).float().div_(255.0)
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    else:
        tensor = tensor.permute(2, 0, 1)
    return tensor.contiguous()


def channel_refusal(channels: int, what: str) -> VizError:
    """The one refusal of a picture that has not the model's `channels` (neither 1 nor 3)."""
    return VizError(
        f"the model takes {channels}-channel images, not {what}: pictures are converted to "
        f"1 channel (luminance) or 3 (RGB) only; give image files with {channels} bands "
        f"(RGBA or CMYK for 4) or (B, {channels}, H, W) tensors"
    )


# Pillow's own refusal limit (2 x Image.MAX_IMAGE_PIXELS): above it Pillow raises, between half
# of it and it Pillow only warns. vizcnn has one policy instead: refuse above the limit with a
# message that says how to allow it, and no warnings below.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "VIZCNN_MAX_PIXELS"
_PILLOW_LIMIT_LOCK = threading.Lock()


def max_pixels(limit: int | None = None) -> int | None:
    """The largest image (width x height) `load_image` reads; None = no limit.

    `limit` if given, else the environment variable VIZCNN_MAX_PIXELS, else Pillow's own
    limit (`DEFAULT_MAX_PIXELS`, 179 megapixels); 0 means no limit.
    """
    if limit is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        try:
            limit = int(text.replace("_", "")) if text else DEFAULT_MAX_PIXELS
        except ValueError:
            raise VizError(
                f"{MAX_PIXELS_ENV}={text!r} is not a whole number of pixels (0 = no limit)"
            ) from None
    if limit < 0:
        raise VizError(f"the pixel limit must be 0 (none) or more, got {limit}")
    return limit or None


def load_image(path: str | Path, channels: int = 3, *, limit: int | None = None) -> torch.Tensor:
    """Read any image Pillow can read as `(channels, H, W)` in [0, 1]; one-line error if not.

    Args:
        path: an image file.
        channels: 1 (luminance) or 3 (RGB); another count needs a file with that many bands.
        limit: the largest width x height to read (see `max_pixels`: default 179 megapixels,
            or VIZCNN_MAX_PIXELS); larger images are refused with their size, before decoding.

    Example:
        >>> load_image("photo.jpg").shape
        torch.Size([3, 480, 640])
    """
    path = Path(path)
    if path.is_dir():
        raise VizError(f"{str(path)!r} is a folder, not an image file")
    if not path.is_file():
        raise VizError(f"image {str(path)!r} not found")
    allowed = max_pixels(limit)
    try:
        # Pillow's check reads a module global; switch it off (under a lock) while our own
        # check, which names the size and the way to allow it, runs instead.
        with _PILLOW_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                image = Image.open(path)
                try:
                    width, height = image.size
                    if allowed is not None and width * height > allowed:
                        raise VizError(
                            f"image {str(path)!r} is {width}x{height} "
                            f"({width * height / 1e6:.1f} megapixels), over the limit of "
                            f"{allowed / 1e6:.1f} megapixels that guards against decompression "
                            f"bombs; to read it, set {MAX_PIXELS_ENV}={width * height} "
                            "(0 = no limit)"
                        )
                    image.load()
                except BaseException:
                    image.close()
                    raise
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with image:
            return pil_to_tensor(image, channels)
    except VizError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VizError(
            f"cannot read image {str(path)!r}: {exc}; give a PNG, JPEG, WebP, BMP, GIF or TIFF file"
        ) from exc


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """`(C, H, W)` in [0, 1] as an `(H, W, C)` or `(H, W)` uint8 array.

    One channel is grey, three RGB; two are shown as their mean, four or more as their first
    three channels (RGB of an RGB-X model; the rest are in the tensors a run returns).
    """
    array = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    if array.dim() != 3:
        raise VizError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
    if array.shape[0] == 1:
        return array[0].numpy()
    if array.shape[0] > 3:  # a 4+-channel model's picture: its first three channels as RGB
        array = array[:3]
    if array.shape[0] == 2:
        return array.float().mean(0).round().to(torch.uint8).numpy()
    return array.permute(1, 2, 0).numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """`(C, H, W)` in [0, 1] as a PIL image (L for one channel, RGB for three)."""
    return Image.fromarray(to_uint8(image))


def default_file_mode() -> int:
    """0666 minus the process umask: the mode a plain `open(path, "w")` would give."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call `write(file)` on a temporary file next to `path`, then rename it into place.

    A file system error (no permission, disk full, a file where a folder should be) is a
    one-line VizError naming `path`; the old file, if any, is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, default_file_mode())  # mkstemp makes 0600; give what open() would
        os.replace(temp_name, path)
    except OSError as exc:
        Path(temp_name).unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def _write_error(path: Path, exc: OSError) -> VizError:
    return VizError(f"cannot write {str(path)!r}: {os_reason(exc)}")


def save_png(
    image: torch.Tensor | Image.Image, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a PNG atomically with `metadata` as text chunks (values JSON-encoded unless str)."""
    picture = image if isinstance(image, Image.Image) else to_pil(image)
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
    return atomic_write(path, lambda file: picture.save(file, format="PNG", pnginfo=info))


def read_png_metadata(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG written by `save_png`."""
    with Image.open(path) as image:
        return dict(getattr(image, "text", {}))


def save_json(data: Any, path: str | Path) -> Path:
    """Write JSON atomically (sorted keys, indented) so manifests are never half-written."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def resize(images: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize `(B, C, H, W)` to `size` = (H, W): bilinear (or `mode`: bicubic, nearest, area),
    antialiased when shrinking."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode in ("nearest", "area"):
        return F.interpolate(images, size=size, mode=mode)
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=shrink)


def make_grid(
    images: Sequence[torch.Tensor] | torch.Tensor,
    columns: int | None = None,
    padding: int = 2,
    background: float = 1.0,
) -> torch.Tensor:
    """Tile `(C, H, W)` images (same C; sizes may differ) into one `(C, H', W')` sheet."""
    tiles = list(images)
    if not tiles:
        raise VizError("no images to put in a grid")
    channels = max(t.shape[0] for t in tiles)
    tiles = [t.expand(channels, -1, -1) if t.shape[0] == 1 else t for t in tiles]
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    cell_h = max(t.shape[1] for t in tiles)
    cell_w = max(t.shape[2] for t in tiles)
    sheet = torch.full(
        (
            channels,
            rows * cell_h + (rows + 1) * padding,
            columns * cell_w + (columns + 1) * padding,
        ),
        background,
        dtype=tiles[0].dtype,
        device=tiles[0].device,
    )
    for index, tile in enumerate(tiles):
        row, col = divmod(index, columns)
        top = padding + row * (cell_h + padding)
        left = padding + col * (cell_w + padding)
        sheet[:, top : top + tile.shape[1], left : left + tile.shape[2]] = tile
    return sheet


def labeled_sheet(
    images: Sequence[torch.Tensor], labels: Sequence[str], columns: int | None = None
) -> Image.Image:
    """A contact sheet: each `(C, H, W)` image with its label underneath (PIL's default font)."""
    if len(images) != len(labels):
        raise VizError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise VizError("no images to put in a contact sheet")
    columns = columns or math.ceil(math.sqrt(len(images)))
    caption = 14
    tiles = []
    for image, label in zip(images, labels, strict=True):
        tile = to_pil(image.expand(3, -1, -1) if image.shape[0] == 1 else image).convert("RGB")
        canvas = Image.new("RGB", (tile.width, tile.height + caption), "white")
        canvas.paste(tile, (0, 0))
        ImageDraw.Draw(canvas).text((2, tile.height + 1), str(label)[:40], fill="black")
        tiles.append(pil_to_tensor(canvas, 3))
    return to_pil(make_grid(tiles, columns=columns))
