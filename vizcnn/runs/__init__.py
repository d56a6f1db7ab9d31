"""Runs: a technique's result folder — files, provenance, resume, one run at a time.

Each command of the CLI is one call here plus formatting: `render_folder` writes what
`vizcnn render` writes, byte for byte but for timestamps; `attribute_folder`, `mine_folder` and
the others what their commands write. The store (`plan_results`) decides
what is already done; `folder_lock` keeps a second run out of a folder in use.
"""

from vizcnn.runs.ablate import (
    AblationRun,
    LesionRun,
    ablate_folder,
    experiment_config,
    lesion_folder,
)
from vizcnn.runs.attribute import (
    AttributeRun,
    DeletionConfig,
    SanityConfig,
    attribute_folder,
)
from vizcnn.runs.equivariance import EquivarianceRun, equivariance_folder
from vizcnn.runs.features import (
    FeatureMapsRun,
    FiltersRun,
    KernelsRun,
    featuremaps_folder,
    filters_file,
    kernels_file,
)
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.mine import MineInterrupted, MineRun, mine_folder
from vizcnn.runs.neighbors import NeighborsRun, neighbors_file
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
    "AblationRun",
    "EquivarianceRun",
    "FeatureMapsRun",
    "FiltersRun",
    "KernelsRun",
    "LesionRun",
    "NeighborsRun",
    "ablate_folder",
    "equivariance_folder",
    "experiment_config",
    "featuremaps_folder",
    "filters_file",
    "kernels_file",
    "lesion_folder",
    "neighbors_file",
    "AttributeRun",
    "DeletionConfig",
    "SanityConfig",
    "attribute_folder",
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
