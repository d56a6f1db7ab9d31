"""The one grammar for naming units: `LAYER[#k][:CHANNELS][@WEIGHT]`.

`render`, `dream`, `mine` and every later command, library and CLI, parse layer-and-channel text
with `parse_unit`. LAYER is a dotted `named_modules()` path (it may contain `.`, `_` and `#`,
never `:` or `@`); `#k` picks the k-th call of a module that runs more than once per pass;
CHANNELS is a `parse_channels` selection (`0:64`, `0:64:2`, `0-15`, `3,17`); WEIGHT a finite
number. So `_blocks.9:0:4` is layer `_blocks.9`, channels 0, 1, 2, 3, everywhere.

Example:
    >>> parse_unit("_blocks.9#1:0-3@2")
    UnitSpec(layer='_blocks.9', call=1, channels_text='0-3', weight=2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from vizcnn.core.channels import parse_channels
from vizcnn.core.errors import VizError

GRAMMAR = "LAYER[#k][:CHANNELS][@WEIGHT], e.g. _blocks.9, _blocks.9:0-15, _blocks.9#1:3,7@2"

# The channels a command takes when a unit names a layer but no channels (render, mine): the
# first 16 (or all, in a smaller layer). Dream is the exception: it amplifies a whole layer.
DEFAULT_CHANNELS = "0:16"


@dataclass(frozen=True)
class UnitSpec:
    """A parsed `LAYER[#k][:CHANNELS][@WEIGHT]`."""

    layer: str  # dotted module path, without the call index
    call: int = 0  # which call of the module in one forward pass (0 = the first)
    channels_text: str | None = None  # the CHANNELS part as written; None when absent
    weight: float = 1.0  # multiplier of the unit's objective

    @property
    def layer_spec(self) -> str:
        """The layer as `capture` names it: `name`, or `name#k` for a later call."""
        return self.layer if self.call == 0 else f"{self.layer}#{self.call}"

    def channels(
        self, count: int | None, default: str | None = DEFAULT_CHANNELS
    ) -> tuple[int, ...] | None:
        """The selected channel indices, checked against the layer's `count` channels.

        Args:
            count: the layer's channel count (None: not known yet, no range check).
            default: the selection when the spec names none (slices are clipped to `count`);
                None keeps "no selection" as None (dream: the whole layer).

        Example:
            >>> parse_unit("_blocks.9:0:4").channels(112)
            (0, 1, 2, 3)
        """
        if self.channels_text is None and default is None:
            return None
        try:
            if self.channels_text is None:
                return parse_channels(default, count, clip_slices=True)
            return parse_channels(self.channels_text, count)
        except VizError as exc:  # say which layer: a command may take several
            raise VizError(f"layer {self.layer_spec!r}: {exc}") from None

    @property
    def spec(self) -> str:
        """Back to the text form (`parse_unit(u.spec) == u`)."""
        text = self.layer_spec
        if self.channels_text is not None:
            text += f":{self.channels_text}"
        if self.weight != 1.0:
            text += f"@{self.weight:g}"
        return text


def parse_unit(spec: str | UnitSpec) -> UnitSpec:
    """Parse `LAYER[#k][:CHANNELS][@WEIGHT]` into a `UnitSpec` (channels checked for syntax).

    Raises:
        VizError: one line naming the bad part and the grammar.

    Example:
        >>> parse_unit("features.8:0:64:2").channels(256)[:3]
        (0, 2, 4)
    """
    if isinstance(spec, UnitSpec):
        return spec
    text = str(spec).strip()
    head, at, tail = text.partition("@")
    weight = 1.0
    if at:
        if "@" in tail:
            raise VizError(f"unit {spec!r} has more than one @WEIGHT; write {GRAMMAR}")
        try:
            weight = float(tail)
        except ValueError:
            raise VizError(f"bad weight {tail!r} in unit {spec!r}; write {GRAMMAR}") from None
        if not math.isfinite(weight):
            raise VizError(f"weight in unit {spec!r} must be a finite number, got {tail!r}")
    layer_text, colon, channels_text = head.partition(":")
    layer_text = layer_text.strip()
    name, hash_, call_text = layer_text.partition("#")
    if not name:
        raise VizError(f"no layer name in unit {spec!r}; write {GRAMMAR}")
    call = 0
    if hash_:
        if not call_text.isdigit():
            raise VizError(
                f"bad call index {call_text!r} in unit {spec!r}; write LAYER#k with k = 0, 1, 2, ..."
            )
        call = int(call_text)
    channels: str | None = None
    if colon:
        channels = channels_text.strip()
        if not channels:
            raise VizError(f"empty channel list after ':' in unit {spec!r}; write {GRAMMAR}")
    unit = UnitSpec(name, call, channels, weight)
    if channels is not None and is_closed(unit):  # syntax errors now, ranges once known
        parse_channels(channels, None)
    return unit


def is_closed(unit: UnitSpec) -> bool:
    """Whether the unit's channels are known without the layer's channel count.

    False for no channels (a default or the whole layer), `all` and open slices (`8:`).
    """
    text = unit.channels_text
    if text is None or text.strip() == "all":
        return False
    parts = [part.split(":") for part in text.split(",")]
    return not any(len(fields) > 1 and not fields[1].strip() for fields in parts)


def resolve_unit(
    spec: str | UnitSpec,
    count: Callable[[str], int],
    *,
    channels: str | None = None,
    all_channels: bool = False,
) -> tuple[str, tuple[int, ...]]:
    """The layer and channels a command line asks for: `-l SPEC` plus `--channels` / `--all`.

    Args:
        spec: `LAYER[#k][:CHANNELS]`.
        count: the channel count of a layer spec (one probe pass; called once).
        channels: a `--channels` selection (not together with channels in `spec`).
        all_channels: every channel (`--all`).

    Returns:
        `(layer spec, channel indices)`; no selection anywhere gives `DEFAULT_CHANNELS`.

    Example:
        >>> resolve_unit("_blocks.9:0-3", lambda layer: 112)
        ('_blocks.9', (0, 1, 2, 3))
    """
    unit = parse_unit(spec)
    given = [unit.channels_text is not None, channels is not None, all_channels]
    if sum(given) > 1:
        raise VizError(
            f"choose channels one way: {unit.layer_spec}:CHANNELS, channels= or all_channels=True, "
            "not several"
        )
    layer = unit.layer_spec
    if channels is not None:
        unit = UnitSpec(unit.layer, unit.call, channels, unit.weight)
    elif all_channels:
        unit = UnitSpec(unit.layer, unit.call, "all", unit.weight)
    return layer, unit.channels(count(layer)) or ()
