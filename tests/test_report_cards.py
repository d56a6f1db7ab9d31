"""Feature cards of `vizcnn report`: one data pass for every layer, the histograms and class
votes a card shows against their oracles (numpy, the votes library), diversity renders, links.

One tiny site (report_helpers' markup net, 6 images, diversity 2) is built once per module.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from report_helpers import EVIL, TINY_RENDER, markup_loaded, tiny_config, write_data
from vizcnn.ablation.votes import class_votes
from vizcnn.data.datasets import open_dataset
from vizcnn.hooks import forward_to
from vizcnn.report import ArtifactStore, ReportConfig, build_report, plan_report
from vizcnn.report.builder import compute
from vizcnn.report.html import broken_links

PASSES: list[dict[str, Any]] = []  # one entry per data pass of the build: layers, forwards


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    root = tmp_path_factory.mktemp("cards") / "site"
    loaded = markup_loaded()
    config = tiny_config(data, render=replace(TINY_RENDER, diversity=2), vote_images=4)
    real = compute.mine_data
    first = getattr(loaded.module, EVIL)

    def counted(loaded_: Any, artifacts: Any, plan: Any, progress: Any, sampled: Any) -> Any:
        sizes: list[int] = []
        hook = first.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[0])))
        try:
            found = real(loaded_, artifacts, plan, progress, sampled)
        finally:
            hook.remove()
        PASSES.append({"layers": sorted(found.mined), "samples": sorted(found.samples)})
        PASSES[-1]["sizes"] = sizes
        return found

    def no_pass(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the concepts pages ride the data pass: no pass of their own")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compute, "mine_data", counted)
        for name in ("find_concepts", "concept_patches"):
            patch.setattr(f"vizcnn.concepts.{name}", no_pass)
        build_report(loaded, plan_report(loaded, config), ArtifactStore(root))
    return root


def _activations(data: Path, layer: str) -> torch.Tensor:
    """(C, N) float32 activations of every image and position, all 6 images in one batch as
    the data pass runs them."""
    loaded = markup_loaded()
    dataset = open_dataset(data, 3, loaded.input_size)
    images = torch.stack([dataset.image(i) for i in range(len(dataset))])
    out = forward_to(loaded.module, loaded.normalize(images), [layer], detach=True)[layer]
    return out.transpose(0, 1).flatten(1)


def test_every_layer_is_mined_in_one_pass_one_forward_per_batch(site: Path) -> None:
    assert len(PASSES) == 1
    assert PASSES[0]["layers"] == sorted([EVIL, "conv2"])
    # and the samples of positions of both concepts pages' layers
    metas = (site / "artifacts").glob("concepts-*/meta.json")
    wanted = {json.loads(meta.read_text())["data"]["concept_layer"] for meta in metas}
    assert len(wanted) >= 1 and PASSES[0]["samples"] == sorted(wanted)
    # the model's preflight probe (1 image), then the one batch of 6 images for every layer
    assert PASSES[0]["sizes"] == [1, 6]


@pytest.mark.parametrize("layer", [EVIL, "conv2"])
def test_card_histograms_equal_numpys(site: Path, data: Path, layer: str) -> None:
    stem = "_script_alert_1_script_" if layer == EVIL else layer
    meta = next((site / "artifacts").glob(f"stats-{stem}-*/meta.json"))
    histograms = json.loads(meta.read_text())["data"]["histograms"]
    acts = _activations(data, layer).double().numpy()
    for channel in (0, 1):
        stored = histograms[str(channel)]
        counts, _ = np.histogram(acts[channel], bins=np.array(stored["edges"]))
        assert stored["counts"] == counts.tolist()
        assert sum(stored["counts"]) == acts.shape[1]


def test_card_votes_are_the_votes_library_on_the_first_images(site: Path, data: Path) -> None:
    loaded = markup_loaded()
    meta = next((site / "artifacts").glob("votes-conv2-*/meta.json"))
    stored = json.loads(meta.read_text())["data"]
    dataset = open_dataset(data, 3, loaded.input_size)
    votes = class_votes(loaded, dataset, "conv2", (0, 1), limit=4)
    assert stored["images"] == 4
    for row, channel in enumerate((0, 1)):
        expected = [(loaded.labels[k], fall) for k, fall in votes.top(row, 5)]
        got = stored["votes"][str(channel)]
        assert [label for label, _ in got] == [label for label, _ in expected]
        np.testing.assert_allclose([f for _, f in got], [f for _, f in expected], rtol=1e-6)


def test_cards_show_renders_histogram_votes_and_links(site: Path) -> None:
    page = (site / "layer-02-conv2.html").read_text(encoding="utf-8")
    cards = re.findall(r'<article class="unit card" id="([^"]+)">(.*?)</article>', page, re.S)
    assert [card_id for card_id, _ in cards] == ["layer-02-conv2-c0", "layer-02-conv2-c1"]
    for card_id, body in cards:
        assert body.count('<svg class="hist"') == 1 and "<rect" in body
        assert "_d1.png" in body  # the second diversity render
        assert 'class="votes"' in body and "&lt;script&gt;alert(1)&lt;/script&gt; cat" in body
        assert f'href="layer-02-conv2.html#{card_id}"' in body
    assert "<script" not in page
    assert broken_links(site) == []


def test_cards_accentuate_each_units_top_exemplars(tmp_path: Path) -> None:
    """lenet5_digits (its features.2 runs before features.3 and holds the photograph): each
    card's accentuations are `accentuate` of the unit's best mined images, as stored."""
    from PIL import Image

    from vizcnn.io.imaging import resize, to_uint8
    from vizcnn.models.loading import load_model
    from vizcnn.optvis.accentuation import accentuate

    loaded = load_model("lenet5_digits")
    config = ReportConfig(
        layers=("features.3",), units_per_layer=2, render=replace(TINY_RENDER, size=28),
        limit=8, crops=1, images=(), vote_images=0, concepts=0, accentuations=2,
        accent_steps=3, mine=replace(ReportConfig().mine, k=2),
    )  # fmt: skip
    plan = plan_report(loaded, config)
    (artifact,) = plan.of_kind("accent")
    assert artifact.params["reg_layer"] == "features.2"
    root = tmp_path / "site"
    build_report(loaded, plan, ArtifactStore(root))
    mine = json.loads(next((root / "artifacts").glob("mine-*/meta.json")).read_text())["data"]
    stored = json.loads(next((root / "artifacts").glob("accent-*/meta.json")).read_text())
    assert plan.dataset is not None
    names = plan.dataset.names
    images, units = [], []
    for channel in (0, 1):
        best = [hit["image"] for hit in mine["hits"][str(channel)][:2]]
        assert stored["data"]["accentuated"][str(channel)] == best
        images += [plan.dataset.image(names.index(name)) for name in best]
        units += [f"features.3:{channel}"] * len(best)
    result = accentuate(
        loaded, torch.stack(images), units, reg_layer="features.2", steps=3, crops=2, seed=0,
        run=replace(plan.run, amp=artifact.params["precision"] == "bfloat16"),
    )  # fmt: skip
    expected = [to_uint8(image) for image in resize(result.images, (128, 128)).clamp(0, 1)]
    folder = next((root / "artifacts").glob("accent-*"))
    row = 0
    for channel in (0, 1):
        for slot in range(len(stored["data"]["accentuated"][str(channel)])):
            with Image.open(folder / f"c{channel:04d}_a{slot}.png") as picture:
                assert np.array_equal(np.asarray(picture), expected[row]), (channel, slot)
            row += 1
    page = (root / "layer-01-features.3.html").read_text(encoding="utf-8")
    assert page.count("accentuated for features.3:") == row
    assert broken_links(root) == []


def test_concepts_page_is_the_concepts_library_on_the_data(site: Path, data: Path) -> None:
    from vizcnn.concepts import concept_importance, concept_patches, find_concepts

    loaded = markup_loaded()
    meta = json.loads(next((site / "artifacts").glob("concepts-conv2-*/meta.json")).read_text())
    stored = meta["data"]
    assert stored["concept_layer"] == "relu" and stored["k"] == 3  # conv2's ReLU; k <= channels
    dataset = open_dataset(data, 3, loaded.input_size)
    concepts = find_concepts(loaded, dataset, "relu", 3, max_positions=4096, seed=0)
    assert stored["reconstruction_error"] == pytest.approx(concepts.reconstruction_error, rel=1e-6)
    assert stored["share"] == pytest.approx(concepts.share().tolist(), rel=1e-5)
    # every position sampled: the page's patches are `concept_patches` over the data
    assert stored["sampled"] == stored["positions_seen"] == concepts.positions_seen
    patches = concept_patches(loaded, concepts, dataset, 9)
    for concept, tiles in patches.patches.items():
        got = stored["patches"][str(concept)]
        assert [name for name, _ in got] == [tile.image for tile in tiles]
        assert [v for _, v in got] == pytest.approx([t.value for t in tiles], rel=1e-4, abs=1e-6)
    images = torch.stack([dataset.image(i) for i in range(len(dataset))])
    importance = concept_importance(loaded, concepts, images, None)
    assert stored["importances"] == pytest.approx(importance.tolist(), rel=1e-4, abs=1e-6)
    page = (site / "concepts-02-conv2.html").read_text(encoding="utf-8")
    assert page.count('<article class="unit concept"') == 3
    assert page.count("heatmap of concept") == 3  # one report image, one heatmap per concept
    assert 'href="layer-02-conv2.html"' in page
    layer = (site / "layer-02-conv2.html").read_text(encoding="utf-8")
    assert 'href="concepts-02-conv2.html"' in layer


def test_a_concepts_page_made_alone_samples_in_a_pass_of_its_own(
    site: Path, data: Path, tmp_path: Path
) -> None:
    """Resuming with only a concepts artifact missing: the data pass mines nothing, samples its
    layer, and the page comes out as the full build made it."""
    import shutil

    root = tmp_path / "site"
    shutil.copytree(site, root)
    (folder,) = (root / "artifacts").glob("concepts-conv2-*")
    before = json.loads((folder / "meta.json").read_text())["data"]
    shutil.rmtree(folder)
    loaded = markup_loaded()
    config = tiny_config(data, render=replace(TINY_RENDER, diversity=2), vote_images=4)
    real = compute.mine_data
    passes: list[tuple[list[str], list[str]]] = []

    def recorded(loaded_: Any, artifacts: Any, plan: Any, progress: Any, sampled: Any) -> Any:
        found = real(loaded_, artifacts, plan, progress, sampled)
        passes.append((sorted(found.mined), sorted(found.samples)))
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compute, "mine_data", recorded)
        result = build_report(loaded, plan_report(loaded, config), ArtifactStore(root))
    assert result.computed == [folder.name]
    assert passes == [([], [before["concept_layer"]])]
    after = json.loads((folder / "meta.json").read_text())["data"]
    assert after == before
