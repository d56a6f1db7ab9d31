"""One syntax for choosing channels, shared by every command: `0:64`, `0:64:2`, `0-15`, `3,17,40`."""

from __future__ import annotations

from vizcnn.core.errors import VizError

SYNTAX = "write START:STOP[:STEP], LOW-HIGH or a comma list, e.g. 0:64, 0-15 or 3,17"


def _int(text: str, whole: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise VizError(f"bad channels {whole!r}; {SYNTAX}") from None


def parse_channels(
    text: str | None, count: int | None, *, clip_slices: bool = False
) -> tuple[int, ...]:
    """Channel indices from a selection string, in the order given, without repeats.

    Parts are joined by commas: `START:STOP[:STEP]` (a Python slice; STOP may be left out),
    `LOW-HIGH` (both included) or a single index. None, "" and "all" select every channel.

    Args:
        text: the selection.
        count: the layer's channel count; None when not yet known (no range check).
        clip_slices: cut slices at `count` (so a default such as `0:64` suits any layer)
            instead of rejecting a STOP beyond it.

    Example:
        >>> parse_channels("0:4,9,12-13", 16)
        (0, 1, 2, 3, 9, 12, 13)
    """
    whole = (text or "").strip()
    if whole in ("", "all"):
        if count is None:
            raise VizError("'all channels' needs the layer's channel count")
        return tuple(range(count))
    found: list[int] = []
    for part in (p.strip() for p in whole.split(",")):
        if not part:
            continue
        if ":" in part:
            fields = part.split(":")
            if len(fields) > 3:
                raise VizError(f"bad channels {whole!r}; {SYNTAX}")
            start = _int(fields[0], whole) if fields[0].strip() else 0
            if fields[1].strip():
                stop = _int(fields[1], whole)
            elif count is not None:
                stop = count
            else:
                raise VizError(f"channels {part!r} need an end here; {SYNTAX}")
            step = _int(fields[2], whole) if len(fields) == 3 and fields[2].strip() else 1
            if step < 1:
                raise VizError(f"channel step in {part!r} must be at least 1")
            if count is not None and stop > count:
                if not clip_slices:
                    raise VizError(
                        f"channels {part} do not fit the layer's {count} channels; valid: 0..{count - 1}"
                    )
                stop = count
            indices = list(range(start, stop, step))
        elif "-" in part[1:]:
            low, _, high = part.partition("-")
            first, last = _int(low, whole), _int(high, whole)
            if last < first:
                raise VizError(f"channel range {part!r} runs backwards; write LOW-HIGH")
            indices = list(range(first, last + 1))
        else:
            indices = [_int(part, whole)]
        found.extend(c for c in indices if c not in found)
    if not found:
        valid = f"; the layer has 0..{count - 1}" if count is not None else ""
        raise VizError(f"channel selection {whole!r} selects no channel{valid}")
    bad = [c for c in found if c < 0 or (count is not None and c >= count)]
    if bad:
        valid = f"0..{count - 1}" if count is not None else "0 and above"
        raise VizError(f"channel {bad[0]} out of range; valid: {valid}")
    return tuple(found)
