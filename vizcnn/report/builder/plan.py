"""The plan of a report: which artifacts, with which cache keys, after checking every input.

An artifact is one unit of work whose result is cached on its own (one render batch per layer,
one mining pass per layer, the filter grid, each dream, ...). Its key is the run store's
`settings_digest` of everything that defines it: the kind, the model's weights digest, dtype,
its options, the data's digest and, where randomness enters, the seed. Changing one option
changes the keys of exactly the artifacts that depend on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vizcnn.attribution.cams import ScoreCAM
from vizcnn.core.errors import VizError
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import SAMPLES, ImageSource, open_dataset, preprocess
from vizcnn.data.samples import resolve_image_argument
from vizcnn.deepdream.config import DreamConfig
from vizcnn.hooks import find_module, layer_output_shape, model_guard, parse_layer
from vizcnn.io.paths import safe_stem
from vizcnn.io.provenance import files_digest, tensor_digest, weights_digest
from vizcnn.mining.histogram import HISTOGRAM_BINS
from vizcnn.models.base import LoadedModel
from vizcnn.optvis.config import RenderConfig
from vizcnn.report.config import ReportConfig
from vizcnn.runs.store import settings_digest

ACCENT_CROPS = 2  # crops per accentuation step in a report (`accentuate`'s default: 8)

KINDS = (
    "layers",
    "filters",
    "render",
    "mine",
    "stats",
    "votes",
    "accent",
    "concepts",
    "dream",
    "attribution",
    "ablation",
)


@dataclass(frozen=True)
class Artifact:
    """One cached result: its kind, what it is of, its defining parameters and their digest."""

    kind: str  # one of KINDS
    name: str  # the layer or image it is of ("" for the model-wide ones)
    params: dict[str, Any]  # JSON-ready: everything the result depends on
    key: str  # settings_digest of `settings`

    @property
    def settings(self) -> dict[str, Any]:
        """Everything the result depends on: its kind, what it is of, and its parameters."""
        return {"kind": self.kind, "name": self.name, **self.params}

    @property
    def folder(self) -> str:
        """The artifact's folder name under the store: kind, readable name, key."""
        stem = f"{self.kind}-{safe_stem(self.name)}" if self.name else self.kind
        return f"{stem}-{self.key[:16]}"


def make_artifact(kind: str, name: str, params: dict[str, Any]) -> Artifact:
    return Artifact(kind, name, params, settings_digest({"kind": kind, "name": name, **params}))


@dataclass(frozen=True)
class ImageInput:
    """An image of `ReportConfig.images`, preprocessed to the model's input size."""

    spec: str  # as given: a path or sample:NAME
    name: str  # display name
    image: torch.Tensor  # (C, H, W) in [0, 1] at the model's input size
    digest: str  # of the preprocessed pixels


@dataclass
class Plan:
    """A checked report: resolved layers and channels, data, images, and every artifact."""

    config: ReportConfig
    layers: list[tuple[str, tuple[int, ...]]]  # (layer, channels shown)
    dataset: ImageSource | None  # None when there is no layer to mine
    data_digest: str
    images: list[ImageInput]
    ablation: Path | None
    weights_digest: str
    seed: int = 0  # renders, dreams, SmoothGrad noise and the samples' crops
    artifacts: list[Artifact] = field(default_factory=list)
    run: RunOptions = field(default_factory=RunOptions)  # how the artifacts are computed
    # report layer -> the non-negative layer factorized for its concepts page: itself when it
    # is a ReLU / ReLU6 output, else the first one inside or after it (NMF needs >= 0)
    concept_layers: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind == kind]


def conv_layers(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def default_layers(loaded: LoadedModel) -> list[str]:
    """The model's report layers, else three stage outputs (`LoadedModel.layer_choice`)."""
    return list(loaded.layer_choice("report").layers)


def _layer_shape(loaded: LoadedModel, layer: str) -> tuple[int, ...]:
    find_module(loaded.module, parse_layer(layer).name)  # unknown names: closest valid ones
    with model_guard(loaded.module):
        shape = layer_output_shape(loaded.module, (loaded.channels, *loaded.input_size), layer)
    if len(shape) != 3:
        raise VizError(
            f"layer {layer!r} gives shape {tuple(shape)}; a report page needs a (C, H, W) map, "
            "e.g. a Conv2d or a block (see `vizcnn layers`)"
        )
    return tuple(shape)


def _read_ablation(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise VizError(
            f"ReportConfig.ablation {path!r} not found; give the results.json that ablate_folder writes"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VizError(
            f"ReportConfig.ablation {path!r} is not JSON ({exc}); give FOLDER/results.json"
        ) from None
    if not isinstance(data, dict) or not ("rows" in data or "blocks" in data):
        raise VizError(
            f"ReportConfig.ablation {path!r} is not the results.json of ablate_folder (no 'rows' or "
            "'blocks')"
        )
    return file


def _check_mining(
    loaded: LoadedModel, layers: list[str], config: ReportConfig, progress: ProgressCallback
) -> None:
    """Every layer's units must see the input (patches are cut by their receptive field)."""
    from vizcnn.mining.patches import check_projectable
    from vizcnn.receptive.measured import receptive_fields

    if not layers:
        return
    size = (loaded.channels, *loaded.input_size)
    fields = receptive_fields(loaded.module, size, layers, progress=progress)
    for layer in layers:
        if fields.get(layer) is None:
            raise VizError(
                f"no receptive field for layer {layer!r}; its units do not see the input"
            )
        if config.projections != "none":
            check_projectable(loaded, layer)


def _check_image_options(loaded: LoadedModel, config: ReportConfig) -> list[str]:
    """Attribution methods and the dream's layers, checked before any work: the layers' specs."""
    from vizcnn.attribution.methods import make_methods

    make_methods(loaded, list(config.methods))  # names, and the Grad-CAM layer of the model
    return [target.spec for target in config.dream.targets(loaded)]


def accent_reg_layer(loaded: LoadedModel, layer: str) -> str | None:
    """The layer an accentuation of `layer`'s units holds close to the photograph (an early
    stage output before it, `default_reg_layer`), or None when none runs before it."""
    from vizcnn.optvis.accentuation import default_reg_layer

    try:
        with model_guard(loaded.module):
            return default_reg_layer(loaded, [layer])
    except VizError:
        return None


def concept_layers(loaded: LoadedModel, layers: list[str]) -> dict[str, str]:
    """Each report layer's concepts layer: itself if a ReLU / ReLU6 output, else the first such
    layer inside or after it; a layer with none after it gets no concepts page."""
    from vizcnn.concepts import nonnegative_layers

    every = set(nonnegative_layers(loaded))
    found = {}
    for layer in layers:
        if layer in every:
            found[layer] = layer
            continue
        near = nonnegative_layers(loaded, near=layer, count=1)
        if near and near[0] in every and _after(loaded, layer, near[0]):
            found[layer] = near[0]
    return found


def _after(loaded: LoadedModel, layer: str, other: str) -> bool:
    """Whether `other` is inside `layer` or runs after it (`nonnegative_layers` falls back to
    the model's first ReLUs when none follows)."""
    from vizcnn.hooks import capture

    probe = torch.zeros(1, loaded.channels, *loaded.input_size, device=loaded.device)
    order: list[str] = []
    with (
        model_guard(loaded.module),
        torch.no_grad(),
        capture(loaded.module, [layer, other], detach=True, strict=False) as acts,
    ):
        acts.run(loaded.normalize(probe.to(loaded.dtype)))
        order = list(acts.outputs)
    inside = other.startswith(layer + ".")
    return inside or (layer in order and other in order and order.index(other) > order.index(layer))


def render_recipe(config: RenderConfig, size: tuple[int, int]) -> dict[str, Any]:
    """The report's render recipe at `size` (clipped to the model's input), JSON-ready: what
    keys a render artifact. With `diversity` 1 its weight and layer shape nothing (not in the key);
    above 1 they join the key, so keys made before diversity existed stay the same."""
    chain = "lucid" if config.transforms is None else ", ".join(map(repr, config.transforms))
    diverse: dict[str, Any] = {}
    if config.diversity > 1:
        diverse = {
            "diversity": config.diversity,
            "diversity_weight": config.diversity_weight,
            "diversity_layer": str(config.diversity_layer),
        }
    return {
        **diverse,
        "steps": config.steps,
        "image_size": list(size),
        "input_size": list(config.input_size or size),
        "param": config.param,
        "decorrelate": config.decorrelate,
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "crops": config.crops,
        "init_sd": config.init_sd,
        "transforms": chain,
    }


def dream_recipe(config: DreamConfig, layers: list[str]) -> dict[str, Any]:
    """The report's dream recipe with its resolved layers, JSON-ready: what keys a dream."""
    return {
        "layers": layers,
        "octaves": config.octaves,
        "octave_scale": config.octave_scale,
        "steps": config.steps,
        "step_size": config.step_size,
        "jitter": config.jitter,
        "tile": config.tile,
        "grad_norm": config.grad_norm,
    }


def plan_report(
    loaded: LoadedModel,
    config: ReportConfig,
    *,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> Plan:
    """Check every input of a report and list its artifacts with their keys.

    Raises VizError (one line) for an unknown or unsuitable layer, an unreadable image, an
    empty data folder or a file that is not an ablation result, before any long work.
    `progress(done, total, message)` reports its checks (seconds; more where receptive fields
    must be measured): one step per layer, the receptive fields, the data, each image, the rest.
    `seed` drives the renders, dreams, SmoothGrad noise and the samples' crops; an int, as it
    is part of those artifacts' keys (the same seed reuses them).

    Example:
        >>> plan = plan_report(loaded, ReportConfig(layers=("_blocks.6",)))
        >>> [a.kind for a in plan.artifacts]
        ['layers', 'filters', 'render', 'mine', 'stats', 'dream', 'dream', 'attribution', ...]
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VizError(f"seed must be an int (it keys the report's artifacts), got {seed!r}")
    names = list(config.layers) or default_layers(loaded)
    specs = list(dict.fromkeys(config.images))
    steps = len(names) + 3 + len(specs)  # layers, fields, data, images, checks and weights
    layers = []
    for done, layer in enumerate(names):
        progress(done, steps, f"layer {layer}")
        shape = _layer_shape(loaded, layer)
        layers.append((layer, tuple(range(min(config.units_per_layer, shape[0])))))

    def fields_progress(done: int, total: int, message: str) -> None:
        progress(len(names), steps, message)  # one step of the plan: only its message moves

    _check_mining(loaded, [layer for layer, _ in layers], config, fields_progress)
    progress(len(names) + 1, steps, "data")
    dataset = None
    data_digest = ""
    if layers:
        dataset = open_dataset(
            config.data,
            loaded.channels,
            loaded.input_size,
            limit=config.limit,
            crops_per_image=config.crops,
            seed=seed,
            resize_crop=loaded.resize_crop,
        )
        data_digest = f"{dataset.fingerprint()}:{dataset.content_digest()}"
    images: list[ImageInput] = []
    for done, spec in enumerate(specs, start=len(names) + 2):
        progress(done, steps, f"image {spec}")
        raw, name = resolve_image_argument(spec, loaded.channels)
        taken = {image.name for image in images}
        if name in taken:  # two files with one stem: keep them apart
            name = next(
                f"{name} ({n})" for n in range(2, len(taken) + 3) if f"{name} ({n})" not in taken
            )
        image = preprocess(raw, loaded.input_size, loaded.resize_crop).contiguous()
        images.append(ImageInput(spec, name, image, tensor_digest(image)))
    progress(steps - 1, steps, "methods and weights")
    dream_layers = _check_image_options(loaded, config) if images else []
    ablation = _read_ablation(config.ablation) if config.ablation else None
    digest = weights_digest(loaded.module)
    progress(steps, steps, "planned")
    plan = Plan(
        config,
        layers,
        dataset,
        data_digest,
        images,
        ablation,
        digest,
        seed,
        run=as_run_options(run),
    )
    base = {"model": loaded.name, "weights_digest": digest, "dtype": str(loaded.dtype)}
    # what the network runs in for renders and dreams (bf16 where native): part of their key
    # and provenance, and passed on explicitly, so what is recorded is what ran
    precision = choose_precision(loaded.device, as_run_options(run).amp).name
    size = (loaded.channels, *loaded.input_size)
    plan.artifacts.append(make_artifact("layers", "", {**base, "input_shape": list(size)}))
    convs = conv_layers(loaded.module)
    if convs:
        plan.artifacts.append(make_artifact("filters", "", {**base, "layer": convs[0]}))
    height, width = config.render.image_size(loaded)
    recipe = render_recipe(
        config.render, (min(height, loaded.input_size[0]), min(width, loaded.input_size[1]))
    )
    data = {
        "data": config.data,
        "data_digest": data_digest,
        "limit": config.limit,
        "crops": config.crops if config.data == SAMPLES else None,
        "seed": seed if config.data == SAMPLES else None,
    }
    for layer, channels in layers:
        unit = {**base, "layer": layer, "channels": list(channels)}
        render = {**recipe, "seed": seed, "precision": precision}
        plan.artifacts.append(make_artifact("render", layer, {**unit, **render}))
        mine = {
            "k": config.mine.k,
            "rank": config.mine.rank,
            "projections": config.projections,
            **data,
        }
        plan.artifacts.append(make_artifact("mine", layer, {**unit, **mine}))
        # "bins": the histograms (one pass with the top-k); stats made before them are redone
        stats = {**unit, **data, "bins": HISTOGRAM_BINS}
        plan.artifacts.append(make_artifact("stats", layer, stats))
        if config.vote_images:
            votes = {
                **unit,
                **data,
                "vote_images": config.vote_images,
                "vote_classes": config.vote_classes,
            }
            plan.artifacts.append(make_artifact("votes", layer, votes))
    if config.accentuations:
        for layer, channels in layers:
            reg = accent_reg_layer(loaded, layer)
            if reg is None:  # nothing early enough to hold the photograph by: no accentuations
                continue
            accent = {
                **base,
                "layer": layer,
                "channels": list(channels),
                "k": config.mine.k,
                "rank": config.mine.rank,
                **data,
                "exemplars": config.accentuations,
                "steps": config.accent_steps,
                "crops": ACCENT_CROPS,
                "reg_layer": reg,
                "seed": seed,
                "precision": precision,
            }
            plan.artifacts.append(make_artifact("accent", layer, accent))
    if config.concepts and layers:
        plan.concept_layers = concept_layers(loaded, [layer for layer, _ in layers])
    for layer, target in plan.concept_layers.items():
        channels_, height, width = _layer_shape(loaded, target)
        # k <= the layer's channels and <= the positions the data can give (a 1 x 1 map over a
        # handful of images would leave NMF more concepts than rows)
        positions = height * width * (len(dataset) if dataset is not None else 1)
        concept = {
            **base,
            "layer": layer,
            "concept_layer": target,
            "k": max(1, min(config.concepts, channels_, positions, config.concept_positions)),
            "max_positions": config.concept_positions,
            # the sample's keys per (image, position) and patches among the sampled positions:
            # a page made before (stream-order keys, patches over every position) is redone
            "sampling": "per-image keys; patches among the sample",
            **data,
            "render": {**recipe, "seed": seed, "precision": precision},
            "heatmap_images": [shown.digest for shown in images],
            "seed": seed,
        }
        plan.artifacts.append(make_artifact("concepts", layer, concept))
    for shown in images:
        common = {**base, "image": shown.name, "image_digest": shown.digest, "seed": seed}
        dream = {**dream_recipe(config.dream, dream_layers), "precision": precision}
        plan.artifacts.append(make_artifact("dream", shown.name, {**common, **dream}))
        attribution: dict[str, Any] = {**common, "methods": list(config.methods)}
        if "scorecam" in config.methods:
            # Score-CAM's masked passes follow amp: what they run in (as the method resolves it
            # for this model) is part of the key, so a folder made otherwise is redone
            scorecam = ScoreCAM(loaded, amp=as_run_options(run).amp)
            attribution["scorecam_precision"] = scorecam.options()["precision"]
        plan.artifacts.append(make_artifact("attribution", shown.name, attribution))
    if ablation is not None:
        plan.artifacts.append(
            make_artifact(
                "ablation",
                "",
                {"file": str(ablation.resolve()), "digest": files_digest([ablation])},
            )
        )
    return plan
