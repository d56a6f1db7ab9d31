"""Notice images that were normalized before they were handed in (vizcnn normalizes them itself).

Captum and pytorch-grad-cam take images already normalized with the model's mean/std (values
roughly in [-2.1, 2.6] for ImageNet statistics); vizcnn takes [0, 1] and normalizes again, which
silently gives wrong results. Entry points that take the user's images call `warn_if_normalized`
once per call (a data set: on its first batch), never per optimization step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from vizcnn.core.errors import InputRangeWarning

# Resampling (bicubic, antialiased) overshoots [0, 1] near sharp edges by up to ~0.2, so values a
# little outside are fine. A normalized photo, on the other hand, has every pixel darker than
# about 0.43 below -0.25 and every pixel brighter than about 0.77 above 1.25: almost any real
# image crosses these margins somewhere.
LOW, HIGH = -0.25, 1.25


def warn_if_normalized(
    images: torch.Tensor | Sequence[torch.Tensor], *, stacklevel: int = 3
) -> None:
    """Warn (`InputRangeWarning`) when float `images` lie clearly outside [0, 1].

    One `aminmax` per tensor and one host sync in all; integer images (uint8) are never
    normalized and are skipped.

    Args:
        images: a batch `(B, C, H, W)`, one image `(C, H, W)`, or a list of images of any sizes.
        stacklevel: passed to `warnings.warn`; the default points at the caller's caller (the
            user's call of a library function).
    """
    tensors = [images] if isinstance(images, torch.Tensor) else list(images)
    tensors = [t for t in tensors if t.is_floating_point() and t.numel() > 0]
    if not tensors:
        return
    device = tensors[0].device
    # (N, 2) on the images' device, read back once: a single sync however many images
    bounds = torch.stack(
        [torch.stack(torch.aminmax(t.detach())).float().to(device) for t in tensors]
    )
    low, high = (float(v) for v in torch.stack([bounds[:, 0].min(), bounds[:, 1].max()]).tolist())
    if low < LOW or high > HIGH:
        warnings.warn(
            f"images lie in [{low:.1f}, {high:.1f}], not [0, 1]: vizcnn normalizes with the "
            "model's mean/std itself; pass unnormalized images in [0, 1] "
            "(e.g. loaded.denormalize(x))",
            InputRangeWarning,
            stacklevel=stacklevel,
        )
