"""The run store: is a result already in the folder, made with these settings?

Every file a run writes carries its provenance block (`vizcnn.io.provenance`: PNG text chunk or
the JSON's `provenance` key). Before any work, a run asks the store which of its results are
already there with the same defining settings (`differing_options`); those are kept, a missing
one is made, and one made with other settings stops the run in one line naming the differing
options, unless `overwrite` says to redo it. Result files are written atomically, one by one,
and the files that describe the whole run (a manifest, a contact sheet) last, so an interrupted
run leaves finished results that the next run keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vizcnn.core.errors import VizError
from vizcnn.io.resume import first_difference, stored_provenance


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
        if not paths or not all(path.is_file() for path in paths):
            continue
        differ = [
            (path, why)
            for path in paths
            if (why := first_difference(stored_provenance(path), wanted)) is not None
        ]
        if not differ:
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
