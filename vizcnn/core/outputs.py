"""The tensor in what a module returns: one rule for every technique.

Models and layers return a tensor, a tuple or list (the first tensor in it counts), a named tuple
with `.logits` (torchvision's GoogLeNet and Inception in train mode), a dict
(torchvision's segmentation models: `"out"`; Hugging Face style: `"logits"`) or an object with a
`.logits` tensor. Techniques take the tensor this module finds, so every technique accepts or
refuses the same models.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vizcnn.core.errors import VizError

_KEYS = ("logits", "out")  # dict keys that name the main output, most specific first


def output_tensor(output: object) -> torch.Tensor | None:
    """The main tensor of a module's output, or None when it holds none.

    Example:
        >>> output_tensor(torchvision.models.googlenet(aux_logits=True).train()(x))  # .logits
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        for key in _KEYS:
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, torch.Tensor)), None)
    return None


def require_output_tensor(output: object, what: str = "the model") -> torch.Tensor:
    """`output_tensor`, or a one-line VizError naming what was returned instead."""
    found = output_tensor(output)
    if found is None:
        raise VizError(
            f"{what} returns {type(output).__name__}, which holds no tensor; wrap it to return "
            "a tensor of logits (B, K) or of maps (B, C, H, W)"
        )
    return found
