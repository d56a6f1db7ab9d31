"""`vizcnn ablate` end to end on digits and a tiny residual network (lesion study)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vizcnn.ablation.data import TensorData, digits
from vizcnn.ablation.lesion import lesion_study
from vizcnn.cli.main import app
from vizcnn.core.run_options import RunOptions
from vizcnn.models import load_model
from vizcnn.models.lenet import lenet5_accuracy


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["ablate", *args, "-q"])
    return result.exit_code, result.output


def test_digits_variants_table(tmp_path: Path) -> None:
    code, out = run(
        "digits", "-m", "lenet5_digits", "--variant", "no-fc2=classifier.3,classifier.4",
        "--units", "features.3:0,5", "--retrain", "head", "--epochs", "1", "-o", str(tmp_path),
    )  # fmt: skip
    assert code == 0, out
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert list(rows) == ["original", "control", "no-fc2", "features.3:0,5"]
    test = digits("test")
    oracle = lenet5_accuracy(load_model("lenet5_digits").module, test.images, test.labels)
    assert rows["original"]["scores"]["top1_accuracy"] == pytest.approx(oracle)
    fit = digits("train")
    fit_oracle = lenet5_accuracy(load_model("lenet5_digits").module, fit.images, fit.labels)
    assert rows["original"]["train_scores"]["top1_accuracy"] == pytest.approx(fit_oracle)
    assert rows["no-fc2"]["params_removed"] == (120 * 84 + 84) + (84 * 10 + 10) - (120 * 10 + 10)
    assert rows["no-fc2"]["adapter"] and not rows["features.3:0,5"]["adapter"]
    assert rows["features.3:0,5"]["params_removed"] == 2 * (6 * 25 + 1)
    change = rows["no-fc2"]["top1_change_vs_control"]
    want = rows["no-fc2"]["scores"]["top1_accuracy"] - rows["control"]["scores"]["top1_accuracy"]
    assert change == pytest.approx(want)
    assert data["provenance"]["technique"] == "ablate" and data["provenance"]["seed"] == 0
    table = [
        line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("|")
    ]
    assert any(line.startswith("| no-fc2 |") for line in table)
    assert len({line.count("|") for line in table}) == 1  # every row has the header's columns
    header = [cell for cell in table[0].split("|") if cell.strip()]
    assert len(header) == len(set(header))  # no column twice
    assert (tmp_path / "chart.png").stat().st_size > 1000
    # same seed, same numbers
    again = tmp_path / "again"
    assert run("digits", "-m", "lenet5_digits", "--variant", "no-fc2=classifier.3,classifier.4",
               "--units", "features.3:0,5", "--retrain", "head", "--epochs", "1", "-o", str(again))[0] == 0  # fmt: skip
    rows_again = json.loads((again / "results.json").read_text())["rows"]
    assert [r["scores"] for r in rows_again] == [r["scores"] for r in data["rows"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "x=classifier.9"], "unknown layer 'classifier.9'"),
        (["--variant", "x=classifier.5"], "disconnects"),
        (["--variant", "x=features.3", "--retrain", "none"], "use --retrain head or all, or"),
        (["--variant", "x=features.4", "--epochs", "0"], "--epochs must be at least 1, got 0"),
        (
            ["--variant", "x=features.4", "--retrain", "head", "--from-scratch"],
            "--from-scratch needs --retrain all",
        ),
        (["--variant", "bad"], "NAME=LAYER"),
        (["--units", "features.3:0,99", "--retrain", "none"], "channel"),
    ],
)
def test_bad_variants_fail_before_work(tmp_path: Path, args: list[str], message: str) -> None:
    code, out = run("digits", "-m", "lenet5_digits", *args, "-o", str(tmp_path / "out"))
    assert code == 1 and message in out and out.count("\n") == 1, out
    assert not (tmp_path / "out" / "results.json").exists()


def test_unwritable_output_fails_first(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = run(
        "digits", "-m", "lenet5_digits", "--variant", "x=features.4", "-o", str(blocker / "sub")
    )
    assert code == 1 and "cannot write" in out


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.conv(x))


class Down(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def tiny_resnet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Sequential(Residual(4), Down(), Residual(8)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 6),
    )


def test_lesion_study_against_zeroed_branches() -> None:
    net = tiny_resnet().eval()
    generator = torch.Generator().manual_seed(1)
    data = TensorData(
        torch.rand(11, 3, 16, 16, generator=generator),
        torch.randint(0, 6, (11,), generator=generator),
    )
    result = lesion_study(net, data, run=RunOptions(batch=4))
    assert [(les.block, les.removable) for les in result.lesions] == [
        ("1.0", True), ("1.1", False), ("1.2", True),
    ]  # fmt: skip
    assert result.intact.agree_top1 == 11
    for index in (0, 2):  # oracle: the residual branch switched off (conv bias -1e6: relu = 0)
        zeroed = tiny_resnet().eval()
        with torch.no_grad():
            zeroed[1][index].conv.weight.zero_()
            zeroed[1][index].conv.bias.fill_(-1e6)
            want = zeroed(data.images).argmax(1)
            base = net(data.images).argmax(1)
        scores = result.lesions[index].scores
        assert scores is not None
        assert scores.agree_top1 == int((want == base).sum())
        assert scores.top1 == int((want == data.labels).sum())


@pytest.mark.slow
def test_builtin_digits_experiment(tmp_path: Path) -> None:
    code, out = run("digits", "-m", "lenet5_digits", "--epochs", "1", "-o", str(tmp_path))
    assert code == 0, out
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == [
        "original",
        "control",
        "no-fc2",
        "no-fc",
        "no-conv2",
        "no-conv2-fc",
    ]
    assert all(r["trained"] == "all" for r in rows[1:])
    # from scratch for one epoch: far below the shipped model, above chance (10 classes)
    assert all(
        0.1 < r["scores"]["top1_accuracy"] < rows[0]["scores"]["top1_accuracy"] for r in rows[1:]
    )
