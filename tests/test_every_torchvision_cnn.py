"""Every torchvision classification CNN (68 architectures, random weights): loads by name, gets
structural default layers, and gives a Grad-CAM map at its default layer, a block's output.
The full technique matrix runs on one member of each family (`tests/test_model_matrix.py`)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from vizcnn.attribution import GradCAM
from vizcnn.models.loading import load_model

# vision transformers are not CNNs (maxvit and swin mix attention in; vit has no convolutions)
NAMES = [
    name
    for name in torchvision.models.list_models(module=torchvision.models)
    if not name.startswith(("vit", "swin", "maxvit"))
]


def test_the_list_is_every_classification_cnn() -> None:
    assert len(NAMES) == 68 and {"regnet_y_128gf", "convnext_large", "googlenet"} <= set(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_torchvision_cnn(name: str) -> None:
    size = 96 if name == "inception_v3" else 64
    loaded = load_model(name, weights="none", size=size, device="cpu")
    choice = loaded.layer_choice("gradcam")
    layer = loaded.module.get_submodule(choice.layers[0])
    # a block's output, never a conv; a norm only as a stage of the trunk itself (DenseNet's
    # `features.norm5`, after which torchvision applies the ReLU functionally)
    assert not isinstance(layer, nn.Conv2d), choice
    assert not isinstance(layer, nn.BatchNorm2d) or choice.layers[0].count(".") == 1, choice
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(loaded)(images, targets=0)
    assert cam.shape == (1, 1, size, size) and torch.isfinite(cam).all()
