"""`ablate_folder` resumes per row: each retrained row is kept as it finishes, an interrupted
run goes on with the next row, and a row trained with other settings is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vizcnn.ablation.experiment as experiment
from vizcnn.ablation.training import TrainConfig
from vizcnn.ablation.variants import parse_units
from vizcnn.core.errors import VizError
from vizcnn.models.loading import load_model
from vizcnn.runs import ablate_folder

VARIANTS = [parse_units("features.3:0,5")]
CONFIG = TrainConfig(retrain="head", epochs=1, batch_size=256)


def _rows(folder: Path) -> list[dict[str, Any]]:
    rows = json.loads((folder / "results.json").read_text())["rows"]
    return [{key: row[key] for key in ("name", "scores", "final_loss")} for row in rows]


def test_an_interrupted_ablation_resumes_with_the_next_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    # the oracle: one run straight through
    whole = ablate_folder(loaded, "digits", tmp_path / "whole", VARIANTS, CONFIG, seed=1)
    trained = sorted(p.name for p in (tmp_path / "whole" / "trained").iterdir())
    assert trained == ["control.json", "control.pt", "features.3_0_5.json", "features.3_0_5.pt"]

    calls: list[str] = []
    real_train = experiment.train

    def stopping_train(*args: Any, **kwargs: Any) -> list[float]:
        calls.append(kwargs["message"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped while training the second row
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experiment, "train", stopping_train)
    with pytest.raises(KeyboardInterrupt):
        ablate_folder(loaded, "digits", tmp_path / "run", VARIANTS, CONFIG, seed=1)
    assert not (tmp_path / "run" / "results.json").exists()
    assert (tmp_path / "run" / "trained" / "control.json").is_file()

    calls.clear()
    monkeypatch.setattr(experiment, "train", real_train)
    counted: list[str] = []

    def counting_train(*args: Any, **kwargs: Any) -> list[float]:
        counted.append(kwargs["message"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experiment, "train", counting_train)
    resumed = ablate_folder(loaded, "digits", tmp_path / "run", VARIANTS, CONFIG, seed=1)
    assert counted == ["training features.3:0,5"]  # the control was not trained again
    assert _rows(tmp_path / "run") == _rows(tmp_path / "whole")
    assert [r.scores.top1 for r in resumed.result.rows] == [
        r.scores.top1 for r in whole.result.rows
    ]

    # a second run with the same settings trains nothing and writes the same table
    counted.clear()
    ablate_folder(loaded, "digits", tmp_path / "run", VARIANTS, CONFIG, seed=1)
    assert counted == [] and _rows(tmp_path / "run") == _rows(tmp_path / "whole")


def test_rows_trained_with_other_settings_are_refused_before_training(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    ablate_folder(loaded, "digits", tmp_path, VARIANTS, CONFIG, seed=1)
    before = (tmp_path / "results.json").read_bytes()
    other = TrainConfig(retrain="head", epochs=1, batch_size=256, lr=CONFIG.lr * 2)
    with pytest.raises(VizError, match=r"made with other settings \(.*lr.*overwrite=True"):
        ablate_folder(loaded, "digits", tmp_path, VARIANTS, other, seed=1)
    assert (tmp_path / "results.json").read_bytes() == before
    again = ablate_folder(loaded, "digits", tmp_path, VARIANTS, other, seed=1, overwrite=True)
    meta = json.loads((tmp_path / "trained" / "control.json").read_text())
    assert meta["provenance"]["options"]["lr"] == other.lr
    assert again.result.config.lr == other.lr
