"""`report_folder`: a whole report written to a folder, as `vizcnn report` writes it.

Plan (every input checked, nothing written), then, holding the folder's run lock, compute the
artifacts the folder lacks, write the pages and prune what this report no longer shows. A second
call with the same settings reuses every artifact; a changed option recomputes exactly the
artifacts it shapes (the run store compares their settings digests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.models.preflight import preflight
from vizcnn.report.builder.plan import Plan, plan_report
from vizcnn.report.builder.stages import STAGE_TITLES, StageFactory, build_report
from vizcnn.report.builder.store import ArtifactStore, check_report_folder
from vizcnn.report.config import ReportConfig
from vizcnn.report.html.site import Site
from vizcnn.runs.lock import folder_lock

__all__ = ["ReportRun", "report_folder"]


@dataclass
class ReportRun:
    """What `report_folder` did: the pages, which artifacts were computed or reused, timings."""

    folder: Path
    site: Site  # what the pages show
    plan: Plan  # the checked inputs and every artifact with its key
    pages: list[str]  # file names of the pages written (`index.html` first)
    pictures: int  # PNGs the pages show
    computed: list[str] = field(default_factory=list)  # artifact folders made by this call
    reused: list[str] = field(default_factory=list)  # artifact folders found done
    removed: list[str] = field(default_factory=list)  # stale artifacts and pages deleted
    stage_seconds: dict[str, float] = field(default_factory=dict)  # per stage that ran
    seconds: float = 0.0  # the whole call


def _titled(progress: ProgressCallback) -> StageFactory:
    """Stages reported through one callback, each message prefixed by its stage's title."""

    @contextmanager
    def stage(title: str, unit: str) -> Iterator[ProgressCallback]:
        def report(done: int, total: int, message: str) -> None:
            progress(done, total, f"{title}: {message}")

        yield report

    return stage


def report_folder(
    model: ModelLike,
    folder: str | Path,
    config: ReportConfig | None = None,
    *,
    seed: int = 0,
    allow_nonempty: bool = False,
    progress: ProgressCallback = no_progress,
    stages: StageFactory | None = None,
    command: str | None = None,
    run: RunOptions | None = None,
) -> ReportRun:
    """Write a static HTML report of `model` into `folder`: pages, and the artifacts they show.

    Every input is checked before anything is written (an unknown layer, an unreadable image,
    an empty data folder: one-line VizError). The folder keeps each artifact under
    `artifacts/` with its settings digest: a second call reuses everything, a changed option
    recomputes exactly the artifacts it shapes, and artifacts and pages no longer shown are
    removed. A second run on the same folder at the same time is refused (`folder_lock`).

    Args:
        model: a `LoadedModel` (on the device to compute on) or a bare `nn.Module`.
        folder: the site folder (created if missing); open `folder/index.html`.
        config: what the report shows and how hard each picture is worked.
        seed: renders, dreams, SmoothGrad noise and the samples' crops (an int: it is part of
            the artifacts' keys, so the same seed reuses them).
        allow_nonempty: write into a non-empty folder that no report made (its other files
            are kept); without it such a folder is refused.
        progress: `progress(done, total, message)` per stage, messages prefixed by the stage's
            title (`checking inputs: ...`, `renders: ...`).
        stages: instead of `progress`, `stages(title, unit)` gives a context manager yielding
            each stage's callback (one progress bar per stage).
        command: the command line shown in the pages' footer (default: this process's).
        run: how it runs (`RunOptions`): `amp` the precision of renders and dreams (recorded
            in their artifacts' settings), `batch` images per forward pass while mining (None:
            32).

    Example:
        >>> run = report_folder(loaded, "site/", ReportConfig(render=RenderConfig(steps=64)))
        >>> run.pages[0], len(run.computed)
        ('index.html', 23)
    """
    started = time.perf_counter()
    config = config or ReportConfig()
    loaded = as_loaded(model)
    preflight(loaded, output=True)
    target = Path(folder)
    stage = stages or _titled(progress)
    check_report_folder(target, allow_nonempty=allow_nonempty)  # before the long checks
    with stage(STAGE_TITLES["plan"], "step") as planning:
        plan = plan_report(loaded, config, seed=seed, progress=planning, run=run)
    with folder_lock(target):
        store = ArtifactStore(target, allow_nonempty=allow_nonempty)
        built = build_report(loaded, plan, store, stage=stage, command=command)
    return ReportRun(
        folder=target,
        site=built.site,
        plan=plan,
        pages=built.pages,
        pictures=built.pictures,
        computed=built.computed,
        reused=built.reused,
        removed=built.removed,
        stage_seconds=built.seconds,
        seconds=time.perf_counter() - started,
    )
