"""A timm model's images are prepared as timm's own evaluation transform prepares them: resized
to cover `input_size / crop_pct` with the model's interpolation, then centre-cropped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vizcnn.data.datasets import open_dataset, preprocess
from vizcnn.io.imaging import save_png
from vizcnn.models.loading import load_model

timm = pytest.importorskip("timm")


def _smooth_photo(height: int, width: int) -> torch.Tensor:
    """A smooth, asymmetric picture: resampling filters agree on it, a wrong crop does not."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    return torch.stack([y.expand(height, width), x.expand(height, width), (x * y) ** 0.5])


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "efficientnet_b0"])
def test_preprocess_equals_timms_eval_transform(name: str) -> None:
    loaded = load_model(f"timm:{name}", weights="none", device="cpu")
    assert loaded.resize_crop is not None
    config = timm.data.resolve_model_data_config(loaded.module)
    assert loaded.resize_crop.crop_pct == config["crop_pct"]
    transform = timm.data.create_transform(**{**config, "mean": (0, 0, 0), "std": (1, 1, 1)})
    photo = _smooth_photo(300, 420)
    pixels = (photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    theirs = transform(Image.fromarray(pixels))  # PIL: resize, centre crop, to tensor
    ours = preprocess(photo, loaded.input_size, loaded.resize_crop)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 0.02  # PIL's filters vs torch's, 8-bit input


def test_data_sets_follow_the_models_recipe(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    photo = _smooth_photo(300, 420)
    save_png(photo, folder / "a.png")
    loaded = load_model("timm:resnet18", weights="none", device="cpu")
    plain = open_dataset(folder, 3, loaded.input_size)
    theirs = open_dataset(folder, 3, loaded.input_size, resize_crop=loaded.resize_crop)
    expected = preprocess(plain.load(0), loaded.input_size, loaded.resize_crop)
    assert torch.equal(theirs[0]["image"], expected)
    assert not torch.equal(plain[0]["image"], expected)  # the crop margin differs
    assert plain.fingerprint() != theirs.fingerprint()  # a resumed mine notices
