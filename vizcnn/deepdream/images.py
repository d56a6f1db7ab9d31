"""Images as a dream takes them: batched, on the model's device, in its channel count."""

from __future__ import annotations

import torch

from vizcnn.core.errors import VizError
from vizcnn.deepdream.tiling import as_unit
from vizcnn.models.loading import LoadedModel

# Luminance weights (ITU-R 601) for feeding a colour image to a one-channel model.
_LUMA = (0.299, 0.587, 0.114)


def as_batch(image: torch.Tensor, loaded: LoadedModel) -> torch.Tensor:
    """`(B, C, H, W)` on the model's device with the model's channels; uint8 stays uint8."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise VizError(f"expected a (C, H, W) or (B, C, H, W) image, got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.to(loaded.device)  # converted octave by octave: 1 byte per value, not 4
    else:
        image = image.to(device=loaded.device, dtype=loaded.dtype)
        if image.min() < 0 or image.max() > 1:  # clamp only when needed: no extra full copy
            image = image.clamp(0, 1)
    have, want = image.shape[1], loaded.channels
    if have == want:
        return image
    if want == 1 and have == 3:
        image = as_unit(image, loaded.dtype)
        luma = torch.tensor(_LUMA, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image * luma).sum(1, keepdim=True)
    if have == 1:
        return image.expand(-1, want, -1, -1)
    raise VizError(f"{loaded.name} takes {want}-channel images, got {have} channels")
