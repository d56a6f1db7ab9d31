"""The run store: is a result already in the folder, made with these settings?

Every file a run writes carries its provenance block (`vizcnn.io.provenance`: PNG text chunk or
the JSON's `provenance` key). Before any work, a run asks the store which of its results are
already there with the same defining settings (`differing_options`); those are kept, a missing
one is made, and one made with other settings stops the run in one line naming the differing
options, unless `overwrite` says to redo it. Result files are written atomically, one by one,
and the files that describe the whole run (a manifest, a contact sheet) last, so an interrupted
run leaves finished results that the next run keeps.

A result whose recipe is only known once it is made (a report's artifact: its block records the
techniques' resolved options) is identified before work by `settings_block`: the settings that
shape it and their digest (`settings_digest`, also the report's cache key), which the result's
block carries; `write_result` writes its files first and the meta file holding that block last,
so a result counts as done only when all its files are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, save_json, save_png
from vizcnn.io.provenance import provenance
from vizcnn.io.resume import first_difference, stored_provenance
from vizcnn.models.base import LoadedModel

SETTINGS = "settings"  # block key: the settings that shape a result (JSON-ready)
SETTINGS_DIGEST = "settings_digest"  # block key: their digest

FileData = torch.Tensor | Image.Image | bytes  # a result file: a picture, or bytes as they are


@dataclass
class StorePlan:
    """What a run has left to do: results already there, and how many will be redone."""

    done: set[int] = field(default_factory=set)  # positions whose files hold these settings
    replaced: int = 0  # positions whose files were made with other settings (overwrite=True)


def plan_results(
    results: Sequence[tuple[Sequence[Path], Mapping[str, Any]]], *, overwrite: bool = False
) -> StorePlan:
    """Which results are done: `results[i]` = (its files, the provenance block it would get).

    A result is done when all its files exist and each holds the block's defining settings; a
    result with some files made otherwise is redone with `overwrite`, else a VizError names the
    file and up to three differing settings, before any work.
    """
    plan = StorePlan()
    for position, (paths, wanted) in enumerate(results):
        present = [path for path in paths if path.is_file()]
        if not present:
            continue
        # every file there is checked, also when some are missing: a result whose other files
        # were made with other settings is not silently redone
        differ = [
            (path, why)
            for path in present
            if (why := result_difference(stored_provenance(path), wanted)) is not None
        ]
        if not differ:
            if len(present) == len(paths):
                plan.done.add(position)
            continue
        if not overwrite:
            path, why = differ[0]
            raise VizError(
                f"{path} was made with other settings ({why}); pass overwrite=True to redo it, "
                "or write to another folder"
            )
        plan.replaced += 1
    return plan


def _write_bytes(path: Path, content: bytes) -> None:
    atomic_write(path, lambda file: file.write(content))


def settings_digest(settings: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the settings that shape a result, as canonical JSON (sorted keys).

    Example:
        >>> settings_digest({"steps": 8}) == settings_digest({"steps": 8})
        True
    """
    text = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def settings_block(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a result made from `settings` is compared by: the settings and their digest.

    Add it to the result's provenance block (`{**block, **settings_block(s)}`) when writing, and
    pass it as the wanted block to `plan_results` before work.
    """
    plain = json.loads(json.dumps(dict(settings), default=str))
    return {SETTINGS: plain, SETTINGS_DIGEST: settings_digest(settings)}


def result_difference(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """How a stored result's block differs from the wanted one (None: the same result).

    A wanted block with a settings digest (`settings_block`) is compared by that digest, and a
    difference is named by its settings; any other block by its defining settings
    (`vizcnn.io.resume.first_difference`).
    """
    if SETTINGS_DIGEST not in wanted:
        return first_difference(stored, wanted)
    if stored.get(SETTINGS_DIGEST) == wanted[SETTINGS_DIGEST]:
        return None
    old, new = stored.get(SETTINGS), wanted.get(SETTINGS)
    if isinstance(old, dict) and isinstance(new, dict):
        named = first_difference({"options": old}, {"options": new})
        if named is not None:
            return named
    return f"{SETTINGS_DIGEST} {stored.get(SETTINGS_DIGEST)} in the file, {wanted[SETTINGS_DIGEST]} now"


def write_result(
    folder: str | Path,
    files: Mapping[str, FileData],
    meta: Mapping[str, Any],
    *,
    meta_name: str = "meta.json",
) -> Path:
    """Write a result's files into `folder`, then its meta file last; returns the meta's path.

    Each file is written atomically: pictures as PNGs carrying `meta["provenance"]` in a text
    chunk, bytes as they are; the meta (JSON, with the `provenance` block that `plan_results`
    reads) is written after all of them, so a result whose meta exists is complete.
    """
    folder = Path(folder)
    block = meta.get("provenance")
    for name, content in files.items():
        if isinstance(content, bytes):
            _write_bytes(folder / name, content)
        else:
            save_png(content, folder / name, {"provenance": block} if block is not None else None)
    return save_json(dict(meta), folder / meta_name)


def check_finished_run(manifest: Path, wanted: Mapping[str, Any]) -> None:
    """Refuse, in one line, a folder whose `manifest` (a run's last file) is already there.

    For runs whose results are one whole (a mine folder's grids all come from one pass over
    the data): the message names up to three settings in which the finished run differs from
    `wanted` (its provenance block), or says it has these settings. A caller that was asked to
    continue or redo the run (`resume=True`, `overwrite=True`) does not call this.
    """
    if not manifest.is_file():
        return
    folder = manifest.parent
    why = first_difference(stored_provenance(manifest), wanted)
    if why is None:
        raise VizError(
            f"{folder}/ already holds a finished run with these settings ({manifest.name}); "
            "pass overwrite=True to redo it, or write to another folder"
        )
    raise VizError(
        f"{folder}/ already holds a finished run made with other settings ({why}); "
        "pass overwrite=True to replace it, or write to another folder"
    )


def model_block(
    technique: str,
    loaded: LoadedModel | None,
    options: Mapping[str, Any],
    *,
    data: str | None = None,
    seed: int | str | None = None,
    device: torch.device | str | None = None,
    seconds: float | None = None,
    command: list[str] | None = None,
    weights_digest: str | None = None,
) -> dict[str, Any]:
    """The provenance block of a result made with `loaded` (None: no model involved).

    Every run writes its files with this block: the model's name, weights, normalization, dtype
    and device come from `loaded`; `weights_digest` given (the report hashes the weights once
    per plan) saves hashing them again.
    """
    block = provenance(
        technique=technique,
        model_name=loaded.name if loaded is not None else "",
        weights=loaded.weights if loaded is not None else "",
        module=loaded.module if loaded is not None and weights_digest is None else None,
        normalization=loaded.normalization if loaded is not None else None,
        options=options,
        data=data,
        seed=seed,
        device=device if device is not None else (loaded.device if loaded else None),
        dtype=loaded.dtype if loaded is not None else None,
        seconds=seconds,
        command=command,
    )
    if weights_digest is not None:
        block["weights_digest"] = weights_digest
    return block
