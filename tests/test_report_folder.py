"""`report_folder`: the library call `vizcnn report` makes, its reuse by settings digest (the run
store), the folder's lock, and the CLI's site equal to the library's but for timestamps."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from folder_helpers import TIMESTAMPS, folder_contents
from report_helpers import TINY_CLI_ARGS, TINY_DREAM, markup_loaded, tiny_config, write_data
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.deepdream.config import DreamConfig
from vizcnn.io.resume import stored_provenance
from vizcnn.models.loading import load_model
from vizcnn.report import ReportConfig, report_folder
from vizcnn.report.builder.store import MANIFEST
from vizcnn.runs import folder_lock
from vizcnn.runs.lock import LOCK_NAME
from vizcnn.runs.store import plan_results, result_difference, settings_block, settings_digest


def _page(text: str) -> str:
    """A page without its timestamps: the footer's date, provenance times and seconds."""
    text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?([+-]\d{4})?", "TIME", text)
    text = re.sub(r"(&#34;seconds&#34;: )[0-9.]+", r"\1S", text)
    return re.sub(r" · [0-9.]+ s<", " · S s<", text)


def _site(folder: Path) -> dict[str, Any]:
    return folder_contents(folder, timestamps=TIMESTAMPS | {"updated"}, page=_page)


def test_cli_report_equals_the_library_call(tmp_path: Path) -> None:
    cli = tmp_path / "cli"
    result = CliRunner().invoke(app, ["report", *TINY_CLI_ARGS, "--seed", "1", "-o", str(cli)])
    assert result.exit_code == 0, result.output
    config = ReportConfig(
        layers=("features.0", "features.3"),
        units_per_layer=2,
        render=replace(ReportConfig().render, steps=4),
        limit=16,
        crops=1,
        images=("sample:coffee",),
        dream=DreamConfig(octaves=1, steps=2),
        methods=("saliency", "gradcam"),
    )
    run = report_folder(load_model("lenet5_digits", device="cpu"), tmp_path / "lib", config, seed=1)
    assert run.pages[0] == "index.html" and run.reused == [] and run.plan.seed == 1
    assert f"{len(run.computed)} artifact(s) computed" in result.output
    cli_files, lib_files = _site(cli), _site(tmp_path / "lib")
    assert sorted(cli_files) == sorted(lib_files)
    for name in cli_files:
        assert cli_files[name] == lib_files[name], name


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


def test_second_call_reuses_all_and_a_changed_option_redoes_what_it_shapes(
    tmp_path: Path, data: Path
) -> None:
    loaded = markup_loaded()
    first = report_folder(loaded, tmp_path, tiny_config(data))
    assert first.computed and not first.reused
    again = report_folder(loaded, tmp_path, tiny_config(data))
    assert again.computed == [] and sorted(again.reused) == sorted(first.computed)
    dreams = report_folder(loaded, tmp_path, tiny_config(data, dream=replace(TINY_DREAM, steps=3)))
    assert [name.split("-")[0] for name in dreams.computed] == ["dream"]
    assert not (tmp_path / LOCK_NAME).exists()  # the lock goes with the run


def test_the_seed_is_an_argument_that_keys_the_artifacts_it_shapes(
    tmp_path: Path, data: Path
) -> None:
    loaded = markup_loaded()
    first = report_folder(loaded, tmp_path, tiny_config(data), seed=0)
    assert report_folder(loaded, tmp_path, tiny_config(data)).computed == []  # 0: the default
    other = report_folder(loaded, tmp_path, tiny_config(data), seed=1)
    # a data folder's images take no seed (the samples' crops would): mining and statistics
    # are reused, the renders, dreams and attribution maps are made again
    # and the concepts (their sample of positions and their renders take the seed)
    assert {name.split("-")[0] for name in other.computed} == {
        "render",
        "concepts",
        "dream",
        "attribution",
    }
    assert {name.split("-")[0] for name in other.reused} == {
        "layers",
        "filters",
        "mine",
        "stats",
        "votes",
    }
    render = next(a for a in other.plan.artifacts if a.kind == "render")
    assert render.params["seed"] == 1 and render.key not in {a.key for a in first.plan.artifacts}
    assert stored_provenance(tmp_path / "artifacts" / render.folder / "meta.json")["seed"] == 1
    with pytest.raises(VizError, match="seed must be an int"):
        report_folder(loaded, tmp_path, tiny_config(data), seed=1.5)  # type: ignore[arg-type]


def test_artifacts_carry_their_settings_digest_for_the_run_store(
    tmp_path: Path, data: Path
) -> None:
    loaded = markup_loaded()
    run = report_folder(loaded, tmp_path, tiny_config(data))
    render = next(a for a in run.plan.artifacts if a.kind == "render")
    meta = tmp_path / "artifacts" / render.folder / "meta.json"
    block = stored_provenance(meta)
    assert block["settings_digest"] == render.key == settings_digest(render.settings)
    # the picture files carry the same block; meta.json, written last, says the artifact is done
    png = next((tmp_path / "artifacts" / render.folder).glob("*.png"))
    assert stored_provenance(png)["settings_digest"] == render.key
    wanted = settings_block(render.settings)
    assert plan_results([([meta], wanted)]).done == {0}
    changed = settings_block({**render.settings, "steps": 4})
    assert result_difference(block, changed) == "steps 3 in the file, 4 now"
    with pytest.raises(VizError, match=r"other settings \(steps 3 in the file, 4 now\)"):
        plan_results([([meta], changed)])
    assert plan_results([([meta], changed)], overwrite=True).replaced == 1


def test_a_folder_in_use_is_refused_and_a_foreign_one_needs_allow_nonempty(
    tmp_path: Path, data: Path
) -> None:
    loaded = markup_loaded()
    config = tiny_config(data, layers=("conv2",), images=())
    with folder_lock(tmp_path / "busy"), pytest.raises(VizError, match="being written by"):
        report_folder(loaded, tmp_path / "busy", config)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(VizError, match="pass allow_nonempty=True$"):
        report_folder(loaded, other, config)
    report_folder(loaded, other, config, allow_nonempty=True)
    assert (other / "notes.txt").read_text() == "keep me" and (other / MANIFEST).is_file()


def test_progress_messages_name_each_stage(tmp_path: Path, data: Path) -> None:
    seen: list[str] = []
    report_folder(
        markup_loaded(),
        tmp_path,
        tiny_config(data),
        progress=lambda done, total, message: seen.append(message.split(":")[0]),
    )
    assert list(dict.fromkeys(seen)) == [
        "checking inputs",
        "model card",
        "renders",
        "data pass",
        "class votes",
        "concepts",
        "dreams",
        "attribution maps",
    ]


def test_attribution_warnings_are_shown_beside_the_maps(tmp_path: Path, data: Path) -> None:
    """A network without activations gives guided backprop nothing to act on: the images page
    says so next to the maps instead of showing two equal pictures without comment (issue 23)."""
    import torch
    from torch import nn

    from vizcnn import describe

    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Identity(), nn.Conv2d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )  # fmt: skip
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen))
    loaded = describe(net, input_size=16, name="silunet")
    config = tiny_config(data, layers=("0",), methods=("saliency", "guided"), units_per_layer=1)
    report_folder(loaded, tmp_path, config)
    page = (tmp_path / "images.html").read_text(encoding="utf-8")
    assert page.count('class="warning"') == 1
    assert "Warning: guided equals saliency" in page
    relu = markup_loaded()  # ReLU: the guided rule acts, no warning
    report_folder(relu, tmp_path / "relu", tiny_config(data, methods=("saliency", "guided")))
    assert 'class="warning"' not in (tmp_path / "relu" / "images.html").read_text("utf-8")
