"""Field arithmetic per axis pair: (top, size, jump) through window ops, padding, layouts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Axis2:
    top: tuple[float, float]
    size: tuple[float, float]
    jump: tuple[float, float]
    is_global: bool = False
    context: bool = False  # a global branch (squeeze-excitation) was broadcast in and ignored
    dims: tuple[int, int] = (2, 3)  # tensor dims of rows and columns: (1, 2) after NCHW -> NHWC


IDENTITY = Axis2((0.0, 0.0), (1.0, 1.0), (1.0, 1.0))
GLOBAL = Axis2((0.0, 0.0), (math.inf, math.inf), (0.0, 0.0), True)


def pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[1])) if len(value) > 1 else (int(value[0]), int(value[0]))
    return int(value), int(value)


def window(
    field: Axis2, kernel: Any, stride: Any, pad_lead: tuple[int, int], dilation: Any = 1
) -> Axis2:
    if field.is_global:
        return field
    k, s, d = pair(kernel), pair(stride), pair(dilation)
    top, size, jump = [], [], []
    for axis in range(2):
        k_eff = d[axis] * (k[axis] - 1) + 1
        top.append(field.top[axis] - pad_lead[axis] * field.jump[axis])
        size.append(field.size[axis] + (k_eff - 1) * field.jump[axis])
        jump.append(field.jump[axis] * s[axis])
    return Axis2((top[0], top[1]), (size[0], size[1]), (jump[0], jump[1]), False, field.context)


def shift(field: Axis2, pad_top: int, pad_left: int) -> Axis2:
    if field.is_global:
        return field
    top = (field.top[0] - pad_top * field.jump[0], field.top[1] - pad_left * field.jump[1])
    return Axis2(top, field.size, field.jump, False, field.context)


def conv_padding(
    padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation, strict=True))  # type: ignore[return-value]
    return pair(padding)


def flatten_ints(values: list[Any]) -> list[int]:
    flat: list[int] = []
    for value in values:
        if isinstance(value, (tuple, list)):
            flat += flatten_ints(list(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            flat.append(value)
    return flat


def pair_or_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]
