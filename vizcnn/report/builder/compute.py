"""Computing each kind of artifact with the techniques: tensors and numbers in, files out.

Each function returns `Made`: the files of the artifact (PNG tensors or bytes), the numbers the
pages show, and the options for its provenance block. Nothing here writes: the build passes the
result to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, scaled_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import ImageSource
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.features.filters import FilterConfig, filter_grid
from vizcnn.io.imaging import resize
from vizcnn.mining.layers import DataPass, LayerMined, data_pass
from vizcnn.mining.patches import channel_grid, mine_patches
from vizcnn.mining.reservoir import PositionSample, SampleConfig
from vizcnn.mining.topk import TopK
from vizcnn.models.base import LoadedModel
from vizcnn.optvis.rendering import render
from vizcnn.receptive.table import layer_table
from vizcnn.report.builder.plan import Artifact, ImageInput, Plan, dream_recipe
from vizcnn.report.config import REPORT_BATCH

THUMB = 64  # side of the unit thumbnails on the index page


@dataclass
class Made:
    """An artifact's files, numbers, and the options that go into its provenance block."""

    files: dict[str, Any]  # file name -> (C, H, W) tensor in [0, 1], PIL image or PNG bytes
    data: dict[str, Any]  # JSON-ready numbers for the pages
    options: dict[str, Any] = field(default_factory=dict)
    data_name: str | None = None  # the data set or image it was made from


def _pair(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def make_layers(loaded: LoadedModel, artifact: Artifact, progress: ProgressCallback) -> Made:
    """The layer table: every module call's type, output shape, parameters and field."""
    table = layer_table(loaded, (loaded.channels, *loaded.input_size), progress=progress)
    rows = []
    for row in table.rows:
        if row.output_shape is None:
            continue
        found = row.field
        spread = found is not None and found.method != "global"
        rows.append(
            {
                "name": row.name,
                "type": row.type,
                "shape": "x".join(str(v) for v in row.output_shape),
                "params": row.params,
                "field": _pair(found.size) if spread and found else ("all" if found else "-"),
                "stride": _pair(found.stride) if spread and found else "-",
                "offset": _pair(found.offset) if spread and found else "-",
            }
        )
    params = sum(p.numel() for p in loaded.module.parameters())
    progress(1, 1, "layer table")
    return Made({}, {"rows": rows, "params": params}, dict(artifact.params))


def make_filters(loaded: LoadedModel, artifact: Artifact, progress: ProgressCallback) -> Made:
    """The first convolution's filters as one grid."""
    grid = filter_grid(loaded, FilterConfig(layer=artifact.params["layer"]))
    progress(1, 1, "filters")
    return Made({"filters.png": grid.grid}, grid.to_dict(), {"layer": grid.layer})


def make_render(
    loaded: LoadedModel, artifact: Artifact, plan: Plan, progress: ProgressCallback
) -> Made:
    """Activation maximization of every shown channel of a layer, in one batch."""
    params = artifact.params
    size = (int(params["image_size"][0]), int(params["image_size"][1]))
    # the recipe of the plan (its key holds every field that shapes the pictures), at the size
    # the plan clipped to the model's input; the network sees that size unless it says otherwise
    config = replace(
        plan.config.render,
        size=size,
        input_size=(int(params["input_size"][0]), int(params["input_size"][1])),
    )
    copies = config.diversity
    run = replace(
        plan.run,
        batch=max(1, len(params["channels"]) * copies),
        amp=params["precision"] == "bfloat16",
    )
    units = [f"{artifact.name}:{c}" for c in params["channels"]]
    result = render(loaded, units, config, seed=int(params["seed"]), progress=progress, run=run)
    files: dict[str, Any] = {}
    values = {}
    thumbs = resize(result.images, (THUMB, THUMB)).clamp(0, 1)
    for row, (unit, copy) in enumerate(zip(result.unit_index, result.copy, strict=True)):
        channel = int(params["channels"][unit])
        if copy == 0:  # the unit's picture; the diversity copies go on its card
            files[f"c{channel:04d}.png"] = result.images[row]
            files[f"c{channel:04d}_thumb.png"] = thumbs[row]
            values[str(channel)] = float(result.values[row])
        else:
            files[f"c{channel:04d}_d{copy}.png"] = result.images[row]
    options = {
        **asdict(config.resolved()),
        # the run options recorded as before `RunOptions` existed: caches made then are reused
        "batch": run.batch,
        "amp": run.amp,
        "channels_last": run.channels_last,
        "check_every": run.check_every,
        "deterministic": run.deterministic,
        **params,
        "transforms": (
            "lucid (pad, jitter, scale, rotate)"
            if config.transforms is None
            else params["transforms"]
        ),
    }
    data = {"values": values, "size": list(size), "thumb": THUMB, "diversity": copies}
    return Made(files, data, options)


def mine_data(
    loaded: LoadedModel,
    artifacts: list[Artifact],
    plan: Plan,
    progress: ProgressCallback,
    sampled: Sequence[Artifact] = (),
) -> DataPass:
    """The data pass: every layer of `artifacts` (mine and stats) mined in one pass over the
    data (`data_pass`: top-k, means and histograms from one forward per batch), and from the
    same forwards the sample of positions of each `sampled` concepts artifact's layer."""
    channels: dict[str, list[int]] = {}
    for artifact in artifacts:  # a layer's mine and stats artifacts show the same channels
        channels[artifact.name] = sorted(
            {*channels.get(artifact.name, []), *artifact.params["channels"]}
        )
    configs = [
        replace(plan.config.mine, layer=layer, channels=tuple(shown))
        for layer, shown in channels.items()
    ]
    samples: dict[str, SampleConfig] = {}
    for artifact in sampled:  # two report layers may share a concepts layer: one sample
        config = sample_config(artifact)
        if samples.setdefault(str(config.layer), config) != config:
            raise RuntimeError(f"two samples of {config.layer!r} differ: {config}")
    run = replace(plan.run, batch=plan.run.batch_or(REPORT_BATCH))
    return data_pass(
        loaded, _dataset(plan), configs, list(samples.values()), progress=progress, run=run
    )


def sample_config(artifact: Artifact) -> SampleConfig:
    """What a concepts artifact samples of its concepts layer in the data pass."""
    params = artifact.params
    return SampleConfig(
        str(params["concept_layer"]), int(params["max_positions"]), int(params["seed"])
    )


def make_mine(
    loaded: LoadedModel,
    artifact: Artifact,
    plan: Plan,
    progress: ProgressCallback,
    top: TopK,
) -> Made:
    """Top-k dataset patches of every shown channel of a layer, from the data pass's `top`."""
    params = artifact.params
    dataset = _dataset(plan)
    mined = mine_patches(
        loaded,
        dataset,
        top,
        projections=str(params["projections"]),
        thumbnail_size=THUMB,
        progress=progress,
    )
    files: dict[str, Any] = {}
    hits: dict[str, list[dict[str, Any]]] = {}
    for channel, found in mined.hits.items():
        if found:
            files[f"c{channel:04d}_patches.png"] = channel_grid(found)
            hits[str(channel)] = [
                {"image": hit.image, "value": hit.value, "box": list(hit.box)} for hit in found
            ]
    data = {"hits": hits, "images_seen": top.images_seen, "skipped": len(top.skipped)}
    return Made(files, data, dict(params), params["data"])


def _dataset(plan: Plan) -> ImageSource:
    if plan.dataset is None:
        raise RuntimeError("the plan has no data set")
    return plan.dataset


def make_stats(artifact: Artifact, mined: LayerMined) -> Made:
    """Each shown channel's mean activation (every image and position, float64 sums) and the
    histogram of its activations, from the data pass."""
    rows = {channel: row for row, channel in enumerate(mined.channels)}
    count = mined.top.images_seen
    means, histograms = {}, {}
    for channel in artifact.params["channels"]:
        row = rows[int(channel)]
        means[str(channel)] = float(mined.means[row])
        histograms[str(channel)] = {
            "counts": [int(v) for v in mined.counts[row]],
            "edges": [float(v) for v in mined.edges[row]],
        }
    data = {"means": means, "histograms": histograms, "images": count}
    return Made({}, data, dict(artifact.params), artifact.params["data"])


def make_votes(
    loaded: LoadedModel, artifact: Artifact, plan: Plan, progress: ProgressCallback
) -> Made:
    """Each shown channel's class votes: the classes whose logit falls most when it is zeroed,
    over the first `vote_images` images of the data (`class_votes`)."""
    from vizcnn.ablation.votes import class_votes
    from vizcnn.attribution.classifier import label_of

    params = artifact.params
    votes = class_votes(
        loaded,
        _dataset(plan),
        artifact.name,
        tuple(params["channels"]),
        limit=int(params["vote_images"]),
        progress=progress,
        run=plan.run,
    )
    found = {
        str(channel): [
            [label_of(loaded, k), drop] for k, drop in votes.top(row, int(params["vote_classes"]))
        ]
        for row, channel in enumerate(votes.channels)
    }
    data = {"votes": found, "images": votes.images, "how": votes.how}
    return Made({}, data, dict(params), params["data"])


def make_dream(
    loaded: LoadedModel,
    artifact: Artifact,
    image: ImageInput,
    progress: ProgressCallback,
    run: RunOptions | None = None,
    config: DreamConfig | None = None,
) -> Made:
    """DeepDream of one image with `config` (default `DreamConfig()`: the model's dream layers)."""
    config = config or DreamConfig()
    run = replace(run or RunOptions(), amp=artifact.params["precision"] == "bfloat16")
    dreamed = dream(
        loaded,
        image.image.to(loaded.device),
        config,
        seed=int(artifact.params["seed"]),  # CPU rolls, as `vizcnn dream --seed`
        progress=progress,
        run=run,
    )
    options = {
        **dream_recipe(config, artifact.params["layers"]),
        # recorded as before `RunOptions` existed
        "amp": run.amp,
        "deterministic": run.deterministic,
    }
    files = {"dream.png": dreamed.cpu(), "input.png": image.image}
    return Made(files, {"size": list(image.image.shape[-2:])}, options, image.spec)


def _heat_rgb(attribution: torch.Tensor) -> torch.Tensor:
    from matplotlib import colormaps

    from vizcnn.attribution.figures import CMAP, heat

    rgb = colormaps[CMAP](heat(attribution))[..., :3]
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)


def make_attribution(
    loaded: LoadedModel, artifact: Artifact, image: ImageInput, progress: ProgressCallback
) -> Made:
    """Attribution maps of one image for the top-1 class, one heat map per method."""
    from vizcnn.attribution import attribute, make_methods
    from vizcnn.attribution.classifier import label_of

    seed = int(artifact.params["seed"])
    # Score-CAM's masked passes in the precision the plan recorded (the only method with amp)
    amp = artifact.params.get("scorecam_precision") == "bfloat16"
    methods = make_methods(loaded, list(artifact.params["methods"]), seed=seed, amp=amp)
    result = attribute(loaded, image.image[None].to(loaded.device), methods, progress=progress)
    files: dict[str, Any] = {}
    names = {}
    for index, (method, maps) in enumerate(result.maps.items()):
        name = f"m{index}.png"
        files[name] = _heat_rgb(maps[0].cpu())
        names[method] = name
    top = result.predictions
    predictions = [
        [label_of(loaded, int(i)), float(p)]
        for i, p in zip(top.top_indices[0].tolist(), top.top_probs[0].tolist(), strict=True)
    ]
    data = {
        "maps": names,
        "target": label_of(loaded, int(result.targets[0])),
        "predictions": predictions,
        "layer": result.layer,
        # a blank map, or a method equal to another, is said beside the pictures (issue 23)
        "warnings": [str(warning) for warning in result.warnings],
        **_attribution_checks(loaded, image.image[None], result, methods, seed),
    }
    return Made(files, data, _attribution_options(methods, seed), image.spec)


REPORT_ROAD_SHARES = (0.2, 0.5, 0.8)  # three ROAD points per image: the page's budget
REPORT_SANITY_STAGES = 3


def _attribution_checks(
    loaded: LoadedModel, x: torch.Tensor, result: Any, methods: list[Any], seed: int
) -> dict[str, Any]:
    """The images page's per-method table: the faithfulness metrics of the image's maps
    (`vizcnn.attribution.metrics.faithfulness`) and the randomization test's verdict on it."""
    from vizcnn.attribution import attribute
    from vizcnn.attribution.metrics import faithfulness
    from vizcnn.attribution.sanity import sanity_check

    x = x.to(loaded.device)
    rows = faithfulness(
        loaded, x, result.maps, result.targets, shares=REPORT_ROAD_SHARES, seed=seed
    )

    def maps_of(model: LoadedModel, xs: torch.Tensor, ts: torch.Tensor) -> dict[str, torch.Tensor]:
        return attribute(model, xs, methods, targets=ts).maps

    sanity = sanity_check(
        loaded, x, result.targets, maps_of, stages=REPORT_SANITY_STAGES, seed=seed
    )
    return {
        "metrics": rows,
        "road_shares": list(REPORT_ROAD_SHARES),
        "verdicts": sanity.verdicts(),
        "sanity_threshold": sanity.threshold,
    }


def _attribution_options(methods: list[Any], seed: int) -> dict[str, Any]:
    """The provenance options report artifacts have always recorded (under the former
    `AttributionConfig`'s keys, so a report folder made before is reused), read from the
    methods' defaults."""
    from vizcnn.attribution import IntegratedGradients, Occlusion, SmoothGrad

    return {
        "methods": [m.name for m in methods],
        "target": "top1",
        "layer": None,
        "baseline": IntegratedGradients.baseline,
        "ig_steps": IntegratedGradients.steps,
        "smoothgrad_samples": SmoothGrad.samples,
        "smoothgrad_stdev": SmoothGrad.stdev,
        "occlusion_window": Occlusion.window,
        "occlusion_stride": Occlusion.stride,
        "batch": 8,  # images per call; one image here
        "seed": seed,
        **{
            f"{m.name}_precision": options["precision"]
            for m, options in ((m, m.options()) for m in methods)
            if "precision" in options
        },
    }


CONCEPT_PATCHES = 9  # top patches per concept
CONCEPT_IMPORTANCE_IMAGES = 16  # first readable data images the removal importance averages


def _overlay(image: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """`image` (C, H, W) dimmed under `heat` (H, W) >= 0 scaled to its maximum, inferno."""
    from matplotlib import colormaps

    from vizcnn.attribution.figures import CMAP

    scaled = (heat / heat.max().clamp_min(1e-12)).clamp(0, 1).numpy()
    rgb = torch.from_numpy(np.ascontiguousarray(colormaps[CMAP](scaled)[..., :3], np.float32))
    base = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    return (0.45 * base + 0.55 * rgb.permute(2, 0, 1)).clamp(0, 1)


def make_concepts(
    loaded: LoadedModel,
    artifact: Artifact,
    plan: Plan,
    progress: ProgressCallback,
    sample: PositionSample,
) -> Made:
    """A layer's concepts page: k NMF concepts of its concepts layer over the data, from the
    data pass's `sample` of its positions (`concepts_from_sample`, the sample `find_concepts`
    takes), each with its direction render, top patches among the sampled positions,
    heatmaps on the report's images and removal importance for each image's top-1 class."""
    from vizcnn.concepts import (
        concept_heatmaps,
        concept_importance,
        concept_renders,
        concepts_from_sample,
        sampled_concept_patches,
    )
    from vizcnn.io.imaging import make_grid

    params = artifact.params
    dataset = _dataset(plan)
    seed = int(params["seed"])
    run = replace(plan.run, batch=plan.run.batch_or(REPORT_BATCH))
    steps = 5

    def step(index: int, name: str) -> ProgressCallback:
        return scaled_progress(progress, index, steps, name)

    if sample_config(artifact) != SampleConfig(sample.layer, sample.cap, sample.seed):
        raise RuntimeError(f"the data pass sampled {sample.layer!r} otherwise than {artifact}")
    if not sample.image_ids:
        raise VizError(f"no readable image in {params['data']!r}; concepts need at least one")
    concepts = concepts_from_sample(
        loaded, sample, int(params["k"]), names=dataset.names, data=str(params["data"])
    )
    progress(1, steps, "factorized")
    size = (int(params["render"]["image_size"][0]), int(params["render"]["image_size"][1]))
    recipe = replace(
        plan.config.render,
        size=size,
        input_size=(int(params["render"]["input_size"][0]), int(params["render"]["input_size"][1])),
        diversity=1,
    )
    render_run = replace(
        plan.run, batch=concepts.k, amp=params["render"]["precision"] == "bfloat16"
    )
    renders = concept_renders(
        loaded, concepts, recipe, seed=seed, run=render_run, progress=step(1, "renders")
    )
    found = sampled_concept_patches(
        loaded, concepts, sample, dataset, CONCEPT_PATCHES, thumbnail_size=THUMB
    )
    progress(3, steps, "patches")
    if plan.images:
        shown = [(image.name, image.image) for image in plan.images]
    else:
        shown = [(dataset.names[i], dataset.image(i)) for i in range(min(2, len(dataset)))]
    images = torch.stack([image for _, image in shown])
    heat = concept_heatmaps(loaded, concepts, images.to(loaded.device)).cpu()
    progress(3, steps, "heatmaps")
    readable: list[torch.Tensor] = []
    for index in range(len(dataset)):
        if len(readable) == CONCEPT_IMPORTANCE_IMAGES:
            break
        try:
            readable.append(dataset.image(index))
        except VizError:
            continue
    importances = concept_importance(
        loaded, concepts, torch.stack(readable).to(loaded.device), None, run=run
    )
    progress(4, steps, "importance")
    files: dict[str, Any] = {}
    patches: dict[str, list[list[Any]]] = {}
    for concept in range(concepts.k):
        files[f"k{concept:02d}.png"] = renders.images[concept]
        tiles = found.patches.get(concept, [])
        if tiles:
            files[f"k{concept:02d}_patches.png"] = make_grid([t.patch for t in tiles], columns=3)
            patches[str(concept)] = [[t.image, t.value] for t in tiles]
        for row in range(len(shown)):
            files[f"k{concept:02d}_h{row}.png"] = _overlay(images[row], heat[row, concept])
    data = {
        "layer": artifact.name,
        "concept_layer": concepts.layer,
        "k": concepts.k,
        "share": [float(v) for v in concepts.share()],
        "importances": [float(v) for v in importances],
        "importance_images": len(readable),
        "values": [float(v) for v in renders.values],
        "reconstruction_error": float(concepts.reconstruction_error),
        "sampled": concepts.sampled,
        "positions_seen": concepts.positions_seen,
        "images": len(concepts.image_ids),
        "heatmaps": [name for name, _ in shown],
        "patches": patches,
        "size": list(size),
    }
    progress(steps, steps, "concepts")
    return Made(files, data, dict(params), params["data"])


ACCENT_SIZE = 128  # side of an accentuation as stored (the card shows it at this size)


def make_accent(
    loaded: LoadedModel,
    artifact: Artifact,
    plan: Plan,
    hits: dict[str, Any],
    progress: ProgressCallback,
) -> Made:
    """Accentuations (`accentuate`) of each shown unit in its top exemplars: the best
    `exemplars` images of the layer's mining (`hits`, the mine artifact's), each pushed
    towards the unit while its early activations stay close to the photograph's."""
    from vizcnn.optvis.accentuation import accentuate

    params = artifact.params
    dataset = _dataset(plan)
    index = {name: i for i, name in reversed(list(enumerate(dataset.names)))}
    images, units, names = [], [], []
    for channel in params["channels"]:
        for hit in hits.get(str(channel), [])[: int(params["exemplars"])]:
            images.append(dataset.image(index[str(hit["image"])]))
            units.append(f"{artifact.name}:{channel}")
            names.append((int(channel), str(hit["image"])))
    files: dict[str, Any] = {}
    shown: dict[str, list[str]] = {}
    if images:
        result = accentuate(
            loaded,
            torch.stack(images).to(loaded.device),
            units,
            reg_layer=str(params["reg_layer"]),
            steps=int(params["steps"]),
            crops=int(params["crops"]),
            # the regularizer on every crop, as the report's artifacts were keyed when made
            reg_crops=int(params["crops"]),
            seed=int(params["seed"]),
            run=replace(plan.run, amp=params["precision"] == "bfloat16"),
            progress=progress,
        )
        small = resize(result.images, (ACCENT_SIZE, ACCENT_SIZE)).clamp(0, 1)
        for row, (channel, image) in enumerate(names):
            done = shown.setdefault(str(channel), [])
            files[f"c{channel:04d}_a{len(done)}.png"] = small[row]
            done.append(image)
    data = {"accentuated": shown, "size": ACCENT_SIZE, "reg_layer": params["reg_layer"]}
    return Made(files, data, dict(params), params["data"])
