"""Feature maps: the activation maps an image produces at chosen layers, strongest channels first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.data.datasets import preprocess
from vizcnn.hooks import Layer, capture, find_module, layer_names, model_guard, parse_layer
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.models.preflight import preflight


@dataclass(frozen=True)
class FeatureMapConfig:
    """Which maps to show."""

    # layer specs (dotted name, `name#k` for the k-th call) or submodules (`feature_maps`
    # shows them under their dotted names, `vizcnn.hooks.layer_name`); () = the model's
    # report layers (stages at three depths: `LoadedModel.layers_for("report")`)
    layers: tuple[Layer, ...] = ()
    top: int = 16  # channels per layer, ranked by mean activation over the map
    resize: bool = True  # resize + centre-crop the image to the model's input size first
    # how `vizcnn.runs.featuremaps_folder` draws them (`feature_maps` does not use these)
    overlay: bool = False  # each map over the input image
    cmap: str = "viridis"  # matplotlib colour map

    def __post_init__(self) -> None:
        if self.top < 1:
            raise VizError(f"top must be at least 1, got {self.top}")


@dataclass
class LayerMaps:
    """The top channels of one layer for one image."""

    layer: str  # the layer spec
    shape: tuple[int, ...]  # full output shape (C, h, w), batch dimension dropped
    channels: list[int]  # channel indices, strongest mean activation first
    means: list[float]  # mean activation of each of `channels`
    maps: torch.Tensor  # (K, h, w) activations of `channels`, on the CPU, float32

    def to_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "channels": self.channels,
            "means": [round(v, 6) for v in self.means],
            "max": [round(float(m.max()), 6) for m in self.maps],
        }


def check_layers(model: torch.nn.Module, layers: Sequence[Layer]) -> None:
    """Fail early, with the closest valid names, on a layer that does not exist."""
    for spec in layer_names(model, layers):
        find_module(model, parse_layer(spec).name)


def top_channels(activation: torch.Tensor, top: int) -> tuple[list[int], list[float]]:
    """Indices and values of the `top` largest channel means of `(C, h, w)` (ties: lower index)."""
    means = activation.flatten(1).mean(dim=1).double()
    order = sorted(range(len(means)), key=lambda c: (-float(means[c]), c))[:top]
    return order, [float(means[c]) for c in order]


def feature_maps(
    model: ModelLike,
    image: torch.Tensor,
    config: FeatureMapConfig,
    *,
    progress: ProgressCallback = no_progress,
) -> tuple[torch.Tensor, list[LayerMaps]]:
    """Run one image through the model and keep the strongest channels of each layer.

    Args:
        model: a `LoadedModel` or bare `nn.Module` (ImageNet normalization assumed then).
        image: `(C, H, W)` in [0, 1], any size.
        config: layers and how many channels each.
        progress: called once per layer done.

    Returns:
        The image as fed to the model `(C, H, W)` in [0, 1], and one `LayerMaps` per layer, in
        the order of `config.layers`. A 2-D output `(B, F)` is treated as F maps of size 1x1.

    Example:
        >>> shown, maps = feature_maps(load_model(), sample_image("coffee"),
        ...                            FeatureMapConfig(layers=("_blocks.2",), top=8))
    """
    loaded = as_loaded(model)
    layers = layer_names(loaded.module, config.layers or loaded.layers_for("report"))
    config = replace(config, layers=tuple(layers))
    check_layers(loaded.module, layers)
    if image.dim() != 3 or image.shape[0] != loaded.channels:
        raise VizError(
            f"image must be ({loaded.channels}, H, W) for {loaded.name}, got {tuple(image.shape)}"
        )
    warn_if_normalized(image)  # before `preprocess`, whose resampling clamps to [0, 1]
    if config.resize:
        image = preprocess(image, loaded.input_size, loaded.resize_crop)
    preflight(loaded, layers, size=image.shape[-2:])
    batch = loaded.normalize(image.unsqueeze(0).to(loaded.device, loaded.dtype))
    with (
        model_guard(loaded.module),
        torch.no_grad(),
        capture(loaded.module, layers, stop_early=True, detach=True) as acts,
    ):
        acts.run(batch)
    results = []
    for done, spec in enumerate(layers, start=1):
        activation = acts[parse_layer(spec).spec][0].float().cpu()
        if activation.dim() == 1:
            activation = activation.view(-1, 1, 1)
        if activation.dim() != 3:
            raise VizError(f"layer {spec!r} output {tuple(activation.shape)} is not (C, H, W)")
        channels, means = top_channels(activation, config.top)
        results.append(
            LayerMaps(
                layer=spec,
                shape=tuple(int(v) for v in activation.shape),
                channels=channels,
                means=means,
                maps=activation[channels].clone(),
            )
        )
        progress(done, len(layers), spec)
    return image, results
