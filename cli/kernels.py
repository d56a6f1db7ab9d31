"""`vizcnn kernels`: classic hand-made kernels applied to an image with conv2d."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.features.kernels import KernelConfig
from vizcnn.runs.features import kernels_file

from .common import friendly_errors
from .features import SAMPLES_EPILOG


@click.command("kernels", epilog=SAMPLES_EPILOG)
@click.argument("image")
@click.option(
    "-k",
    "--kernel",
    "kernels",
    multiple=True,
    help="Only these kernels (repeatable): identity, 'edge (diagonal)', 'edge (4-neighbour)', 'edge (8-neighbour)', sharpen, 'box blur', 'gaussian blur'.",
)
@click.option(
    "--padding",
    type=click.Choice(["replicate", "zeros", "valid"]),
    default=KernelConfig.padding,
    show_default=True,
    help="How conv2d treats the border.",
)
@click.option(
    "--size",
    default=KernelConfig.size,
    show_default=True,
    help="Resize so the shorter side has this many pixels (0 = as is).",
)
@click.option("--gray", is_flag=True, help="Convert the image to grayscale first.")
@click.option(
    "-o", "--output", default="kernels.png", show_default=True, help="PNG (a .json beside it)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps.")
@friendly_errors
def kernels_command(image: str, output: str, device: str, **options: Any) -> None:
    """Classic hand-made kernels applied to IMAGE with conv2d, each beside its matrix.

    Identity, three edge detectors, sharpen, box blur and Gaussian blur: what one
    convolution does, before a network learns its own kernels.

    \b
    Examples:
      vizcnn kernels sample:coffee -o kernels.png
      vizcnn kernels photo.jpg -k sharpen -k 'edge (8-neighbour)' --gray -o k.png
    """
    run = kernels_file(image, output, KernelConfig(**options), device=device)
    click.echo(
        f"wrote {run.path} ({len(run.names)} kernels on {image}, {options['padding']} padding)"
    )
