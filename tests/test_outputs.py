"""One rule for the tensor in a module's output (`vizcnn.core.outputs`)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from types import SimpleNamespace

import pytest
import torch

from vizcnn.core.errors import VizError
from vizcnn.core.outputs import output_tensor, require_output_tensor

X, Y = torch.zeros(2, 3), torch.ones(2, 5)
Named = namedtuple("Named", ["logits", "aux"])


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (X, X),
        ((X, Y), X),
        ([None, Y], Y),  # the first tensor, not the first item
        (Named(Y, X), Y),  # torchvision's GoogLeNetOutputs / InceptionOutputs
        (OrderedDict(out=X, aux=Y), X),  # torchvision's segmentation models
        ({"hidden": X, "logits": Y}, Y),  # Hugging Face style
        ({"a": "text", "b": Y}, Y),
        (SimpleNamespace(logits=Y), Y),
    ],
)
def test_the_main_tensor_is_found(output: object, expected: torch.Tensor) -> None:
    assert output_tensor(output) is expected
    assert require_output_tensor(output) is expected


@pytest.mark.parametrize("output", [None, "text", (), {"a": 1}, SimpleNamespace(x=1)])
def test_no_tensor_is_none_or_one_line(output: object) -> None:
    assert output_tensor(output) is None
    with pytest.raises(VizError, match="holds no tensor") as info:
        require_output_tensor(output)
    assert "\n" not in str(info.value)
