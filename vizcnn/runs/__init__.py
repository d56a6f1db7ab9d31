"""Runs: a technique's result folder — files, provenance, resume, one run at a time.

Each command of the CLI is one call here plus formatting: `render_folder` writes what
`vizcnn render` writes, byte for byte but for timestamps; `mine_folder` what `vizcnn mine`
writes. The store (`plan_results`) decides
what is already done; `folder_lock` keeps a second run out of a folder in use.
"""

from vizcnn.runs.lock import folder_lock
from vizcnn.runs.mine import MineInterrupted, MineRun, mine_folder
from vizcnn.runs.render import (
    RenderRun,
    RenderUnit,
    channel_units,
    class_units,
    layer_unit,
    render_folder,
    render_units,
)
from vizcnn.runs.store import StorePlan, check_finished_run, plan_results

__all__ = [
    "MineInterrupted",
    "MineRun",
    "RenderRun",
    "RenderUnit",
    "StorePlan",
    "channel_units",
    "check_finished_run",
    "class_units",
    "folder_lock",
    "layer_unit",
    "mine_folder",
    "plan_results",
    "render_folder",
    "render_units",
]
