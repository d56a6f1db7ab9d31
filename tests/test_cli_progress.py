"""Progress on stderr: plain throttled lines when stderr is not a terminal, and what an
interrupted command says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from vizcnn.cli import progress as cli_progress
from vizcnn.cli.main import app
from vizcnn.cli.progress import PlainProgress

LINE = re.compile(r"^.+: \d+/\d+ \w+ \(\d+%\) \d+:\d\d elapsed$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_are_throttled_and_the_last_is_always_written() -> None:
    clock, lines = FakeClock(), []
    report = PlainProgress("unit", lines.append, clock=clock, interval=5.0)
    for done in range(64):  # a report every 0.5 s: 32 s in all
        report(done, 64, "render")
        clock.now += 0.5
    report(64, 64, "render")
    report(64, 64, "render")  # a repeated last report is not written twice
    report.close()
    # lines 5 s apart (at 5.0, 10.0, ... 30.0 s: done 10, 20, ... 60), then the stage's end
    assert lines == [
        *(
            f"render: {d}/64 unit ({100 * d // 64}%) 0:{d // 2:02d} elapsed"
            for d in range(10, 61, 10)
        ),
        "render: 64/64 unit (100%) 0:32 elapsed",
    ]
    assert not any("\r" in line for line in lines)


def test_close_writes_the_last_report_of_a_stage_that_ends_early() -> None:
    clock, lines = FakeClock(), []
    report = PlainProgress("%", lines.append, clock=clock, interval=5.0)
    report(0, 200, "dreams: coffee")
    clock.now += 1.0
    report(50, 200, "dreams: coffee")
    assert lines == []  # inside the interval
    clock.now += 65.0
    report.close()
    assert lines == ["dreams: coffee: 25% 1:06 elapsed"]
    report.close()
    assert len(lines) == 1  # nothing new to say


def test_a_stage_that_grows_is_finished_again() -> None:
    clock, lines = FakeClock(), []
    report = PlainProgress("step", lines.append, clock=clock, interval=5.0)
    report(1, 1, "a")
    report(1, 3, "b")  # the total grew: not finished any more
    report(3, 3, "c")
    report.close()
    assert [line.split(":")[0] for line in lines] == ["a", "c"]


@pytest.fixture
def one_line_per_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """No line but each stage's last, however slow this machine is today."""
    monkeypatch.setattr(cli_progress, "PLAIN_INTERVAL_S", 1e9)


@pytest.mark.usefixtures("one_line_per_stage")
def test_render_off_a_terminal_writes_one_plain_line(tmp_path: Path) -> None:
    args = ["render", "-m", "lenet5_digits", "-l", "features.0", "-c", "0", "--steps", "24"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert LINE.match(line) and line.endswith(" elapsed") and ": 24/24 step (100%)" in line


@pytest.mark.usefixtures("one_line_per_stage")
def test_layers_json_stdout_stays_json_and_progress_goes_to_stderr() -> None:
    result = CliRunner().invoke(app, ["layers", "-m", "lenet5_digits", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "lenet5_digits" and data["layers"]
    assert "\r" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert LINE.match(line) and "2/2 step (100%)" in line
    quiet = CliRunner().invoke(app, ["layers", "-m", "lenet5_digits", "--json", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout) == data


def _interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_interrupted_layers_and_models_say_just_interrupted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("vizcnn.receptive.table.layer_table", _interrupt)
    result = CliRunner().invoke(app, ["layers", "-m", "lenet5_digits"])
    assert (result.exit_code, result.stderr) == (130, "interrupted\n")
    monkeypatch.setattr("vizcnn.cli.models.available_models", _interrupt)
    result = CliRunner().invoke(app, ["models"])
    assert (result.exit_code, result.stderr) == (130, "interrupted\n")


def test_an_interrupted_command_that_writes_files_says_they_are_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("vizcnn.models.lenet.train_lenet5", _interrupt)
    result = CliRunner().invoke(app, ["train-digits", "-o", str(tmp_path / "w.pt")])
    assert (result.exit_code, result.stderr) == (130, "interrupted; finished files are kept\n")
    assert not (tmp_path / "w.pt").exists()
