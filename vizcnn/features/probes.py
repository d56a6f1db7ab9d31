"""Linear probes: how linearly decodable the labels are at each depth of a network.

Alain & Bengio (2016), "Understanding intermediate layers using linear classifier probes": for
each chosen layer, a linear classifier is fitted on the layer's features of a labelled data set
and scored on held-out images. Here the features are the layer's output averaged over space (a
map `(B, C, H, W)` gives C numbers per image, as a global average pool would; a vector
`(B, D)` is used as it is), and the classifier is scikit-learn's `LogisticRegression`
(multinomial, L2, lbfgs) on standardized features (mean and scale of the training split).

One forward pass per batch feeds every layer: hooks on all chosen layers at once
(`vizcnn.hooks.capture`), each output pooled as the pass goes, so memory holds
N x sum(C) numbers, never the activations' spatial size. The split is scikit-learn's
`train_test_split`, stratified and seeded: for `digits` with the default fraction 0.25 and
seed 0 it is exactly the split `lenet5_digits` was trained on, so its held-out images are
images that model never saw.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from vizcnn.core.devices import Seed, draw_seed
from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import collate
from vizcnn.data.labelled import DIGITS, LabelledImages, open_labelled_images
from vizcnn.hooks import Layer, capture, find_module, layer_names, model_guard, parse_layer
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight

__all__ = [
    "DEFAULT_BATCH",
    "LayerProbe",
    "ProbeConfig",
    "ProbeResult",
    "fit_probe",
    "pool_features",
    "probe_layers",
    "probe_split",
    "stage_outputs",
]

DEFAULT_BATCH = 64  # images per forward pass where `RunOptions.batch` is None
ModelClasses = Literal["names", "index", "off"]


@dataclass(frozen=True)
class ProbeConfig:
    """What to probe and how (`probe_layers`, `vizcnn.runs.probe_folder`)."""

    # layer specs or submodules; () = the model's stage outputs (`stage_outputs`, as
    # `vizcnn layers --stages` lists them)
    layers: tuple[Layer, ...] = ()
    test_fraction: float = 0.25  # share of each class held out to score the probes
    C: float = 1.0  # scikit-learn's C: inverse strength of the L2 penalty
    max_iter: int = 1000  # lbfgs iterations at most per probe
    standardize: bool = True  # features scaled to mean 0, variance 1 on the training split
    crops: int = 16  # data `sample-crops`: crops per bundled photo
    # when the model's own accuracy is shown: "names" (its class names equal the data's, in
    # order; a model without names: the class counts agree), "index" (data class i is logit i
    # whenever the counts agree, e.g. ImageNet's synset folders), "off" (never)
    model_classes: ModelClasses = "names"

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise VizError(
                f"ProbeConfig.test_fraction must lie strictly between 0 and 1, got {self.test_fraction}"
            )
        if not self.C > 0:
            raise VizError(f"ProbeConfig.C must be positive, got {self.C}")
        if self.max_iter < 1:
            raise VizError(f"ProbeConfig.max_iter must be at least 1, got {self.max_iter}")
        if self.crops < 1:
            raise VizError(f"ProbeConfig.crops must be at least 1, got {self.crops}")
        if self.model_classes not in ("names", "index", "off"):
            raise VizError(
                f"ProbeConfig.model_classes {self.model_classes!r} invalid; use names, index or off"
            )


@dataclass
class LayerProbe:
    """One layer's probe."""

    layer: str  # layer spec
    depth: int  # position among the probed layers in the forward pass (0 = first to run)
    features: int  # feature dimension (channels of a map)
    train_accuracy: float
    test_accuracy: float
    iterations: int  # lbfgs iterations used
    converged: bool  # False: stopped at `max_iter`


@dataclass
class ProbeResult:
    """Accuracy of a linear probe per layer, beside the model's own and chance."""

    model: str
    data: str
    classes: list[str]
    layers: list[LayerProbe]  # in forward order
    images: int  # usable (readable) images
    train_images: int
    test_images: int
    test_fraction: float
    seed: int  # the split's seed (scikit-learn's random_state)
    chance: float  # held-out accuracy of always answering the training split's majority class
    model_accuracy: float | None  # the model's top-1 on the held-out images; None: not shown
    model_note: str  # why the model's accuracy is shown or not
    notes: list[str] = field(default_factory=list)  # caveats (split, unreadable images)
    unreadable: list[str] = field(default_factory=list)  # names of images skipped
    forward_seconds: float = 0.0  # the pass over the data
    fit_seconds: float = 0.0  # the regressions

    @property
    def best(self) -> LayerProbe:
        """The layer whose probe scores best on the held-out images (the first of equals)."""
        return max(self.layers, key=lambda p: p.test_accuracy)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["uniform_chance"] = 1.0 / len(self.classes) if self.classes else None
        return result

    def markdown(self) -> str:
        """The table: one row per layer, then the model's accuracy and chance."""
        lines = [
            "| depth | layer | features | train accuracy | held-out accuracy |",
            "|---:|---|---:|---:|---:|",
        ]
        for probe in self.layers:
            mark = "" if probe.converged else " (not converged)"
            lines.append(
                f"| {probe.depth} | `{probe.layer}` | {probe.features} | "
                f"{probe.train_accuracy:.3f} | {probe.test_accuracy:.3f}{mark} |"
            )
        model = (
            f"{self.model_accuracy:.3f} ({self.model_note})"
            if self.model_accuracy is not None
            else self.model_note
        )
        lines += [
            "",
            f"- model's own accuracy on the held-out images: {model}",
            f"- chance (majority class of the training split): {self.chance:.3f}",
            f"- images: {self.images} ({self.train_images} train, {self.test_images} held out, "
            f"stratified, fraction {self.test_fraction:g}, seed {self.seed}), "
            f"{len(self.classes)} classes",
        ]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def stage_outputs(model: ModelLike) -> list[str]:
    """The default probe layers: the model's stage outputs, shallowest first
    (`vizcnn.models.structure.stages`, what `vizcnn layers --stages` lists)."""
    from vizcnn.models.structure import stages

    loaded = as_loaded(model)
    found = [stage.name for stage in stages(loaded)]
    if not found:
        raise VizError(
            f"found no stages in {loaded.name}; name the layers to probe (ProbeConfig.layers)"
        )
    return found


def pool_features(output: torch.Tensor) -> torch.Tensor:
    """A layer's output as one vector per image, float32: maps averaged over every position
    (`(B, C, H, W)` -> `(B, C)`, `(B, C, L)` -> `(B, C)`), vectors `(B, D)` as they are."""
    output = output.detach().float()
    if output.dim() > 2:
        return output.mean(dim=tuple(range(2, output.dim())))
    return output.reshape(output.shape[0], -1)


def probe_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out positions: scikit-learn's `train_test_split`, stratified by label.

    Refuses, in one line, data that cannot be split so: one class only, a class with a single
    image, or fewer held-out (or training) images than classes.
    """
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise VizError(
            f"the data has one class only ({len(labels)} images); a probe needs at least two"
        )
    if counts.min() < 2:
        raise VizError(
            f"class {int(classes[counts.argmin()])} has a single image; a stratified split "
            "needs at least 2 per class"
        )
    held = int(np.ceil(test_fraction * len(labels)))
    if held < len(classes) or len(labels) - held < len(classes):
        raise VizError(
            f"ProbeConfig.test_fraction {test_fraction:g} of {len(labels)} images leaves "
            f"{held} held out and {len(labels) - held} to train; each needs at least one image "
            f"per class ({len(classes)})"
        )
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    return np.sort(train), np.sort(test)


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    config: ProbeConfig | None = None,
) -> tuple[float, float, int, bool]:
    """Fit one logistic regression; returns (train accuracy, held-out accuracy, iterations,
    converged). Features are float64, standardized on the training split (`config.standardize`).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    config = config or ProbeConfig()
    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    if config.standardize:
        mean = train_x.mean(axis=0)
        scale = train_x.std(axis=0)
        scale[scale < 1e-12] = 1.0  # a constant feature stays 0, as StandardScaler leaves it
        train_x = (train_x - mean) / scale
        test_x = (test_x - mean) / scale
    classifier = LogisticRegression(C=config.C, max_iter=config.max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded as `converged` instead
        classifier.fit(train_x, train_y)
    iterations = int(np.max(classifier.n_iter_))
    return (
        float(classifier.score(train_x, train_y)),
        float(classifier.score(test_x, test_y)),
        iterations,
        iterations < config.max_iter,
    )


def _majority_chance(train_y: np.ndarray, test_y: np.ndarray) -> float:
    values, counts = np.unique(train_y, return_counts=True)
    majority = values[np.argmax(counts)]  # the lowest label among equals
    return float(np.mean(test_y == majority))


def _model_classes(loaded: LoadedModel, data: LabelledImages, mode: str) -> tuple[bool, str]:
    """Whether the model's logits are the data's classes, and a note saying why (not)."""
    if mode == "off":
        return False, "not shown: ProbeConfig.model_classes='off'"
    outputs = len(loaded.labels)
    if outputs and outputs != len(data.classes):
        return False, (f"not shown: the model has {outputs} classes, the data {len(data.classes)}")
    if mode == "index" or not loaded.labels:
        return True, "data class i read as the model's logit i"

    def plain(name: str) -> str:
        return name.strip().lower().replace("_", " ")

    if [plain(n) for n in loaded.labels] == [plain(n) for n in data.classes]:
        return True, "the model's class names are the data's"
    differ = next(
        (m, d) for m, d in zip(loaded.labels, data.classes, strict=True) if plain(m) != plain(d)
    )
    return False, (
        f"not shown: the model's classes are not the data's (model {differ[0]!r}, data "
        f"{differ[1]!r}); set ProbeConfig.model_classes='index' if data class i is logit i"
    )


def _open(loaded: LoadedModel, data: Any, config: ProbeConfig, seed: int) -> LabelledImages:
    if isinstance(data, LabelledImages):
        return data
    if isinstance(data, (str, Path)):
        return open_labelled_images(
            data,
            loaded.channels,
            loaded.input_size,
            crops_per_image=config.crops,
            seed=seed,
            resize_crop=loaded.resize_crop,
        )
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        from vizcnn.data.datasets import TensorImages

        images, labels = data
        labels = torch.as_tensor(labels).long()
        if images.dim() != 4:
            raise VizError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels.dim() != 1 or (labels.numel() and int(labels.min()) < 0):
            raise VizError("labels must be a (N,) tensor of class indices 0, 1, ...")
        count = int(labels.max()) + 1 if labels.numel() else 0
        source = TensorImages(images)
        source.size = loaded.input_size
        return LabelledImages(
            source, [int(v) for v in labels], [str(c) for c in range(count)], "tensor"
        )
    raise VizError(
        "data must be digits, sample-crops, an ImageFolder path, a LabelledImages, or a tuple "
        f"(images (N, C, H, W), labels (N,)); got {type(data).__name__}"
    )


def probe_layers(
    model: ModelLike,
    data: str | Path | LabelledImages | tuple[torch.Tensor, torch.Tensor],
    config: ProbeConfig | None = None,
    *,
    run: RunOptions | None = None,
    seed: Seed = 0,
    progress: ProgressCallback = no_progress,
) -> ProbeResult:
    """Fit a linear probe on each layer's pooled features; score it on held-out images.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        data: `digits`, `sample-crops`, an ImageFolder (one sub-folder per class), a
            `LabelledImages` (`vizcnn.data.labelled.open_labelled_images`), or a tuple of images
            `(N, C, H, W)` in [0, 1] and labels `(N,)`.
        config: layers, held-out fraction, regularization, ... (`ProbeConfig`).
        run: how it runs (`RunOptions`: `batch` images per forward pass, None: `DEFAULT_BATCH`;
            `workers`); neither changes the result. The network runs float32 (`amp` ignored).
        seed: the split (and the crops of `sample-crops`); a generator gives one draw.
        progress: called after each batch with images done / total, then once per probe fitted.

    Returns:
        A `ProbeResult`: per layer (forward order) its feature dimension and train / held-out
        accuracy; the model's own held-out accuracy where its classes are the data's; chance.

    Example:
        >>> result = probe_layers(load_model("lenet5_digits"), "digits")
        >>> [(p.layer, round(p.test_accuracy, 2)) for p in result.layers]
    """
    config = config or ProbeConfig()
    run = as_run_options(run)
    loaded = as_loaded(model)
    split_seed = draw_seed(seed)
    specs = layer_names(loaded.module, config.layers) if config.layers else stage_outputs(loaded)
    if len(set(specs)) != len(specs):
        raise VizError(f"ProbeConfig.layers names a layer twice: {', '.join(specs)}")
    for spec in specs:
        find_module(loaded.module, parse_layer(spec).name)
    labelled = _open(loaded, data, config, split_seed)
    if len(labelled) == 0:
        raise VizError(f"no images in {labelled.name!r}; a probe needs labelled images")
    labels = np.asarray(labelled.labels, dtype=np.int64)
    train, test = probe_split(labels, config.test_fraction, split_seed)
    show_model, model_note = _model_classes(loaded, labelled, config.model_classes)
    preflight(loaded, specs, output=show_model)

    features, predictions, valid, order, forward_seconds = _forward(
        loaded, labelled, specs, show_model, run, progress
    )
    unreadable = [labelled.images.names[i] for i in np.flatnonzero(~valid)]
    train, test = train[valid[train]], test[valid[test]]
    if len(np.unique(labels[train])) < 2 or len(test) == 0:
        raise VizError(
            f"too few readable images in {labelled.name!r} ({int(valid.sum())} of "
            f"{len(labels)}) to train and score a probe"
        )
    start = time.perf_counter()
    probes = []
    for depth, spec in enumerate(order):
        matrix = features[spec]
        train_acc, test_acc, iterations, converged = fit_probe(
            matrix[train], labels[train], matrix[test], labels[test], config
        )
        probes.append(
            LayerProbe(
                spec, depth, int(matrix.shape[1]), train_acc, test_acc, iterations, converged
            )
        )
        progress(depth + 1, len(order), f"probe {spec}")
    fit_seconds = time.perf_counter() - start
    model_accuracy = None
    if show_model:
        model_accuracy = float(np.mean(predictions[test] == labels[test]))
    notes = []
    if labelled.name == DIGITS and (config.test_fraction, split_seed) != (0.25, 0):
        notes.append(
            "the held-out images are not lenet5_digits' test split (fraction 0.25, seed 0): a "
            "model trained on digits may have seen some of them"
        )
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable images skipped")
    if not all(p.converged for p in probes):
        notes.append(
            f"some probes stopped at ProbeConfig.max_iter={config.max_iter} before converging"
        )
    return ProbeResult(
        model=loaded.name,
        data=labelled.name,
        classes=list(labelled.classes),
        layers=probes,
        images=int(valid.sum()),
        train_images=len(train),
        test_images=len(test),
        test_fraction=config.test_fraction,
        seed=split_seed,
        chance=_majority_chance(labels[train], labels[test]),
        model_accuracy=model_accuracy,
        model_note=model_note,
        notes=notes,
        unreadable=unreadable,
        forward_seconds=forward_seconds,
        fit_seconds=fit_seconds,
    )


def _forward(
    loaded: LoadedModel,
    labelled: LabelledImages,
    specs: list[str],
    logits: bool,
    run: RunOptions,
    progress: ProgressCallback,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str], float]:
    """One pass over the data: pooled features per layer `(N, C)`, the model's top-1 (-1 where
    not asked), readable mask, the layers in forward order, seconds."""
    total = len(labelled)
    loader = DataLoader(
        Subset(labelled.images, range(total)),
        batch_size=run.batch_or(DEFAULT_BATCH),
        num_workers=run.workers,
        collate_fn=collate,
        shuffle=False,
    )
    features: dict[str, np.ndarray] = {}
    predictions = np.full(total, -1, dtype=np.int64)
    valid = np.zeros(total, dtype=bool)
    order: list[str] = []
    done = 0
    start = time.perf_counter()
    module = loaded.module
    with (
        model_guard(module),
        torch.no_grad(),
        capture(module, specs, stop_early=not logits, detach=True) as acts,
    ):
        for batch in loader:
            if done == 0:
                warn_if_normalized(batch.images)
            index = batch.indices.numpy()
            inputs = loaded.normalize(batch.images.to(loaded.device, loaded.dtype))
            output = acts.run(inputs)
            if not order:
                order = [spec for spec in acts.outputs if spec in specs]
            for spec in specs:
                pooled = pool_features(acts[spec]).cpu().numpy()
                if spec not in features:  # N x C per layer, allocated once
                    features[spec] = np.zeros((total, pooled.shape[1]), dtype=np.float32)
                features[spec][index] = pooled
            if logits:
                top = require_output_tensor(output).float().argmax(dim=1)
                predictions[index] = top.cpu().numpy()
            valid[index] = [not error for error in batch.errors]
            done += len(index)
            progress(done, total, "features")
    return features, predictions, valid, order, time.perf_counter() - start
