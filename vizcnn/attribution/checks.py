"""What the maps say about themselves: blank maps, and rules that changed nothing.

On a user's own model a method can quietly fail: Grad-CAM at a layer whose gradient is zero gives an
all-zero map (a blank picture), and on a network without activations guided backprop and
deconvnet have nothing to act on, so they return the plain gradient under another name. These
checks turn such results into `MapWarning`s on the result instead of pictures without comment.

The flags are computed on the maps' device as each batch chunk finishes and brought to the host
once, all checks together, when the result is built: no per-image synchronization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

# Pairs (method, reference) whose equality means the method did nothing of its own: guided
# backprop and deconvnet are the gradient with a rule applied at every activation, so equal to
# saliency means no activation changed the gradient. Other pairs are left out on purpose: e.g.
# guided-gradcam equals gradcam x guided by construction, and IG or SmoothGrad equal to the
# gradient would be a coincidence of the model, not a failure of the method.
EQUAL_PAIRS: tuple[tuple[str, str], ...] = (("guided", "saliency"), ("deconv", "saliency"))

# Below this fraction of an image's largest |reference| value two maps count as equal. Not
# torch.equal: on CPU the two backward passes are bit-identical when the rule acts nowhere, but
# GPU kernels may reorder sums between the two runs (atomic adds), which breaks bit-equality. The
# heat maps show 256 levels of the peak, so 1e-4 of it cannot be seen, while a rule that acts
# zeroes whole gradient components, a difference of the order of the peak itself. In bfloat16
# the floor is the dtype's resolution (eps = 2**-7, two of the 256 levels).
EQUAL_TOLERANCE = 1e-4

_GRADIENT_CAUSE = (
    "the target logit's gradient is zero at every pixel: the class does not depend on the "
    "image, or every ReLU on the way is off"
)
_RULE_CAUSE = (
    "the gradient under its rule is zero at every pixel: no positive gradient passes the "
    "rectifiers, or the class does not depend on the image"
)
_ZERO_CAUSES: dict[str, str] = {
    "saliency": _GRADIENT_CAUSE,
    "smoothgrad": _GRADIENT_CAUSE,
    "ig": (
        "the gradient is zero along the whole path from the baseline, or the image equals "
        "the baseline"
    ),
    "guided": _RULE_CAUSE,
    "deconv": _RULE_CAUSE,
    "occlusion": (
        "covering any square with the baseline leaves the target logit unchanged; try a "
        "larger occlusion window or another baseline"
    ),
}


@dataclass(frozen=True)
class MapWarning:
    """One finding about a result's maps; `str(w)` is the message, with image indices."""

    kind: Literal["zero", "equal"]  # an all-zero map, or a map equal to its reference's
    methods: tuple[str, ...]  # (method,) for "zero"; (method, reference) for "equal"
    images: tuple[int, ...]  # indices into the batch, ascending
    batch: int  # images in the batch, to say "every image"
    reason: str  # the likely cause and what to try

    def message(self, names: Sequence[str] | None = None) -> str:
        """One line; images by index, or by `names` (one per image of the batch) when given."""
        which = _which(self.images, self.batch, names)
        if self.kind == "zero":
            return f"{self.methods[0]}: the map is zero for {which} {self.reason}"
        return f"{self.methods[0]} equals {self.methods[1]} on {which} {self.reason}"

    def to_dict(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """For a JSON manifest: the message, the methods and the images (names when given)."""
        images: list[Any] = [names[i] for i in self.images] if names else list(self.images)
        return {"message": self.message(names), "methods": list(self.methods), "images": images}

    def __str__(self) -> str:
        return self.message()


def _which(images: Sequence[int], batch: int, names: Sequence[str] | None, shown: int = 8) -> str:
    if len(images) == batch and batch > 1:
        return "every image"
    labels = [names[i] if names else str(i) for i in images[:shown]]
    more = f", ... ({len(images)} of {batch})" if len(images) > shown else ""
    return ("image " if len(images) == 1 else "images ") + ", ".join(labels) + more


def _activations(module: nn.Module) -> list[str]:
    """The torch activation module types in `module`, in order of appearance (SiLU, GELU, ...)."""
    found: list[str] = []
    for child in module.modules():
        kind = type(child)
        if kind.__module__ == "torch.nn.modules.activation" and kind.__name__ not in found:
            found.append(kind.__name__)
    return found


def _close(method: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`(B,)` True where the two `(B, ...)` maps are equal within `EQUAL_TOLERANCE` of the peak."""
    peak = reference.flatten(1).abs().amax(1)
    floor = max(EQUAL_TOLERANCE, torch.finfo(reference.dtype).eps)
    same = ((method - reference).flatten(1).abs().amax(1) <= floor * peak) & (peak > 0)
    return same  # a zero reference is reported as a zero map, not as an equality


class MapChecks:
    """Collects the flags chunk by chunk on the device; `warnings()` reads them all at once."""

    def __init__(
        self, methods: Sequence[str], layers: str | Mapping[str, str], model: nn.Module
    ) -> None:
        """`layers`: the layer of each layer method (gradcam, guided-gradcam), or one for all."""
        self.methods = tuple(methods)
        self.pairs = [(a, b) for a, b in EQUAL_PAIRS if a in self.methods and b in self.methods]
        self.layers = layers
        self.model = model
        self._flags: list[torch.Tensor] = []  # per chunk: (checks, b) booleans

    def add(self, maps: Mapping[str, torch.Tensor]) -> None:
        """Flag a chunk's `(b, C, H, W)` maps (every method of the chunk, same device)."""
        rows = [(maps[m] == 0).flatten(1).all(1) for m in self.methods]
        rows += [_close(maps[a], maps[b]) for a, b in self.pairs]
        self._flags.append(torch.stack(rows))

    def warnings(self) -> list[MapWarning]:
        """One `MapWarning` per check that any image failed, in method order."""
        if not self._flags:
            return []
        flags = torch.cat(self._flags, dim=1).cpu().tolist()  # the one host sync
        batch = len(flags[0])
        found: list[MapWarning] = []
        checks = [("zero", (m,)) for m in self.methods] + [("equal", p) for p in self.pairs]
        for (kind, methods), row in zip(checks, flags, strict=True):
            images = tuple(i for i, hit in enumerate(row) if hit)
            if images:
                reason = self._reason(kind, methods)
                found.append(MapWarning(kind, methods, images, batch, reason))  # type: ignore[arg-type]
        return found

    def _reason(self, kind: str, methods: tuple[str, ...]) -> str:
        method = methods[0]
        layer = self.layers if isinstance(self.layers, str) else self.layers.get(method, "")
        if kind == "equal":
            kinds = _activations(self.model)
            seen = f"; the model's activation modules: {', '.join(kinds)}" if kinds else ""
            return (
                f"(the {method} rule changed nothing: no activation on the gradient's path "
                f"rectified it, e.g. a model without activations{seen})"
            )
        if method == "gradcam":
            return (
                f"at layer {layer!r} (the layer's gradient or activation is zero there, or "
                "their channel-weighted sum is negative everywhere; try a later layer, e.g. a "
                "block's output)"
            )
        if method == "guided-gradcam":
            return (
                f"at layer {layer!r} (its Grad-CAM factor or its guided gradient is zero; "
                "if gradcam is zero too, try a later layer, e.g. a block's output)"
            )
        if layer and method not in _ZERO_CAUSES:  # the CAM family (`cams.py`)
            return (
                f"at layer {layer!r} (the channel-weighted activations are zero or negative at "
                "every position there; try a later layer, e.g. a block's output)"
            )
        return f"({_ZERO_CAUSES.get(method, _GRADIENT_CAUSE)})"


def join_warnings(parts: Iterable[Sequence[MapWarning]], sizes: Sequence[int]) -> list[MapWarning]:
    """The warnings of consecutive batches of `sizes` images, as if they were one batch.

    Image indices are shifted by the images before each batch, and the same finding (kind,
    methods, reason) from several batches becomes one warning.

    Example:
        >>> join_warnings([first.warnings, second.warnings], [8, 3])  # 11 images in all
    """
    total = sum(sizes)
    merged: dict[tuple[str, tuple[str, ...], str], list[int]] = {}
    offset = 0
    for warnings, size in zip(parts, sizes, strict=True):
        for w in warnings:
            merged.setdefault((w.kind, w.methods, w.reason), []).extend(
                i + offset for i in w.images
            )
        offset += size
    return [
        MapWarning(kind, methods, tuple(sorted(images)), total, reason)  # type: ignore[arg-type]
        for (kind, methods, reason), images in merged.items()
    ]
