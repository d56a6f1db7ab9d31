"""The `vizcnn` command group: one subcommand per technique."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """A command group that imports a subcommand's module only when that command is asked for.

    Every technique module pulls in its own dependencies (captum for `attribute`, matplotlib for
    the figures); importing all of them cost every command about a second of start-up, which is
    most of a short render's time. `vizcnn --help` still imports them all, for their short help.
    """

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy  # command name -> "module:attribute", relative to this package

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as error:  # an unknown command: suggest the close ones
            close = difflib.get_close_matches(args[0], self.list_commands(ctx), n=3) if args else []
            if not close:
                raise
            hint = f"{error.message} Did you mean: {', '.join(close)}?"
            raise click.UsageError(hint, ctx) from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attribute = self.lazy[cmd_name].split(":")
            module = importlib.import_module(module_name, package=__package__)
            command: click.Command = getattr(module, attribute)
            return command
        return super().get_command(ctx, cmd_name)


LAZY_COMMANDS = {
    "mine": ".mine:mine_command",
    "dream": ".dream:dream_command",
    "render": ".render:render_command",
    "ablate": ".ablate:ablate_command",
    "attribute": ".attribute:attribute_command",
    "filters": ".features:filters_command",
    "featuremaps": ".features:featuremaps_command",
    "kernels": ".kernels:kernels_command",
    "equivariance": ".equivariance:equivariance_command",
    "neighbors": ".neighbors:neighbors_command",
    "probe": ".probe:probe_command",
    "accentuate": ".accentuate:accentuate_command",
    "concepts": ".concepts:concepts_command",
    "report": ".report:report_command",
    "models": ".models:models_command",
    "layers": ".models:layers_command",
    "train-digits": ".models:train_digits_command",
}


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="vizcnn")
def app() -> None:
    """vizcnn: see what a convolutional network has learned.

    \b
    Start here (offline, default model efficientnet_lite0):
      vizcnn dream sample:coffee -o dream.png      DeepDream a bundled photo
      vizcnn layers                                 layer names, shapes, receptive fields
      vizcnn render -l _blocks.9 -c 0 -c 1 -o out/  images that excite channels
      vizcnn mine samples -l _blocks.4 -o mined/    top-9 patches per channel
      vizcnn ablate digits -m lenet5_digits -o ab/  layer-removal ablations
      vizcnn attribute sample:coffee -o attr/       which pixels made the prediction
      vizcnn filters -o filters.png                 first-layer filters as a grid
      vizcnn neighbors sample:coffee samples        nearest images in feature space
      vizcnn probe digits -m lenet5_digits -o pr/   linear probes: accuracy by depth
      vizcnn accentuate sample:coffee -l _blocks.9:56 -o a.png   what in a photo drives a unit
      vizcnn concepts samples -k 8 -o concepts/     a layer's concepts (NMF), CRAFT-style
    Every command takes --help.
    """


def main() -> None:
    app()


if __name__ == "__main__":
    main()
