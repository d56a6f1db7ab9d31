"""Runs: a technique's result folder — files, provenance, resume, one run at a time.

Each command of the CLI is one call here plus formatting: `render_folder` writes what
`vizcnn render` writes, `dream_file` what `vizcnn dream` writes, byte for byte but for
timestamps. The store (`plan_results`) decides what is already done; `folder_lock` (and
`file_lock` for a single output file) keeps a second run out of an output in use.
"""

from vizcnn.runs.dream import DreamOutput, DreamRun, dream_file, dream_output
from vizcnn.runs.lock import file_lock, folder_lock
from vizcnn.runs.render import (
    RenderRun,
    RenderUnit,
    channel_units,
    class_units,
    layer_unit,
    render_folder,
    render_units,
)
from vizcnn.runs.store import StorePlan, plan_results

__all__ = [
    "DreamOutput",
    "DreamRun",
    "dream_file",
    "dream_output",
    "file_lock",
    "RenderRun",
    "RenderUnit",
    "StorePlan",
    "channel_units",
    "class_units",
    "folder_lock",
    "layer_unit",
    "plan_results",
    "render_folder",
    "render_units",
]
