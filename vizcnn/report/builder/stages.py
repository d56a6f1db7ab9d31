"""Build a report: compute the artifacts a plan lists that the store lacks, then the pages.

Stages run in a fixed order (model card, renders, the data pass, class votes, accentuations, concepts, dreams,
attribution maps, ablation, pages); each artifact is written to the store as soon as it is done,
so an interrupted build loses at most the artifact it was working on. The data pass mines every
layer that lacks its top patches or statistics in one pass over the data (`data_pass`), takes
from the same forwards the sample of positions of every concepts page the store lacks (the
concepts stage factorizes it: no pass of its own), then cuts each layer's patches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from vizcnn.core.progress import ProgressCallback, no_progress, scaled_progress
from vizcnn.mining.reservoir import PositionSample
from vizcnn.models.base import LoadedModel
from vizcnn.report.builder import compute
from vizcnn.report.builder.ablation import make_ablation
from vizcnn.report.builder.assemble import assemble_site
from vizcnn.report.builder.plan import Artifact, Plan
from vizcnn.report.builder.store import ArtifactStore
from vizcnn.report.html.links import broken_links
from vizcnn.report.html.pages import render_pages
from vizcnn.report.html.site import Site
from vizcnn.runs.store import model_block

# (stage title, units of its bar) -> a context manager giving the stage's progress callback
StageFactory = Callable[[str, str], AbstractContextManager[ProgressCallback]]

# what each stage is called in progress messages ("plan" is `report_folder`'s input checks)
STAGE_TITLES = {
    "plan": "checking inputs",
    "model": "model card",
    "render": "renders",
    "data": "data pass",
    "votes": "class votes",
    "accent": "accentuations",
    "concepts": "concepts",
    "dream": "dreams",
    "attribute": "attribution maps",
    "ablation": "ablation",
}

STAGES = (
    ("model", ("layers", "filters")),
    ("render", ("render",)),
    ("data", ("mine", "stats")),
    ("votes", ("votes",)),
    ("accent", ("accent",)),
    ("concepts", ("concepts",)),
    ("dream", ("dream",)),
    ("attribute", ("attribution",)),
    ("ablation", ("ablation",)),
)
_IN_BLOCK = {"model", "weights_digest", "dtype", "seed"}  # keys the block has at its top level
_SEEDED = {
    "render",
    "mine",
    "stats",
    "votes",
    "dream",
    "attribution",
}  # kinds whose result uses the seed


@contextmanager
def no_stages(name: str, unit: str) -> Iterator[ProgressCallback]:
    yield no_progress


@dataclass
class BuildResult:
    """What a build did: the site, its pages, which artifacts were computed or reused, timings."""

    site: Site
    pages: list[str]  # file names of the pages written
    computed: list[str] = field(default_factory=list)  # artifact folders made by this build
    reused: list[str] = field(default_factory=list)  # artifact folders found done
    removed: list[str] = field(default_factory=list)  # stale artifacts and pages deleted
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    pictures: int = 0  # PNGs the pages show


def _block(
    loaded: LoadedModel,
    plan: Plan,
    artifact: Artifact,
    made: compute.Made,
    seconds: float,
) -> dict[str, object]:
    block = model_block(
        f"report:{artifact.kind}",
        loaded,
        {k: v for k, v in made.options.items() if k not in _IN_BLOCK},
        data=made.data_name,
        seed=plan.seed if artifact.kind in _SEEDED else None,
        seconds=seconds,
        weights_digest=plan.weights_digest,  # the plan hashed the weights once
    )
    return block


def build_report(
    loaded: LoadedModel,
    plan: Plan,
    store: ArtifactStore,
    *,
    stage: StageFactory = no_stages,
    command: str | None = None,
) -> BuildResult:
    """Compute what `store` lacks of `plan`, then write the pages; returns what was done.

    Args:
        loaded: the model the plan was made for (on the device to compute on).
        plan: from `plan_report`.
        store: the report folder (`ArtifactStore`); the build writes only through it.
        stage: `stage(title, unit)` gives a context manager yielding the stage's progress
            callback (the CLI draws one bar per stage; titles: `STAGE_TITLES`); default: none.
        command: the command line shown in the pages' footer (default: this process's).

    Example:
        >>> plan = plan_report(loaded, ReportConfig(render=RenderConfig(steps=64)))
        >>> result = build_report(loaded, plan, ArtifactStore("site/"))
        >>> result.pages[0]
        'index.html'
    """
    store.claim(store.owned_pages())
    result_seconds: dict[str, float] = {}
    reused_before = len(store.reused)
    done = store.done(plan.artifacts)  # asked once, before any work
    # the concepts pages to make sample their layers in the data pass (even when every mined
    # layer is done), and the concepts stage factorizes those samples: no pass of their own
    sampled = [a for i, a in enumerate(plan.artifacts) if a.kind == "concepts" and i not in done]
    samples = _Samples()
    for name, kinds in STAGES:
        todo = [(i, a) for i, a in enumerate(plan.artifacts) if a.kind in kinds]
        store.reused += [a.folder for i, a in todo if i in done]
        missing = [a for i, a in todo if i not in done]
        if not missing and not (name == "data" and sampled):
            continue
        started = time.perf_counter()
        with stage(STAGE_TITLES[name], "%") as progress:
            if name == "data":
                samples = _data_stage(loaded, plan, store, missing, sampled, progress)
            else:
                _run_stage(loaded, plan, store, missing, progress, samples)
        result_seconds[name] = time.perf_counter() - started
    started = time.perf_counter()
    site = assemble_site(loaded, plan, store, command)
    pages = render_pages(site, self_contained=plan.config.self_contained, root=store.root)
    for page, html in pages.items():
        store.write_page(page, html)
    removed = store.prune(plan.artifacts, pages)
    store.claim(pages)
    broken = broken_links(store.root)
    if broken:  # a bug here, not the user's doing: say exactly what
        raise RuntimeError("the report has broken links: " + "; ".join(broken[:5]))
    result_seconds["pages"] = time.perf_counter() - started
    return BuildResult(
        site=site,
        pages=list(pages),
        computed=list(store.computed),
        reused=store.reused[reused_before:],
        removed=removed,
        seconds=result_seconds,
        pictures=_count_pictures(site),
    )


@dataclass
class _Samples:
    """The data pass's samples of the concepts layers, kept for the concepts stage."""

    by_layer: dict[str, PositionSample] = field(default_factory=dict)
    seconds: float = 0.0  # each concepts artifact's share of the pass's time


def _run_stage(
    loaded: LoadedModel,
    plan: Plan,
    store: ArtifactStore,
    missing: list[Artifact],
    progress: ProgressCallback,
    samples: _Samples,
) -> None:
    count = len(missing)
    images = {image.name: image for image in plan.images}
    for position, artifact in enumerate(missing):
        report = scaled_progress(progress, position, count, artifact.name)
        started = time.perf_counter()
        kind = artifact.kind
        if kind == "layers":
            item = compute.make_layers(loaded, artifact, report)
        elif kind == "filters":
            item = compute.make_filters(loaded, artifact, report)
        elif kind == "render":
            item = compute.make_render(loaded, artifact, plan, report)
        elif kind == "votes":
            item = compute.make_votes(loaded, artifact, plan, report)
        elif kind == "accent":
            item = compute.make_accent(loaded, artifact, plan, _hits(store, plan, artifact), report)
        elif kind == "concepts":
            sample = samples.by_layer[str(artifact.params["concept_layer"])]
            item = compute.make_concepts(loaded, artifact, plan, report, sample)
            started -= samples.seconds  # its share of the data pass
        elif kind == "dream":
            item = compute.make_dream(
                loaded, artifact, images[artifact.name], report, plan.run, plan.config.dream
            )
        elif kind == "attribution":
            item = compute.make_attribution(loaded, artifact, images[artifact.name], report)
        elif kind == "ablation":
            item = make_ablation(artifact, report)
        else:  # pragma: no cover - KINDS and this dispatch change together
            raise ValueError(f"unknown artifact kind {kind!r}")
        seconds = time.perf_counter() - started
        block = _block(loaded, plan, artifact, item, seconds)
        store.write(artifact, item.files, block, item.data)
        if loaded.device.type == "cuda":
            torch.cuda.empty_cache()


def _hits(store: ArtifactStore, plan: Plan, artifact: Artifact) -> dict[str, Any]:
    """The top patches of `artifact`'s layer, as its mine artifact stored them (done before)."""
    mine = next(a for a in plan.artifacts if a.kind == "mine" and a.name == artifact.name)
    hits = (store.meta(mine) or {}).get("data", {}).get("hits", {})
    return hits if isinstance(hits, dict) else {}


def _data_stage(
    loaded: LoadedModel,
    plan: Plan,
    store: ArtifactStore,
    missing: list[Artifact],
    sampled: list[Artifact],
    progress: ProgressCallback,
) -> _Samples:
    """Every missing layer's top-k, means and histograms, and the samples of positions of the
    concepts pages to make, in one pass over the data; then each mined layer's patches. Each
    mine and stats artifact is written as soon as it is done; the samples are returned."""
    patches = [a for a in missing if a.kind == "mine"]
    parts = 1 + len(patches)
    started = time.perf_counter()
    found = compute.mine_data(
        loaded, missing, plan, scaled_progress(progress, 0, parts, "pass"), sampled
    )
    mined = found.mined
    # the pass's time, shared
    share = (time.perf_counter() - started) / (len(missing) + len(sampled))
    for artifact in missing:
        if artifact.kind == "stats":
            item = compute.make_stats(artifact, mined[artifact.name])
            store.write(
                artifact, item.files, _block(loaded, plan, artifact, item, share), item.data
            )
    for position, artifact in enumerate(patches, start=1):
        started = time.perf_counter()
        report = scaled_progress(progress, position, parts, artifact.name)
        item = compute.make_mine(loaded, artifact, plan, report, mined[artifact.name].top)
        seconds = share + time.perf_counter() - started
        store.write(artifact, item.files, _block(loaded, plan, artifact, item, seconds), item.data)
    return _Samples(found.samples, share)


def _count_pictures(site: Site) -> int:
    count = 1 if site.card.filters is not None else 0
    for layer in site.layers:
        count += sum(
            (u.render is not None)
            + (u.patches is not None)
            + len(u.diversity)
            + len(u.accentuations)
            for u in layer.units
        )
    for image in site.images:
        count += 1 + (image.dream is not None) + len(image.attributions)
    for page in site.concepts:
        count += sum(
            (c.render is not None) + (c.patches is not None) + len(c.heatmaps)
            for c in page.concepts
        )
    count += 1 if site.ablation is not None and site.ablation.chart is not None else 0
    return count
