"""`RunOptions`: how a technique runs, apart from its recipe; the CLI's defaults are the library's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from _render_models import tiny_loaded

from vizcnn.ablation.training import TrainConfig
from vizcnn.attribution import maps as attribution_maps
from vizcnn.cli.flags import as_flags
from vizcnn.cli.main import LAZY_COMMANDS, app
from vizcnn.concepts import discovery as concepts_discovery
from vizcnn.concepts.config import ConceptConfig
from vizcnn.core.errors import VizError
from vizcnn.core.precision import AUTO
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.deepdream.config import DreamConfig
from vizcnn.deepdream.zoom import ZoomConfig
from vizcnn.features import equivariance, neighbors, probes
from vizcnn.features.featuremaps import FeatureMapConfig
from vizcnn.features.filters import FilterConfig
from vizcnn.features.kernels import KernelConfig
from vizcnn.features.probes import ProbeConfig
from vizcnn.mining import streaming
from vizcnn.mining.streaming import MineConfig
from vizcnn.optvis import accentuation
from vizcnn.optvis import config as render_config
from vizcnn.optvis.config import CHUNK_SEED_STRIDE, RenderConfig
from vizcnn.optvis.rendering import render
from vizcnn.report.config import REPORT_BATCH, ReportConfig
from vizcnn.runs.render import render_folder


def test_defaults() -> None:
    run = RunOptions()
    assert (run.amp, run.batch, run.workers) == (AUTO, None, 0)
    assert (run.deterministic, run.channels_last, run.check_every) == (False, True, 16)
    assert as_run_options(None) == run
    assert RunOptions(batch=3).batch_or(16) == 3 and run.batch_or(16) == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.batch = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"batch": 0}, "batch"),
        ({"batch": -2}, "batch"),
        ({"batch": True}, "batch"),
        ({"workers": -1}, "workers"),
        ({"check_every": 0}, "check_every"),
        ({"amp": "yes"}, "amp"),
    ],
)
def test_validation_names_the_field_in_one_line(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(VizError) as info:
        RunOptions(**fields)
    message = str(info.value)
    assert message.startswith(named) and "\n" not in message


def test_cli_names_the_flags_of_run_option_messages() -> None:
    for fields, flag in (({"batch": 0}, "--batch"), ({"workers": -1}, "--workers")):
        with pytest.raises(VizError) as info:
            RunOptions(**fields)
        assert as_flags(str(info.value)).startswith(f"{flag} must be")


def test_as_run_options_refuses_other_types() -> None:
    with pytest.raises(VizError, match="run must be a RunOptions"):
        as_run_options({"batch": 2})  # type: ignore[arg-type]


def test_recipe_configs_hold_no_run_options() -> None:
    run_fields = {f.name for f in dataclasses.fields(RunOptions)} | {"batch_size"}
    for config in (
        RenderConfig,
        DreamConfig,
        MineConfig,
        ReportConfig,
        neighbors.NeighborsConfig,
        ProbeConfig,
    ):
        names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
        assert not names & run_fields, config
    assert not {"batch_size"} & {
        f.name for f in dataclasses.fields(equivariance.EquivarianceConfig)
    }


def test_render_batch_makes_chunks_seeded_by_position() -> None:
    """Oracle: render with run=RunOptions(batch=4) is, chunk by chunk, the render of that
    chunk's units alone (default run options: one chunk) seeded seed + n * stride, float32."""
    loaded = tiny_loaded()
    units = [f"features.0:{c}" for c in range(4)] + ["features.2:0", "features.2:1"]
    config = RenderConfig(steps=4, size=10)
    run = RunOptions(batch=4, amp=False)
    result = render(loaded, units, config, seed=5, run=run)
    assert result.images.dtype == torch.float32
    for number, start in enumerate(range(0, len(units), 4)):
        alone = render(
            loaded,
            units[start : start + 4],
            config,
            seed=5 + CHUNK_SEED_STRIDE * number,
            run=RunOptions(amp=False),
        )
        assert torch.equal(alone.images, result.images[start : start + 4])
        assert torch.equal(alone.values, result.values[start : start + 4])
    # the batch changes the pictures: under the default batch all six units share chunk 0
    default = render(loaded, units, config, seed=5, run=RunOptions(amp=False))
    assert not torch.equal(default.images, result.images)


def test_render_folder_records_the_batch_and_resume_keeps_it(tmp_path: Path) -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=2, size=10)
    folder = tmp_path / "r"
    first = render_folder(loaded, "features.0:0-2", folder, config, run=RunOptions(batch=2))
    manifest = json.loads((folder / "manifest.json").read_text())
    options = manifest["provenance"]["options"]
    assert options["batch"] == 2 and options["precision"] == "float32"
    assert "amp" not in options and first.rendered == 3
    again = render_folder(loaded, "features.0:0-2", folder, config, run=RunOptions(batch=2))
    assert again.skipped == 3 and again.rendered == 0
    # deterministic kernels change no result on the CPU, but are recorded as before
    with pytest.raises(VizError, match="batch"):
        render_folder(loaded, "features.0:0-2", folder, config, run=RunOptions(batch=3))


# Each command's click options whose default reads a library default, by parameter name:
# (config class, field) or a value. `batch` is the technique's own default (RunOptions.batch
# None); every other run option is RunOptions'.
_RUN = {
    "amp": None,  # neither flag: RunOptions.amp
    "deterministic": RunOptions.deterministic,
    "workers": RunOptions.workers,
}
_CONFIGS: dict[str, tuple[tuple[type, ...], dict[str, Any]]] = {
    "render": (
        (RenderConfig,),
        {"batch": render_config.DEFAULT_BATCH, "image_size": RenderConfig.size},
    ),
    "dream": ((DreamConfig,), {}),
    "mine": ((MineConfig,), {"batch": streaming.DEFAULT_BATCH}),
    "attribute": ((), {"batch": attribution_maps.DEFAULT_BATCH}),
    "neighbors": ((neighbors.NeighborsConfig,), {"batch": neighbors.DEFAULT_BATCH}),
    "equivariance": ((equivariance.EquivarianceConfig,), {"batch": equivariance.DEFAULT_BATCH}),
    # --images repeats; none given: ReportConfig.images
    # --steps, --image-size, -k, --dream-*: fields of the techniques' configs inside ReportConfig
    "report": (
        (ReportConfig,),
        {
            "batch": REPORT_BATCH,
            "images": None,
            "steps": ReportConfig().render.steps,
            "image_size": ReportConfig().render.size,
            "diversity": ReportConfig().render.diversity,
            "k": ReportConfig().mine.k,
            "dream_octaves": ReportConfig().dream.octaves,
            "dream_steps": ReportConfig().dream.steps,
        },
    ),
    # --retrain and --epochs: None, the built-in digits experiment has its own (experiment_config)
    "ablate": (
        (TrainConfig,),
        {"batch": TrainConfig.batch_size, "retrain": None, "epochs": None},
    ),
    "filters": ((FilterConfig,), {}),
    "featuremaps": ((FeatureMapConfig,), {}),
    "kernels": ((KernelConfig,), {}),
    # --class: ConceptConfig.target_class; --steps and --image-size: its RenderConfig's fields
    "concepts": (
        (ConceptConfig,),
        {
            "batch": concepts_discovery.DEFAULT_BATCH,
            "target_class": None,
            "steps": ConceptConfig().render.steps,
            "image_size": ConceptConfig().render.size,
        },
    ),
    # -l and --layers both fill ProbeConfig.layers (none given: ()); --no-standardize: its negation
    # accentuate's arguments are keyword defaults of `accentuate`, not a config's fields
    "accentuate": (
        (),
        {
            "batch": accentuation.ACCENT_BATCH,
            "steps": accentuation.DEFAULT_STEPS,
            "lr": accentuation.DEFAULT_LR,
            "crops": accentuation.DEFAULT_CROPS,
            "reg_weight": accentuation.DEFAULT_REG_WEIGHT,
            "distance": "l2",
            "reg_layer": None,
            "size": None,
        },
    ),
    "probe": (
        (ProbeConfig,),
        {"batch": probes.DEFAULT_BATCH, "layer": None, "layers": None, "no_standardize": False},
    ),
}


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(app)
    return {name: app.get_command(ctx, name) for name in app.list_commands(ctx)}  # type: ignore[misc]


def test_every_cli_default_is_the_library_default() -> None:
    commands = _commands()
    assert set(_CONFIGS) <= set(commands) and set(LAZY_COMMANDS) <= set(commands)
    checked = 0
    for name, command in commands.items():
        configs, expected = _CONFIGS.get(name, ((), {}))
        for param in command.params:
            key = param.name or ""
            if key in expected:
                want = expected[key]
            elif key in _RUN and isinstance(param, click.Option):
                want = _RUN[key]
            elif any(key in {f.name for f in dataclasses.fields(c)} for c in configs):
                config = next(c for c in configs if key in {f.name for f in dataclasses.fields(c)})
                field = next(f for f in dataclasses.fields(config) if f.name == key)
                if field.default is dataclasses.MISSING:
                    continue
                want = field.default
                if isinstance(want, tuple) and (param.multiple or not want):
                    want = want or None  # () on the command line: the option not given
            else:
                continue
            if name == "dream" and key in {f.name for f in dataclasses.fields(ZoomConfig)}:
                continue  # zoom options are None unless given (ZoomConfig made only then)
            default = param.get_default(click.Context(command), call=False)
            if (isinstance(default, tuple) and not default) or type(default).__name__ == "Sentinel":
                default = None
            if isinstance(want, tuple) and isinstance(default, str):  # a text list of the field
                parse = equivariance.parse_shifts if key == "shifts" else _split
                default = parse(default)
            assert default == want, f"vizcnn {name} {param.opts}: {default!r} != {want!r}"
            checked += 1
    assert checked >= 40
