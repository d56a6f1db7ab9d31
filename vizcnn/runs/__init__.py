"""Runs: a technique's result folder — files, provenance, resume, one run at a time.

Each command of the CLI is one call here plus formatting, writing what the command writes, byte
for byte but for timestamps: `render_folder` (`vizcnn render`), `accentuate_files`, `dream_file`, `mine_folder`,
`attribute_folder`, `filters_file`, `featuremaps_folder`, `kernels_file`, `neighbors_file`, `probe_folder`, `concepts_folder`,
`equivariance_folder`, `ablate_folder` / `lesion_folder` (the report's is
`vizcnn.report.report_folder`). The store (`plan_results`) decides what is already done;
`folder_lock` (and `file_lock` for a single output file) keeps a second run out of an output in
use.
"""

from vizcnn.runs.ablate import (
    AblationRun,
    LesionRun,
    ablate_folder,
    experiment_config,
    lesion_folder,
)
from vizcnn.runs.accentuate import AccentuateRun, accentuate_files
from vizcnn.runs.attribute import (
    AttributeRun,
    DeletionConfig,
    SanityConfig,
    attribute_folder,
)
from vizcnn.runs.concepts import ConceptsRun, concepts_folder
from vizcnn.runs.digits import DigitsRun, digits_weights_file
from vizcnn.runs.dream import DreamOutput, DreamRun, dream_file, dream_output
from vizcnn.runs.equivariance import EquivarianceRun, equivariance_folder
from vizcnn.runs.features import (
    FeatureMapsRun,
    FiltersRun,
    KernelsRun,
    featuremaps_folder,
    filters_file,
    kernels_file,
)
from vizcnn.runs.lock import file_lock, folder_lock
from vizcnn.runs.mine import MineInterrupted, MineRun, mine_folder
from vizcnn.runs.neighbors import NeighborsRun, neighbors_file
from vizcnn.runs.probe import ProbeRun, probe_folder
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
    "AccentuateRun",
    "accentuate_files",
    "ConceptsRun",
    "concepts_folder",
    "DigitsRun",
    "digits_weights_file",
    "DreamOutput",
    "DreamRun",
    "dream_file",
    "dream_output",
    "file_lock",
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
    "ProbeRun",
    "probe_folder",
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
