"""Computing each kind of artifact with the techniques: tensors and numbers in, files out.

Each function returns `Made`: the files of the artifact (PNG tensors or bytes), the numbers the
pages show, and the options for its provenance block. Nothing here writes: the build passes the
result to the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vizcnn.core.progress import ProgressCallback, scaled_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import ImageSource, collate
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.features.filters import FilterConfig, filter_grid
from vizcnn.hooks import capture, model_guard
from vizcnn.io.imaging import resize
from vizcnn.mining.patches import channel_grid, mine_patches
from vizcnn.mining.streaming import mine_topk
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
    run = replace(
        plan.run, batch=max(1, len(params["channels"])), amp=params["precision"] == "bfloat16"
    )
    units = [f"{artifact.name}:{c}" for c in params["channels"]]
    result = render(loaded, units, config, seed=int(params["seed"]), progress=progress, run=run)
    files: dict[str, Any] = {}
    values = {}
    thumbs = resize(result.images, (THUMB, THUMB)).clamp(0, 1)
    for row, channel in enumerate(params["channels"]):
        files[f"c{channel:04d}.png"] = result.images[row]
        files[f"c{channel:04d}_thumb.png"] = thumbs[row]
        values[str(channel)] = float(result.values[row])
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
    return Made(files, {"values": values, "size": list(size), "thumb": THUMB}, options)


def make_mine(
    loaded: LoadedModel, artifact: Artifact, plan: Plan, progress: ProgressCallback
) -> Made:
    """Top-k dataset patches of every shown channel of a layer (one pass over the data)."""
    params = artifact.params
    dataset = _dataset(plan)
    config = replace(plan.config.mine, layer=artifact.name, channels=tuple(params["channels"]))
    run = replace(plan.run, batch=plan.run.batch_or(REPORT_BATCH))
    top = mine_topk(loaded, dataset, config, progress=scaled_progress(progress, 0, 2), run=run)
    mined = mine_patches(
        loaded,
        dataset,
        top,
        projections=str(params["projections"]),
        thumbnail_size=THUMB,
        progress=scaled_progress(progress, 1, 2),
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


def make_stats(
    loaded: LoadedModel, artifacts: list[Artifact], plan: Plan, progress: ProgressCallback
) -> dict[str, Made]:
    """Mean activation of each shown channel over the data, for several layers in one pass.

    The mean is over every image and every position of the channel's map (float64 sums).
    """
    dataset = _dataset(plan)
    layers = [a.name for a in artifacts]
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_size=plan.run.batch_or(REPORT_BATCH),
        shuffle=False,
        num_workers=0,
        collate_fn=collate,
    )
    sums = {layer: torch.zeros((), dtype=torch.float64) for layer in layers}
    count = 0
    total = len(dataset)
    progress(0, total, "mean activations")
    with (
        model_guard(loaded.module),
        torch.inference_mode(),
        capture(loaded.module, layers, stop_early=True, detach=True) as acts,
    ):
        for batch in loader:
            good = [i for i, error in enumerate(batch.errors) if not error]
            if good:
                images = batch.images[good].to(device=loaded.device)
                acts.run(loaded.normalize(images))
                for layer in layers:
                    means = acts[layer].double().mean(dim=(2, 3)).sum(0).cpu()
                    sums[layer] = sums[layer] + means
                count += len(good)
            progress(min(total, int(batch.indices[-1]) + 1), total, "mean activations")
    made = {}
    for artifact in artifacts:
        channels = artifact.params["channels"]
        means = sums[artifact.name] / max(count, 1)
        values = {str(c): float(means[c]) for c in channels} if count else {}
        made[artifact.key] = Made(
            {}, {"means": values, "images": count}, dict(artifact.params), artifact.params["data"]
        )
    return made


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
    methods = make_methods(loaded, list(artifact.params["methods"]), seed=seed)
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
    }
