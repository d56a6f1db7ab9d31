"""`vizcnn probe`: linear probes per layer, how linearly decodable the labels are at each depth."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.features.probes import DEFAULT_BATCH, ProbeConfig
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.probe import probe_folder

from .common import device_from, friendly_errors, run_options
from .model_options import model_options, open_model
from .options import FINITE_FLOAT, batch_option, output_options, run_from, workers_option
from .progress import progress_bar

EPILOG = (
    "DATA: digits (scikit-learn's 1797 digits, labels 0-9; with the default split the held-out "
    "images are lenet5_digits' test split), sample-crops (random crops of the 16 bundled photos, "
    "each labelled with its photo), or a folder with one sub-folder of images per class."
)


def _layers(layer: tuple[str, ...], layers: str | None) -> tuple[str, ...]:
    listed = [part.strip() for part in (layers or "").split(",") if part.strip()]
    return (*layer, *listed)


@click.command("probe", epilog=EPILOG)
@click.argument("data")
@model_options
@click.option(
    "-l",
    "--layer",
    "layer",
    multiple=True,
    metavar="LAYER",
    help="Layer to probe, repeatable (see `vizcnn layers`). Default: the model's stage outputs "
    "(`vizcnn layers --stages`).",
)
@click.option(
    "--layers",
    "layers",
    default=None,
    metavar="L1,L2,...",
    help="Layers to probe as one comma-separated list (added to any -l).",
)
@click.option(
    "--test-fraction",
    type=FINITE_FLOAT,
    default=ProbeConfig.test_fraction,
    show_default=True,
    help="Share of each class held out to score the probes (stratified split, --seed).",
)
@click.option(
    "-C",
    "C",
    type=FINITE_FLOAT,
    default=ProbeConfig.C,
    show_default=True,
    help="Inverse L2 strength of the logistic regression (scikit-learn's C).",
)
@click.option(
    "--max-iter",
    type=int,
    default=ProbeConfig.max_iter,
    show_default=True,
    help="lbfgs iterations at most per probe.",
)
@click.option(
    "--no-standardize",
    "no_standardize",
    is_flag=True,
    help="Fit on raw pooled features (default: scaled to mean 0, variance 1 on the train split).",
)
@click.option(
    "--crops",
    type=int,
    default=ProbeConfig.crops,
    show_default=True,
    help="sample-crops: crops per bundled photo.",
)
@click.option(
    "--model-classes",
    type=click.Choice(["names", "index", "off"]),
    default=ProbeConfig.model_classes,
    show_default=True,
    help="When the model's own accuracy is shown: names (its class names are the data's), "
    "index (data class i is logit i), off.",
)
@batch_option(DEFAULT_BATCH)
@workers_option
@output_options("Output folder: probes.json, probes.md, probes.png.")
@run_options
@friendly_errors
def probe_command(
    data: str,
    layer: tuple[str, ...],
    layers: str | None,
    test_fraction: float,
    C: float,  # noqa: N803
    max_iter: int,
    no_standardize: bool,
    crops: int,
    model_classes: str,
    output: str,
    **options: Any,
) -> None:
    """Linear probes: fit a logistic regression on each layer's features, score it held out.

    Each chosen layer's output is averaged over space (global average pooling), for every
    image of DATA, in one forward pass per batch that feeds all layers at once; a logistic
    regression per layer is fitted on a stratified training split and scored on the held-out
    images (Alain & Bengio 2016). The curve shows where in the network the classes become
    linearly separable, beside the model's own accuracy on the same held-out images (when its
    classes are the data's) and chance (the training split's majority class).

    \b
    Examples:
      vizcnn probe digits -m lenet5_digits -o probe/
      vizcnn probe digits -m lenet5_digits --layers features.2,features.5,classifier.4 -o probe/
      vizcnn probe sample-crops -o probe_lite0/            lite0, labels = the photo of each crop
      vizcnn probe photos/ -m resnet18 -l layer2 -l layer4 -o probe_resnet/
    """
    config = ProbeConfig(
        layers=_layers(layer, layers),
        test_fraction=test_fraction,
        C=C,
        max_iter=max_iter,
        standardize=not no_standardize,
        crops=crops,
        model_classes=model_classes,  # type: ignore[arg-type]
    )
    ensure_writable(output, "folder")
    loaded = open_model(options, device_from(options))
    with progress_bar(not options["quiet"], unit="img") as progress:
        run = probe_folder(
            loaded,
            data,
            output,
            config,
            seed=options["seed"],
            progress=progress,
            run=run_from(options),
        )
    result = run.result
    width = max(len(p.layer) for p in result.layers)
    click.echo(f"{'layer'.ljust(width)}  features  train  held-out")
    for probe in result.layers:
        mark = "" if probe.converged else "  (not converged)"
        click.echo(
            f"{probe.layer.ljust(width)}  {probe.features:>8}  {probe.train_accuracy:5.3f}  "
            f"{probe.test_accuracy:8.3f}{mark}"
        )
    model = (
        f"{result.model_accuracy:.3f}" if result.model_accuracy is not None else result.model_note
    )
    click.echo(f"model's own: {model}; chance: {result.chance:.3f}")
    click.echo(
        f"wrote {run.folder}/probes.json, .md, .png ({loaded.name} on {result.data}: "
        f"{result.images} images, {result.train_images} train / {result.test_images} held out, "
        f"{len(result.classes)} classes, {run.seconds:.1f} s)"
    )
