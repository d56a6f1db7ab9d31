"""From the stored artifacts to the report's dataclasses (`vizcnn.report.html.site`)."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import replace
from typing import Any

from vizcnn.io.paths import safe_stem
from vizcnn.models.base import LoadedModel
from vizcnn.report.builder.plan import Artifact, Plan
from vizcnn.report.builder.store import ArtifactStore
from vizcnn.report.html.charts import histogram_view
from vizcnn.report.html.site import (
    AblationView,
    ConceptsView,
    ConceptView,
    ImageView,
    LayerRowView,
    LayerView,
    Made,
    ModelCard,
    Picture,
    Site,
    UnitView,
)

TITLE = "vizcnn report"


def layer_page(position: int, layer: str) -> str:
    """The file name of a layer's page: its position keeps names of similar layers apart."""
    return f"layer-{position:02d}-{safe_stem(layer)}.html"


def concepts_page(position: int, layer: str) -> str:
    """The file name of a layer's concepts page."""
    return f"concepts-{position:02d}-{safe_stem(layer)}.html"


def _meta(store: ArtifactStore, artifact: Artifact | None) -> dict[str, Any]:
    if artifact is None:
        return {}
    return store.meta(artifact) or {}


def _made(what: str, meta: dict[str, Any]) -> list[Made]:
    block = meta.get("provenance")
    return [Made(what, block)] if isinstance(block, dict) else []


def _picture(
    store: ArtifactStore, artifact: Artifact, name: str, size: tuple[int, int], alt: str
) -> Picture:
    return Picture(store.relative(artifact, name), size[1], size[0], alt)


def _find(plan: Plan, kind: str, name: str) -> Artifact | None:
    for artifact in plan.artifacts:
        if artifact.kind == kind and artifact.name == name:
            return artifact
    return None


def assemble_site(
    loaded: LoadedModel, plan: Plan, store: ArtifactStore, command: str | None = None
) -> Site:
    """The `Site` of a built plan: every artifact must be in `store`."""
    table_artifact = plan.of_kind("layers")[0]
    table = _meta(store, table_artifact)
    pages = {layer: layer_page(i + 1, layer) for i, (layer, _) in enumerate(plan.layers)}
    rows = table.get("data", {}).get("rows", [])
    by_name = {row["name"]: row for row in rows}
    card_rows = [
        LayerRowView(
            row["name"],
            row["type"],
            row["shape"],
            int(row["params"]),
            row["field"],
            row["stride"],
            row["offset"],
            pages.get(row["name"]),
        )
        for row in rows
    ]
    filters = None
    filters_layer = None
    made = _made("layer table", table)
    found = plan.of_kind("filters")
    if found:
        meta = _meta(store, found[0])
        size = meta.get("data", {}).get("grid_size", [0, 0])
        filters_layer = meta.get("data", {}).get("layer")
        filters = _picture(
            store,
            found[0],
            "filters.png",
            (int(size[0]), int(size[1])),
            f"filters of {filters_layer}, one tile per output channel",
        )
        made += _made(f"filter grid of {filters_layer}", meta)
    card = ModelCard(
        name=loaded.name,
        weights=loaded.weights or "-",
        input_size=loaded.input_size,
        channels=loaded.channels,
        params=int(table.get("data", {}).get("params", 0)),
        classes=len(loaded.labels),
        layers=card_rows,
        filters=filters,
        filters_layer=filters_layer,
        made=made,
    )
    concept_pages = {
        layer: concepts_page(i + 1, layer)
        for i, (layer, _) in enumerate(plan.layers)
        if _find(plan, "concepts", layer) is not None
    }
    layers = [
        replace(
            _layer_view(store, plan, layer, channels, pages[layer], by_name),
            concepts_page=concept_pages.get(layer),
        )
        for layer, channels in plan.layers
    ]
    concepts = [
        _concepts_view(store, plan, layer, pages[layer], page)
        for layer, page in concept_pages.items()
    ]
    images = [_image_view(store, plan, image.name) for image in plan.images]
    ablation = _ablation_view(store, plan)
    argv = sys.argv if command is None else shlex.split(command)
    return Site(
        title=f"{TITLE}: {loaded.name}",
        card=card,
        layers=layers,
        images=images,
        ablation=ablation,
        data=plan.config.data if plan.layers else "-",
        command=command if command is not None else shlex.join(["vizcnn", *argv[1:]]),
        created=time.strftime("%Y-%m-%d %H:%M"),
        concepts=concepts,
    )


def _layer_view(
    store: ArtifactStore,
    plan: Plan,
    layer: str,
    channels: tuple[int, ...],
    page: str,
    rows: dict[str, dict[str, Any]],
) -> LayerView:
    kinds = ("render", "mine", "stats", "votes", "accent")
    render_a, mine_a, stats_a, votes_a, accent_a = (_find(plan, kind, layer) for kind in kinds)
    render, mine, stats, votes, accent = (
        _meta(store, a) for a in (render_a, mine_a, stats_a, votes_a, accent_a)
    )
    accented = accent.get("data", {}).get("accentuated", {})
    accent_size = int(accent.get("data", {}).get("size", 0))
    height, width = (int(v) for v in render.get("data", {}).get("size", [0, 0]))
    thumb = int(render.get("data", {}).get("thumb", 0))
    copies = int(render.get("data", {}).get("diversity", 1))
    values = render.get("data", {}).get("values", {})
    hits = mine.get("data", {}).get("hits", {})
    means = stats.get("data", {}).get("means", {})
    histograms = stats.get("data", {}).get("histograms", {})
    voted = votes.get("data", {}).get("votes", {})
    units = []
    for channel in channels:
        label = f"{layer}:{channel}"
        stem = f"c{channel:04d}"
        picture = thumb_picture = patches = None
        others = []
        if render_a is not None and str(channel) in values:
            alt = f"image rendered to excite {label}"
            picture = _picture(store, render_a, f"{stem}.png", (height, width), alt)
            thumb_picture = _picture(store, render_a, f"{stem}_thumb.png", (thumb, thumb), alt)
            others = [
                _picture(
                    store,
                    render_a,
                    f"{stem}_d{copy}.png",
                    (height, width),
                    f"diversity render {copy + 1} of {copies} of {label}",
                )
                for copy in range(1, copies)
            ]
        found = hits.get(str(channel), [])
        if mine_a is not None and found:
            name = f"{stem}_patches.png"
            grid = _png_size(store, mine_a, name)
            alt = f"top {len(found)} dataset patches of {label}"
            patches = _picture(store, mine_a, name, grid, alt)
        counted = histograms.get(str(channel))
        units.append(
            UnitView(
                label=label,
                channel=channel,
                render=picture,
                thumb=thumb_picture,
                value=values.get(str(channel)),
                patches=patches,
                hits=[(str(h["image"]), float(h["value"])) for h in found],
                mean=means.get(str(channel)),
                diversity=others,
                histogram=histogram_view(counted["counts"], counted["edges"]) if counted else None,
                votes=[(str(k), float(v)) for k, v in voted.get(str(channel), [])],
                accentuations=[
                    _picture(
                        store,
                        accent_a,
                        f"{stem}_a{row}.png",
                        (accent_size, accent_size),
                        f"{image} accentuated for {label}",
                    )
                    for row, image in enumerate(accented.get(str(channel), []))
                    if accent_a is not None
                ],
            )
        )
    row = rows.get(layer, {})
    made = (
        _made(f"renders of {layer}", render)
        + _made(f"top patches of {layer}", mine)
        + _made(f"mean activations and histograms of {layer}", stats)
        + _made(f"class votes of {layer}", votes)
        + _made(f"accentuations of {layer}'s top exemplars", accent)
    )
    return LayerView(
        name=layer,
        page=page,
        type=str(row.get("type", "")),
        shape=str(row.get("shape", "")),
        field=str(row.get("field", "")),
        units=units,
        made=made,
        vote_images=int(votes.get("data", {}).get("images", 0)),
    )


def _concepts_view(
    store: ArtifactStore, plan: Plan, layer: str, layer_page_name: str, page: str
) -> ConceptsView:
    artifact = _find(plan, "concepts", layer)
    assert artifact is not None
    meta = _meta(store, artifact)
    data = meta.get("data", {})
    height, width = (int(v) for v in data.get("size", [0, 0]))
    target = str(data.get("concept_layer", ""))
    importances = data.get("importances") or []
    views = []
    for index in range(int(data.get("k", 0))):
        stem = f"k{index:02d}"
        label = f"concept {index} of {target}"
        render = _picture(
            store, artifact, f"{stem}.png", (height, width), f"image rendered for {label}"
        )
        hits = data.get("patches", {}).get(str(index), [])
        patches = None
        if hits:
            name = f"{stem}_patches.png"
            patches = _picture(
                store,
                artifact,
                name,
                _png_size(store, artifact, name),
                f"top {len(hits)} dataset patches of {label}",
            )
        heatmaps = []
        for row, image in enumerate(data.get("heatmaps", [])):
            name = f"{stem}_h{row}.png"
            heatmaps.append(
                (
                    str(image),
                    _picture(
                        store,
                        artifact,
                        name,
                        _png_size(store, artifact, name),
                        f"heatmap of {label} on {image}",
                    ),
                )
            )
        views.append(
            ConceptView(
                index=index,
                render=render,
                patches=patches,
                heatmaps=heatmaps,
                share=float(data.get("share", [0.0] * (index + 1))[index]),
                importance=float(importances[index]) if index < len(importances) else None,
                hits=[(str(h[0]), float(h[1])) for h in hits],
            )
        )
    return ConceptsView(
        layer=layer,
        layer_page=layer_page_name,
        page=page,
        concept_layer=target,
        concepts=views,
        reconstruction_error=float(data.get("reconstruction_error", 0.0)),
        sampled=int(data.get("sampled", 0)),
        positions_seen=int(data.get("positions_seen", 0)),
        images=int(data.get("images", 0)),
        importance_images=int(data.get("importance_images", 0)),
        made=_made(f"concepts of {target}", meta),
    )


def _png_size(store: ArtifactStore, artifact: Artifact, name: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(store.folder(artifact) / name) as image:
        return image.height, image.width


def _metric_columns() -> list[tuple[str, str, str]]:
    from vizcnn.attribution.metrics import TABLE_COLUMNS

    return list(TABLE_COLUMNS)


def _image_view(store: ArtifactStore, plan: Plan, name: str) -> ImageView:
    dream_a, attr_a = _find(plan, "dream", name), _find(plan, "attribution", name)
    dream, attr = _meta(store, dream_a), _meta(store, attr_a)
    size = tuple(int(v) for v in dream.get("data", {}).get("size", [0, 0]))
    original = dreamed = None
    if dream_a is not None:
        original = _picture(store, dream_a, "input.png", size, f"input image {name}")  # type: ignore[arg-type]
        dreamed = _picture(store, dream_a, "dream.png", size, f"DeepDream of {name}")  # type: ignore[arg-type]
    maps = []
    data = attr.get("data", {})
    if attr_a is not None:
        for method, file in data.get("maps", {}).items():
            grid = _png_size(store, attr_a, file)
            maps.append(
                (method, _picture(store, attr_a, file, grid, f"{method} attribution map of {name}"))
            )
    if original is None and attr_a is not None and maps:
        original = maps[0][1]
    assert original is not None
    return ImageView(
        name=name,
        original=original,
        dream=dreamed,
        attributions=maps,
        target=str(data.get("target", "")),
        predictions=[(str(label), float(p)) for label, p in data.get("predictions", [])],
        made=_made(f"dream of {name}", dream) + _made(f"attribution maps of {name}", attr),
        warnings=[str(text) for text in data.get("warnings", [])],
        metrics={
            str(m): {str(k): float(v) for k, v in row.items()}
            for m, row in data.get("metrics", {}).items()
        },
        verdicts={str(m): str(v) for m, v in data.get("verdicts", {}).items()},
        road_shares=[float(v) for v in data.get("road_shares", [])],
        metric_columns=_metric_columns(),
        sanity_threshold=float(data.get("sanity_threshold", 0.5)),
    )


def _ablation_view(store: ArtifactStore, plan: Plan) -> AblationView | None:
    found = plan.of_kind("ablation")
    if not found:
        return None
    meta = _meta(store, found[0])
    data = meta.get("data", {})
    source = data.get("source_provenance") or {}
    chart = _picture(
        store,
        found[0],
        "chart.png",
        _png_size(store, found[0], "chart.png"),
        str(data.get("title", "chart")),
    )
    return AblationView(
        source=str(plan.ablation),
        title=str(data.get("title", "Ablation")),
        columns=[str(c) for c in data.get("columns", [])],
        rows=[[str(c) for c in row] for row in data.get("rows", [])],
        chart=chart,
        notes=[str(n) for n in data.get("notes", [])],
        made=Made(f"vizcnn ablate results ({plan.ablation})", source) if source else None,
    )
