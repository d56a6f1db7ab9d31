"""Resuming a run: is a file already there made with this run's settings?

A result file carries its provenance block (`vizcnn.io.provenance`) in a `provenance` PNG text
chunk; a resumed run reuses it only if `differing_options` finds nothing, else it names the
first difference in a one-line error (or re-makes the file when asked to).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vizcnn.io.imaging import read_png_metadata
from vizcnn.io.provenance import differing_options


def stored_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance block of a result file ({} when absent or unreadable).

    A PNG keeps it in its `provenance` text chunk; a JSON file (manifest, results, sidecar) under
    its top-level `"provenance"` key, the one layout every command writes.
    """
    try:
        if Path(path).suffix.lower() == ".json":
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            block = data.get("provenance", {}) if isinstance(data, dict) else {}
        else:
            block = json.loads(read_png_metadata(path).get("provenance", "{}"))
    except (OSError, ValueError):
        return {}
    return block if isinstance(block, dict) else {}


def _value(block: Mapping[str, Any], key: str) -> Any:
    if key.startswith("options."):
        return (block.get("options") or {}).get(key.removeprefix("options."))
    return block.get(key)


def first_difference(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """The settings in which two blocks differ, as `steps 6 in the file, 8 now`; or None.

    Up to three differences are named, `; `-separated (one changed option can change others:
    `--param` also changes the recipe's lr, and the option the user touched must be among those
    named), then `and N more`.

    Example:
        >>> first_difference({"seed": 0}, {"seed": 1})
        'seed 0 in the file, 1 now'
    """
    keys = differing_options(stored, wanted)
    if not keys:
        return None
    parts = []
    for key in keys[:3]:
        name = key.removeprefix("options.")
        if (
            key == "weights_digest"
        ):  # what the user changes is the weights, or the seed of random ones
            name = "the network's weights (weights=..., or seed=... with weights='none'):"
        parts.append(f"{name} {_value(stored, key)} in the file, {_value(wanted, key)} now")
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return "; ".join(parts) + more
