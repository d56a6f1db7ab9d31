"""OpenAI-Microscope-style reports of your own model: plan, compute and cache every picture.

The one place besides the CLI that calls several techniques: `plan_report` checks the inputs and
lists the artifacts with their cache keys, `build_report` computes the missing ones into an
`ArtifactStore` (the report folder) and writes the pages with `vizcnn.report`.

Example:
    >>> from vizcnn import load_model
    >>> from vizcnn.microscope import ArtifactStore, ReportConfig, build_report, plan_report
    >>> loaded = load_model("efficientnet_lite0")
    >>> plan = plan_report(loaded, ReportConfig(steps=64))
    >>> result = build_report(loaded, plan, ArtifactStore("site/"))
"""

from vizcnn.microscope.build import BuildResult, build_report
from vizcnn.microscope.config import ReportConfig
from vizcnn.microscope.plan import Artifact, Plan, plan_report
from vizcnn.microscope.store import ArtifactStore

__all__ = [
    "Artifact",
    "ArtifactStore",
    "BuildResult",
    "Plan",
    "ReportConfig",
    "build_report",
    "plan_report",
]
