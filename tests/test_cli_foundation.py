from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import TinyNet
from vizcnn.cli.main import app
from vizcnn.receptive.table import layer_table


def test_layer_table_rows_for_a_hand_built_net(tiny: TinyNet) -> None:
    table = layer_table(tiny, (1, 10, 10))
    rows = {row.name: row for row in table.rows}
    # rows in running order (forward(): conv1, relu, pool, conv2, relu again, head)
    assert list(rows) == ["conv1", "relu", "pool", "conv2", "relu#1", "head"]
    assert rows["conv1"].output_shape == (2, 8, 8) and rows["conv1"].params == 2 * 9 + 2
    assert rows["relu"].calls == 2 and rows["relu#1"].output_shape == (1, 2, 2)
    assert rows["conv2"].field is not None
    assert rows["conv2"].field.size == (8, 8) and rows["conv2"].field.stride == (2, 2)
    assert rows["head"].field is not None and rows["head"].field.method == "global"


def test_layers_command_prints_default_model_table() -> None:
    result = CliRunner().invoke(app, ["layers"])
    assert result.exit_code == 0, result.output
    assert "_blocks.9" in result.output and "_swish#1" in result.output
    assert "efficientnet_lite0" in result.output.splitlines()[-1]


def test_layers_json_is_a_stable_interface() -> None:
    result = CliRunner().invoke(app, ["layers", "-m", "alexnet", "--weights", "none", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the progress lines go to stderr
    assert data["version"] == 1 and data["input_shape"] == [3, 224, 224]
    conv5 = next(row for row in data["layers"] if row["name"] == "features.10")
    assert conv5["receptive_field"] == [163, 163] and conv5["stride"] == [16, 16]
    assert conv5["output_shape"] == [256, 13, 13] and conv5["rf_method"] == "graph"
    assert set(conv5) >= {"name", "type", "calls", "params", "offset"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["layers", "-m", "resnet5O"], "did you mean"),
        (["layers", "-m", "alexnet", "--weights", "IMAGENET_V9"], "IMAGENET1K_V1"),
        (["layers", "-m", "missing.pt", "--arch", "resnet18"], "not found"),
        (["layers", "-m", "nosuchpackage.module:build"], "package.module:factory"),
    ],
)
def test_bad_input_gives_one_line_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_usage_error_exit_code_2() -> None:
    result = CliRunner().invoke(app, ["layers", "--no-such-option"])
    assert result.exit_code == 2


def test_models_command() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["efficientnet_lite0"]["kind"] == "default"
    assert rows["efficientnet_lite0"]["weights_present"] is True
    assert rows["efficientnet_lite1"]["input_size"] == 240


def test_device_errors_are_one_line() -> None:
    from vizcnn.core.devices import resolve_device
    from vizcnn.core.errors import VizError

    with pytest.raises(VizError, match="cuda:N"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"


def test_library_messages_name_the_flags_on_the_command_line(tmp_path) -> None:
    """The library says `arch=...` / `trust_checkpoint=True` (what a script passes); the CLI
    says the flag the user would type."""
    import torch
    import torchvision

    state, whole = tmp_path / "state.pt", tmp_path / "whole.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), state)
    torch.save(torchvision.models.alexnet(weights=None), whole)
    for path, flag, library in ((state, "--arch", "arch="), (whole, "--trust-checkpoint", "=True")):
        result = CliRunner().invoke(app, ["layers", "-m", str(path)])
        assert result.exit_code == 1 and flag in result.output, result.output
        assert library not in result.output


def test_layers_field_budget_option() -> None:
    # a traced model measures nothing: a zero budget changes no field; rf_note says why a field
    # would be missing (None here)
    args = ["layers", "-m", "alexnet", "--weights", "none", "--json", "--field-budget", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    conv5 = next(row for row in json.loads(result.stdout)["layers"] if row["name"] == "features.10")
    assert conv5["receptive_field"] == [163, 163] and conv5["rf_note"] is None
    negative = CliRunner().invoke(app, ["layers", "--field-budget", "-1"])
    assert negative.exit_code == 2 and "--field-budget" in negative.output
