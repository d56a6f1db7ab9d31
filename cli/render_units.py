"""`vizcnn render`'s unit options (-l, -c, --channels, --all, --objective, --class,
--position) made into the library's `RenderUnit`s, with the usage errors they can give."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.core.errors import VizError
from vizcnn.core.units import parse_unit, resolve_unit
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis.rendering import layer_channels
from vizcnn.runs.render import RenderUnit, channel_units, class_units, layer_unit

from .model_options import note_default_layer

OBJECTIVES = ("channel", "neuron", "class", "layer")


def _position(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise VizError(f"bad --position {text!r}; write Y,X (e.g. 3,5)") from None
    return y, x


def _class_only(options: dict[str, Any], kind: str) -> None:
    """Usage errors of --class: it renders logits, so no layer-unit option goes with it."""
    if kind != "class":
        raise click.UsageError(f"--class renders class logits; drop it or --objective {kind}")
    given = [
        flag
        for flag, key in (
            ("-l", "layer"),
            ("-c", "channel"),
            ("--channels", "channels"),
            ("--all", "all_channels"),
            ("--position", "position"),
        )
        if options[key]
    ]
    if given:
        raise click.UsageError(
            f"--class renders class logits; {', '.join(given)} select layer units "
            "(render those in a separate command)"
        )


def build_units(loaded: LoadedModel, options: dict[str, Any]) -> list[RenderUnit]:
    """The units the options ask for, made by the library's unit constructors."""
    classes: tuple[str, ...] = options["classes"]
    kind = options["objective"] or ("class" if classes else "channel")
    if classes:
        _class_only(options, kind)
        return class_units(loaded, classes)
    if kind == "class":
        raise VizError("--objective class needs --class NAME or index (e.g. --class espresso)")
    if not options["layer"]:
        note_default_layer(loaded, "render", options)
    spec = parse_unit(options["layer"] or loaded.layers_for("render")[0])
    layer = spec.layer_spec
    if kind == "layer":
        if spec.channels_text is not None:
            raise VizError(f"--objective layer renders the whole layer; drop :{spec.channels_text}")
        return [layer_unit(layer)]
    if options["channel"]:
        if spec.channels_text is not None or options["channels"] or options["all_channels"]:
            raise click.UsageError(
                "choose channels one way: -l LAYER:CHANNELS, --channels, -c or --all"
            )
        indices: tuple[int, ...] = tuple(options["channel"])
    else:  # LAYER:CHANNELS, --channels, --all, or the default selection
        count = lambda name: layer_channels(loaded, name)  # noqa: E731
        _, indices = resolve_unit(
            spec, count, channels=options["channels"], all_channels=options["all_channels"]
        )
    at = _position(options["position"]) if kind == "neuron" else None
    return channel_units(loaded, layer, indices, neuron_at=at, weight=spec.weight)
