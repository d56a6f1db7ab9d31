"""`vizcnn concepts`: a layer's activations over a data set factorized into k concepts (NMF)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from vizcnn.concepts.config import ConceptConfig
from vizcnn.concepts.discovery import DEFAULT_BATCH
from vizcnn.data.datasets import SAMPLE_CROPS
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.concepts import concepts_folder

from .common import device_from, friendly_errors, run_options
from .model_options import model_options, open_model
from .options import batch_option, data_options, output_options, run_from, shown, workers_option
from .progress import progress_bar

D = ConceptConfig()


@click.command("concepts")
@click.argument("data")
@model_options
@click.option(
    "-l",
    "--layer",
    default=None,
    metavar="LAYER",
    help="A non-negative layer: a ReLU / ReLU6 output, `name#k` for its k-th call (default: the "
    "last ReLU of the model's mining layer; for efficientnet_lite0 _blocks.6._swish#1).",
)
@shown("-k", "k", type=int, default=D.k, help="Concepts to find.")
@click.option(
    "--class",
    "target_class",
    default=None,
    help="Class mode: factorize only the images the model predicts as this class (name or "
    "index) and rank the concepts by their importance for it.",
)
@shown("--max-positions", type=int, default=D.max_positions,
       help="Cap of the uniform sample of positions that is factorized (memory is flat in the "
       "number of images).")  # fmt: skip
@shown("--patches", type=int, default=D.patches, help="Top patches per concept.")
@shown("--thumbnail", type=int, default=D.thumbnail, help="Patch tile side in pixels.")
@shown("--heatmap-images", type=int, default=D.heatmap_images,
       help="Images the heatmaps are shown on.")  # fmt: skip
@shown("--importance-images", type=int, default=D.importance_images,
       help="Images the removal importance is averaged over.")  # fmt: skip
@shown("--steps", type=int, default=D.render.steps, help="Render steps per concept direction.")
@click.option("--image-size", "image_size", type=int, default=D.render.size,
              help="Rendered picture side in pixels (default 128, or the model's input size "
              "when smaller).")  # fmt: skip
@batch_option(DEFAULT_BATCH)
@workers_option
@data_options(SAMPLE_CROPS)
@output_options("Output folder: concepts.png, concepts.json, concept_NN_*.png.")
@run_options
@friendly_errors
def concepts_command(
    data: str,
    layer: str | None,
    k: int,
    target_class: str | None,
    max_positions: int,
    patches: int,
    thumbnail: int,
    heatmap_images: int,
    importance_images: int,
    steps: int,
    image_size: int | None,
    output: str,
    **options: Any,
) -> None:
    """Concepts of a layer: NMF of its activations over DATA into k directions (CRAFT).

    DATA is a folder of images, a .txt list of paths, or `samples` (crops of the bundled
    photos). One pass keeps a uniform sample of at most --max-positions spatial positions;
    NMF factorizes it into k concept directions. Per concept: the render of its direction, its
    top patches (under the receptive field), heatmaps on a few images, and its removal
    importance (how much the logit falls when the concept is taken out of the layer). With
    --class, only the images predicted as that class are factorized and concepts are ranked
    by importance for it.

    \b
    Examples:
      vizcnn concepts samples -k 8 -o concepts/
      vizcnn concepts samples -l _blocks.9._swish#1 -k 6 --class espresso -o espresso/
      vizcnn concepts photos/ -m resnet18 -l layer3 -k 8 -o resnet_concepts/
    """
    config = ConceptConfig(
        layer=layer,
        k=k,
        target_class=target_class,
        max_positions=max_positions,
        patches=patches,
        thumbnail=thumbnail,
        heatmap_images=heatmap_images,
        importance_images=importance_images,
        render=replace(D.render, steps=steps, size=image_size),
        limit=options["limit"],
        crops=options["crops"],
    )
    ensure_writable(output, "folder")
    loaded = open_model(options, device_from(options))
    with progress_bar(not options["quiet"], unit="step") as progress:
        run = concepts_folder(
            loaded,
            data,
            output,
            config,
            seed=options["seed"],
            progress=progress,
            run=run_from(options),
        )
    concepts = run.concepts
    importances = concepts.importances.tolist() if concepts.importances is not None else []
    share = concepts.share().tolist()
    click.echo(f"concept  importance  share  ({concepts.importance_target})")
    for i in range(concepts.k):
        value = f"{importances[i]:+.3f}" if importances else "-"
        click.echo(f"{i:>7}  {value:>10}  {share[i]:5.0%}")
    click.echo(
        f"wrote {run.folder}/concepts.png, concepts.json and {len(run.files) - 2} concept PNGs "
        f"({loaded.name} {concepts.layer}: {len(concepts.image_ids)} images, "
        f"{concepts.sampled} of {concepts.positions_seen} positions sampled (cap "
        f"{concepts.max_positions}), reconstruction error {concepts.reconstruction_error:.3f}, "
        f"{run.seconds:.1f} s)"
    )
