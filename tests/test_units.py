"""The one unit grammar `LAYER[#k][:CHANNELS][@WEIGHT]`, and that render and dream read it alike."""

from __future__ import annotations

import pytest
from _render_models import tiny_loaded

from vizcnn.core.errors import VizError
from vizcnn.core.units import DEFAULT_CHANNELS, UnitSpec, is_closed, parse_unit, resolve_unit
from vizcnn.deepdream.dreaming import DreamConfig, parse_layer_target
from vizcnn.optvis.rendering import expand_units

# spec -> (layer, call, channels text, weight, channels of a 112-channel layer)
TABLE: dict[str, tuple[str, int, str | None, float, tuple[int, ...] | None]] = {
    "_blocks.9": ("_blocks.9", 0, None, 1.0, None),
    "_blocks.9:3": ("_blocks.9", 0, "3", 1.0, (3,)),
    "_blocks.9:0:4": ("_blocks.9", 0, "0:4", 1.0, (0, 1, 2, 3)),
    "_blocks.9:0-3": ("_blocks.9", 0, "0-3", 1.0, (0, 1, 2, 3)),
    "_blocks.9:0:8:2": ("_blocks.9", 0, "0:8:2", 1.0, (0, 2, 4, 6)),
    "_blocks.9:3,17": ("_blocks.9", 0, "3,17", 1.0, (3, 17)),
    "_blocks.9:110:": ("_blocks.9", 0, "110:", 1.0, (110, 111)),
    "_blocks.9:all": ("_blocks.9", 0, "all", 1.0, tuple(range(112))),
    "_blocks.9@2": ("_blocks.9", 0, None, 2.0, None),
    "_blocks.9:0-1@-0.5": ("_blocks.9", 0, "0-1", -0.5, (0, 1)),
    "_swish#3": ("_swish", 3, None, 1.0, None),
    "_swish#3:5@1e-1": ("_swish", 3, "5", 0.1, (5,)),
    " features.8#1 : 2 ": ("features.8", 1, "2", 1.0, (2,)),
}


@pytest.mark.parametrize("spec", list(TABLE))
def test_parse_unit_table(spec: str) -> None:
    layer, call, text, weight, channels = TABLE[spec]
    unit = parse_unit(spec)
    assert unit == UnitSpec(layer, call, text, weight)
    assert unit.layer_spec == (layer if call == 0 else f"{layer}#{call}")
    assert unit.channels(112, default=None) == channels
    assert parse_unit(unit.spec) == unit  # the text form round-trips
    assert is_closed(unit) == (text is not None and text not in ("all", "110:"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no layer name"),
        (":3", "no layer name"),
        ("#2:3", "no layer name"),
        ("x:", "empty channel list"),
        ("x#a", "bad call index"),
        ("x#", "bad call index"),
        ("x@", "bad weight"),
        ("x@two", "bad weight"),
        ("x@inf", "finite"),
        ("x@nan", "finite"),
        ("x@1@2", "more than one @WEIGHT"),
        ("x:5-3", "runs backwards"),
        ("x:a", "bad channels"),
        ("x:1:2:3:4", "bad channels"),
        ("x:0:4:0", "step"),
    ],
)
def test_parse_unit_errors_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(VizError, match=message) as info:
        parse_unit(spec)
    assert "\n" not in str(info.value)


def test_range_errors_name_the_layer_and_default_selection_is_clipped() -> None:
    with pytest.raises(VizError, match=r"layer 'x#1': channel 9 out of range; valid: 0\.\.3"):
        parse_unit("x#1:9").channels(4)
    start, stop = (int(v) for v in DEFAULT_CHANNELS.split(":"))
    assert parse_unit("x").channels(200) == tuple(range(start, stop))
    assert parse_unit("x").channels(3) == (0, 1, 2)  # a small layer: all of it
    assert parse_unit("x").channels(3, default=None) is None


@pytest.mark.parametrize(
    "spec",
    ["features.0:0:3", "features.0:1-3", "features.0:0:4:2", "features.0:3,1", "features.0:2:"],
)
def test_render_and_dream_take_the_same_channels(spec: str) -> None:
    loaded = tiny_loaded()  # features.0 has 4 channels
    rendered = [int(obj.name.rsplit(":", 1)[1]) for obj in expand_units(loaded, spec)]
    (dreamed,) = DreamConfig(layers=(spec,)).targets(loaded)
    assert dreamed.layer == "features.0"
    assert dreamed.channels == tuple(rendered)
    if is_closed(parse_unit(spec)):  # no model needed to read a closed selection
        assert parse_layer_target(spec).channels == tuple(rendered)


def test_resolve_unit_merges_the_command_line_ways() -> None:
    def count(layer: str) -> int:
        assert layer == "x#1"  # the probe gets the layer spec, call index included
        return 40

    assert resolve_unit("x#1:0-2", count) == ("x#1", (0, 1, 2))
    assert resolve_unit("x#1", count, channels="5,6") == ("x#1", (5, 6))
    assert resolve_unit("x#1", count, all_channels=True) == ("x#1", tuple(range(40)))
    assert resolve_unit("x#1", count) == ("x#1", tuple(range(16)))
    with pytest.raises(VizError, match="one way"):
        resolve_unit("x#1:3", count, channels="4")
