"""Reading the arguments of an intercepted torch call (for `TorchFunctionMode` rewrites)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def call_argument(
    args: Sequence[Any], kwargs: Mapping[str, Any], position: int, name: str, default: Any
) -> Any:
    """A torch function's argument, given by position or by keyword (or `default` if absent).

    Example:
        >>> call_argument((x, w), {"padding": 1}, 4, "padding", 0)
        1
    """
    return args[position] if len(args) > position else kwargs.get(name, default)
