"""The tensor in what a module returns: one rule for every technique.

The rule, in order:

1. a tensor is itself;
2. an object with a `.logits` tensor (a dataclass, Hugging Face's `ModelOutput`, a named tuple
   such as torchvision's `GoogLeNetOutputs` / `InceptionOutputs` in train mode) gives it;
3. a dict gives its `"logits"` or `"out"` entry (torchvision's segmentation models), else its one
   tensor value when it holds exactly one;
4. a tuple or list (a named tuple too) gives its first tensor;
5. anything else holds no tensor: `require_output_tensor` refuses it in one line naming the type.

Techniques take the tensor this module finds, so every technique accepts or refuses the same
models.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vizcnn.core.errors import VizError

_KEYS = ("logits", "out")  # dict keys that name the main output, most specific first


def output_tensor(output: object) -> torch.Tensor | None:
    """The main tensor of a module's output, or None when it holds none (see the module rule).

    Example:
        >>> output_tensor(torchvision.models.googlenet(aux_logits=True).train()(x))  # .logits
    """
    if isinstance(output, torch.Tensor):
        return output
    try:
        logits = getattr(output, "logits", None)
    except Exception:  # a ModelOutput-like __getattr__ raising KeyError for a missing field
        logits = None
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        for key in _KEYS:
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        tensors = [value for value in output.values() if isinstance(value, torch.Tensor)]
        return tensors[0] if len(tensors) == 1 else None
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, torch.Tensor)), None)
    return None


def require_output_tensor(output: object, what: str = "the model") -> torch.Tensor:
    """`output_tensor`, or a one-line VizError naming what was returned instead."""
    found = output_tensor(output)
    if found is None:
        held = ""
        if isinstance(output, Mapping):
            held = f" with keys {', '.join(map(str, list(output)[:6]))}"
        raise VizError(
            f"{what} returns {type(output).__name__}{held}, which holds no tensor vizcnn can "
            "pick (a tensor; .logits; a dict's 'logits' or 'out'; a tuple's first tensor); wrap "
            "it to return a tensor of logits (B, K) or of maps (B, C, H, W)"
        )
    return found
