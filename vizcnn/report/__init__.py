"""OpenAI-Microscope-style reports of your own model: `report_folder` writes the whole site.

Three floors, each named for what it does:

- `vizcnn.report` (this package): the entry points, `report_folder` and `ReportConfig`.
- `vizcnn.report.builder`: the builder, the one place besides the CLI that calls several
  techniques: `plan_report` checks the inputs and lists the artifacts with their cache keys,
  `build_report` computes the missing ones into an `ArtifactStore` (the report folder, kept with
  the run store's mechanism, `vizcnn.runs.store`) and writes the pages.
- `vizcnn.report.html`: presentation only, no technique: plain dataclasses in, HTML out.

Example:
    >>> from vizcnn import RenderConfig, load_model
    >>> from vizcnn.report import ReportConfig, report_folder
    >>> loaded = load_model("efficientnet_lite0")
    >>> run = report_folder(loaded, "site/", ReportConfig(render=RenderConfig(steps=64)))
"""

from vizcnn.report.builder.plan import Artifact, Plan, plan_report
from vizcnn.report.builder.stages import BuildResult, build_report
from vizcnn.report.builder.store import ArtifactStore, check_report_folder
from vizcnn.report.config import ReportConfig
from vizcnn.report.folder import ReportRun, report_folder

__all__ = [
    "Artifact",
    "ArtifactStore",
    "BuildResult",
    "Plan",
    "ReportConfig",
    "ReportRun",
    "build_report",
    "check_report_folder",
    "plan_report",
    "report_folder",
]
