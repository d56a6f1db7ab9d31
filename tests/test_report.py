"""vizcnn report: the site's links, HTML, escaping, self-contained page, cache and CLI checks.

One tiny site (report_helpers: a hand-set net whose layer name, labels and data file name hold
`<script>`) is built once per module; tests that rebuild copy it first.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from report_helpers import EVIL, TINY_MINE, TINY_RENDER, markup_loaded, tiny_config, write_data
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import open_dataset
from vizcnn.io.imaging import to_uint8
from vizcnn.io.provenance import provenance
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import render
from vizcnn.report import ArtifactStore, build_report, plan_report
from vizcnn.report.builder.store import MANIFEST
from vizcnn.report.html import broken_links

VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr", "col", "area", "base"}


class Strict(HTMLParser):
    """Collects src/href/id and fails on a close tag that does not match the open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.errors: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "img":
            self.images.append(values)
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(path: Path) -> Strict:
    parser = Strict()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    root = tmp_path_factory.mktemp("built") / "site"
    loaded = markup_loaded()
    build_report(loaded, plan_report(loaded, tiny_config(data)), ArtifactStore(root))
    return root


def copy_site(site: Path, tmp_path: Path) -> Path:
    target = tmp_path / "site"
    shutil.copytree(site, target)
    return target


def artifact_times(root: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (root / "artifacts").glob("*/meta.json")}


def test_every_link_resolves_and_every_page_parses(site: Path) -> None:
    pages = sorted(site.glob("*.html"))
    assert [p.name for p in pages] == [
        "concepts-01-_script_alert_1_script_.html",
        "concepts-02-conv2.html",
        "images.html",
        "index.html",
        "layer-01-_script_alert_1_script_.html",
        "layer-02-conv2.html",
    ]
    for page in pages:
        parsed = parse(page)
        assert not parsed.errors and not parsed.stack, (page.name, parsed.errors, parsed.stack)
        assert parsed.scripts == 0
        assert parsed.links
        for link in parsed.links:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc, link
            target = (site / unquote(parts.path)).resolve()
            assert target.is_relative_to(site.resolve()) and target.is_file(), (page.name, link)
        for image in parsed.images:
            assert image["alt"] and image["loading"] == "lazy"
            with Image.open(site / unquote(str(image["src"]))) as picture:  # pre-scaled
                assert (picture.width, picture.height) == (
                    int(str(image["width"])),
                    int(str(image["height"])),
                )
        text = page.read_text(encoding="utf-8")
        assert 'http-equiv="Content-Security-Policy"' in text
        assert "http://" not in text and "https://" not in text


def test_markup_in_layer_names_labels_and_file_names_is_escaped(site: Path) -> None:
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    pages = {p.name: p.read_text(encoding="utf-8") for p in site.glob("*.html")}
    for name, text in pages.items():
        assert "<script" not in text, name
    assert escaped in pages["layer-01-_script_alert_1_script_.html"]  # the layer's name
    assert f"{escaped} cat" in pages["images.html"] or escaped in pages["images.html"]
    assert f"{escaped}.png" in pages["layer-01-_script_alert_1_script_.html"] or any(
        f"{escaped}.png" in text for text in pages.values()
    )  # the data file's name, in the provenance and the best hits
    assert "dog &amp; co" in pages["images.html"] or "espresso" in pages["images.html"]


def test_mean_activation_is_the_brute_force_mean(site: Path, data: Path) -> None:
    loaded = markup_loaded()
    meta = next((site / "artifacts").glob("stats-conv2-*/meta.json"))
    means = json.loads(meta.read_text())["data"]["means"]
    dataset = open_dataset(data, 3, loaded.input_size)
    module = loaded.module.double()
    try:
        total = torch.zeros(3, dtype=torch.float64)
        for index in range(len(dataset)):
            x = loaded.normalize(dataset.image(index)[None].double())
            first = getattr(module, EVIL)
            total += module.conv2(torch.relu(first(x)))[0].mean(dim=(1, 2))
    finally:
        module.float()
    expected = total / len(dataset)
    for channel in (0, 1):
        assert means[str(channel)] == pytest.approx(float(expected[channel]), rel=1e-5, abs=1e-6)


def test_rendered_pictures_equal_the_python_api_render(site: Path) -> None:
    loaded = markup_loaded()
    result = render(
        loaded,
        ["conv2:0", "conv2:1"],
        RenderConfig(steps=3, size=16, input_size=(16, 16)),
        seed=0,
        run=RunOptions(batch=2),
    )
    folder = next((site / "artifacts").glob("render-conv2-*"))
    for row, channel in enumerate((0, 1)):
        with Image.open(folder / f"c{channel:04d}.png") as picture:
            stored = np.asarray(picture)
        assert np.array_equal(stored, to_uint8(result.images[row]))


def test_every_picture_page_shows_its_provenance(site: Path) -> None:
    layer = (site / "layer-02-conv2.html").read_text(encoding="utf-8")
    assert layer.count("<details>") == 4  # render, mining, means and histograms, votes
    assert "report:render" in layer and "report:mine" in layer and "report:stats" in layer
    assert "report:votes" in layer
    images = (site / "images.html").read_text(encoding="utf-8")
    assert "report:dream" in images and "report:attribution" in images


def test_self_contained_references_no_file(site: Path, tmp_path: Path) -> None:
    root = copy_site(site, tmp_path)
    loaded = markup_loaded()
    plan = plan_report(loaded, tiny_config(_data_of(site), self_contained=True))
    result = build_report(loaded, plan, ArtifactStore(root))
    assert result.pages == ["index.html"] and result.computed == []
    assert sorted(p.name for p in root.glob("*.html")) == ["index.html"]  # old pages removed
    parsed = parse(root / "index.html")
    assert not parsed.errors and not parsed.stack
    assert parsed.images and all(str(i["src"]).startswith("data:") for i in parsed.images)
    for link in parsed.links:
        assert link.startswith("data:image/png;base64,") or (
            link.startswith("#") and link[1:] in parsed.ids
        ), link[:60]
    # the inlined pictures are the artifacts' bytes
    inlined = {str(i["src"]) for i in parsed.images}
    folder = next((root / "artifacts").glob("render-conv2-*"))
    data = base64.b64encode((folder / "c0001.png").read_bytes()).decode()
    assert f"data:image/png;base64,{data}" in inlined


def _data_of(site: Path) -> Path:
    meta = next((site / "artifacts").glob("mine-conv2-*/meta.json"))
    return Path(json.loads(meta.read_text())["params"]["data"])


def test_deleting_one_artifact_recomputes_only_it(site: Path, tmp_path: Path) -> None:
    root = copy_site(site, tmp_path)
    before = artifact_times(root)
    victim = next(name for name in before if name.startswith("render-conv2-"))
    shutil.rmtree(root / "artifacts" / victim)
    loaded = markup_loaded()
    result = build_report(
        loaded, plan_report(loaded, tiny_config(_data_of(site))), ArtifactStore(root)
    )
    assert result.computed == [victim]
    after = artifact_times(root)
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != victim} == {
        k: v for k, v in before.items() if k != victim
    }


def test_an_interrupted_artifact_is_redone(site: Path, tmp_path: Path) -> None:
    root = copy_site(site, tmp_path)
    victim = next((root / "artifacts").glob("mine-conv2-*"))
    (victim / "meta.json").unlink()  # the files were written, the run stopped before meta.json
    loaded = markup_loaded()
    result = build_report(
        loaded, plan_report(loaded, tiny_config(_data_of(site))), ArtifactStore(root)
    )
    assert result.computed == [victim.name]


def test_a_run_stopped_by_ctrl_c_keeps_what_finished(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vizcnn.report.builder import compute

    root = copy_site(site, tmp_path)
    victims = sorted(p.name for p in (root / "artifacts").glob("mine-*"))
    for name in victims:
        shutil.rmtree(root / "artifacts" / name)
    real = compute.make_mine
    calls: list[str] = []

    def stop_second(*args: object, **kwargs: object) -> compute.Made:
        calls.append("mine")
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compute, "make_mine", stop_second)
    loaded = markup_loaded()
    plan = plan_report(loaded, tiny_config(_data_of(site)))
    with pytest.raises(KeyboardInterrupt):
        build_report(loaded, plan, ArtifactStore(root))
    monkeypatch.setattr(compute, "make_mine", real)
    done = sorted(p.name for p in (root / "artifacts").glob("mine-*/meta.json"))
    assert len(done) == 1
    result = build_report(loaded, plan, ArtifactStore(root))
    assert len(result.computed) == 1 and result.computed[0].startswith("mine-")
    assert sorted(p.name for p in (root / "artifacts").glob("mine-*")) == victims


def test_changing_steps_recomputes_only_the_renders(site: Path, tmp_path: Path) -> None:
    root = copy_site(site, tmp_path)
    loaded = markup_loaded()
    plan = plan_report(loaded, tiny_config(_data_of(site), render=replace(TINY_RENDER, steps=4)))
    result = build_report(loaded, plan, ArtifactStore(root))
    # the concepts pages' direction renders use the report's render recipe too
    kinds = ["concepts", "concepts", "render", "render"]
    assert sorted(name.split("-")[0] for name in result.computed) == kinds
    assert len(result.removed) == 4  # the old renders and concepts
    data_plan = plan_report(
        loaded,
        tiny_config(
            _data_of(site), render=replace(TINY_RENDER, steps=4), mine=replace(TINY_MINE, k=1)
        ),
    )
    again = build_report(loaded, data_plan, ArtifactStore(root))
    assert sorted(name.split("-")[0] for name in again.computed) == ["mine", "mine"]


def test_refuses_a_foreign_folder_unless_forced(tmp_path: Path, data: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(VizError, match="not empty and was not made by `vizcnn report`"):
        ArtifactStore(folder)
    store = ArtifactStore(folder, allow_nonempty=True)
    loaded = markup_loaded()
    build_report(
        loaded, plan_report(loaded, tiny_config(data, layers=("conv2",), images=())), store
    )
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (folder / MANIFEST).is_file()
    ArtifactStore(folder)  # now it is a report's folder


def test_ablation_page_shows_table_chart_and_its_provenance(site: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    block = provenance(technique="ablate", model_name="lenet5_digits", weights="bundled")
    rows = [
        {"name": "original", "scores": {"top1_accuracy": 0.98, "top5_accuracy": 1.0},
         "params_removed": 0, "adapter": False, "removed": [], "top1_change_vs_original": 0.0},
        {"name": "no-<conv2>", "scores": {"top1_accuracy": 0.5, "top5_accuracy": 0.9},
         "params_removed": 2416, "adapter": True, "removed": ["features.3"],
         "top1_change_vs_original": -0.48},
    ]  # fmt: skip
    results.write_text(
        json.dumps({"retrain": {"retrain": "none"}, "rows": rows, "provenance": block})
    )
    root = copy_site(site, tmp_path)
    loaded = markup_loaded()
    plan = plan_report(loaded, tiny_config(_data_of(site), ablation=str(results)))
    result = build_report(loaded, plan, ArtifactStore(root))
    assert [name.split("-")[0] for name in result.computed] == ["ablation"]
    page = (root / "ablation.html").read_text(encoding="utf-8")
    assert "no-&lt;conv2&gt;" in page and "-48.0" in page and "2,416" in page
    assert block["command"] in page or "ablate" in page
    assert "ablation.html" in (root / "index.html").read_text(encoding="utf-8")


def test_broken_links_names_each_bad_link(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.html").write_text('<p id="here">b</p>')
    links = [
        ("a.png", None),
        ("b.html#here", None),
        ("#top", None),
        ("data:image/png;base64,AA==", None),
        ("missing.png", "no such file"),
        ("b.html#gone", "no such anchor"),
        ("#nowhere", "no such anchor"),
        ("https://cdn.example/x.css", "not a relative link"),
        ("//cdn.example/x.js", "not a relative link"),
        ("../outside.png", "outside the site"),
    ]
    body = "".join(f'<a href="{href}">x</a>' for href, _ in links)
    (tmp_path / "index.html").write_text(f'<div id="top">{body}</div>')
    found = broken_links(tmp_path)
    expected = [f"index.html: href={href} ({why})" for href, why in links if why]
    assert sorted(found) == sorted(expected)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "features.9"], "features.9"),
        (["--images", "nope.png"], "image 'nope.png' not found"),
        (["--images", "sample:cofee"], "coffee"),
        (["--ablation", "missing.json"], "--ablation 'missing.json' not found"),
        (["--steps", "0"], "steps must be at least 1"),  # RenderConfig's own check
        (["--data", "no_such_folder"], "no_such_folder"),
        (["--methods", "salience"], "salience"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = _cli("-m", "lenet5_digits", "-q", *args, "-o", str(tmp_path / "out"))
    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], output
    assert not (tmp_path / "out").exists()  # nothing written before the checks passed


def test_cli_refuses_foreign_folder_and_file_output(tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("x")
    code, output = _cli("-q", "-o", str(tmp_path))
    assert code == 1 and "--force" in output and len(output.strip().splitlines()) == 1
    code, output = _cli("-q", "-o", str(tmp_path / "other.txt"))
    assert code != 0 and "other.txt" in output


@pytest.mark.slow
def test_tiny_cli_site_for_the_browser_test(tmp_path: Path) -> None:
    """The fixture the browser test builds: a real model, every page kind, in seconds."""
    from report_helpers import TINY_CLI_ARGS

    out = tmp_path / "site"
    code, output = _cli(*TINY_CLI_ARGS, "-o", str(out))
    assert code == 0, output
    assert sorted(p.name for p in out.glob("*.html")) == [
        "concepts-01-features.0.html",
        "concepts-02-features.3.html",
        "images.html",
        "index.html",
        "layer-01-features.0.html",
        "layer-02-features.3.html",
    ]
    assert broken_links(out) == []


def test_every_stage_shows_progress_in_plain_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off a terminal (CliRunner): one plain line per stage, planning and the model card too."""
    from report_helpers import TINY_CLI_ARGS
    from vizcnn.cli import progress as cli_progress

    monkeypatch.setattr(cli_progress, "PLAIN_INTERVAL_S", 1e9)  # each stage's last line only
    args = [a for a in TINY_CLI_ARGS if a != "-q"]
    result = CliRunner().invoke(app, ["report", *args, "-o", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    stages = [line.split(":")[0] for line in result.stderr.splitlines()]
    assert stages == [
        "checking inputs",
        "model card",
        "renders",
        "data pass",
        "class votes",
        "accentuations",
        "concepts",
        "dreams",
        "attribution maps",
    ]
    assert all(line.endswith(" elapsed") for line in result.stderr.splitlines())


@pytest.mark.slow
def test_report_shows_a_real_ablate_results_file(tmp_path: Path) -> None:
    from report_helpers import TINY_CLI_ARGS

    ablated = tmp_path / "ablate"
    result = CliRunner().invoke(
        app,
        ["ablate", "digits", "-m", "lenet5_digits", "--units", "features.3:0,5,9",
         "--retrain", "none", "-q", "-o", str(ablated)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = json.loads((ablated / "results.json").read_text())
    rows, block = stored["rows"], stored["provenance"]
    out = tmp_path / "site"
    code, output = _cli(*TINY_CLI_ARGS, "--ablation", str(ablated / "results.json"), "-o", str(out))
    assert code == 0, output
    page = (out / "ablation.html").read_text(encoding="utf-8")
    for row in rows:  # each variant with its top-1 accuracy in percent
        assert row["name"] in page
        assert f"{100 * row['scores']['top1_accuracy']:.1f}" in page
    # the results' own provenance block, as ablate wrote it
    assert f"&#34;created&#34;: &#34;{block['created']}&#34;" in page
    assert f"&#34;weights_digest&#34;: &#34;{block['weights_digest']}&#34;" in page
    assert broken_links(out) == []


@pytest.mark.slow
def test_default_report_of_lite0_end_to_end(tmp_path: Path) -> None:
    """The default report's layers and images on the real model, with few units and steps."""
    out = tmp_path / "site"
    code, output = _cli(
        "--units-per-layer", "2", "--steps", "2", "--limit", "16", "--methods", "saliency",
        "--dream-octaves", "1", "--dream-steps", "2", "--accent-steps", "2", "-q", "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    assert "open " + str(out / "index.html") in output
    pages = sorted(p.name for p in out.glob("*.html"))
    assert pages == [
        "concepts-01-_blocks.2.html",
        "concepts-02-_blocks.6.html",
        "concepts-03-_blocks.9.html",
        "images.html",
        "index.html",
        "layer-01-_blocks.2.html",
        "layer-02-_blocks.6.html",
        "layer-03-_blocks.9.html",
    ]
    for page in out.glob("*.html"):
        parsed = parse(page)
        assert not parsed.errors and not parsed.stack, page.name
        for link in parsed.links:
            assert (out / unquote(urlsplit(link).path)).is_file(), (page.name, link)
    images = (out / "images.html").read_text(encoding="utf-8")
    assert "coffee" in images and "chelsea" in images
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "_blocks.15" in index and "4,652,008" in index  # the whole layer table, parameters
    code, again = _cli(
        "--units-per-layer", "2", "--steps", "2", "--limit", "16", "--methods", "saliency",
        "--dream-octaves", "1", "--dream-steps", "2", "--accent-steps", "2", "-q", "-o", str(out),
    )  # fmt: skip
    assert code == 0 and "0 artifact(s) computed" in again, again


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_report_on_cuda_matches_the_cpu_layout(site: Path, data: Path, tmp_path: Path) -> None:
    loaded = markup_loaded()
    loaded.module.to("cuda")
    root = tmp_path / "cuda"
    result = build_report(loaded, plan_report(loaded, tiny_config(data)), ArtifactStore(root))
    assert sorted(p.name for p in root.glob("*.html")) == sorted(
        p.name for p in site.glob("*.html")
    )
    assert broken_links(root) == []
    # same weights, same options: the same cache keys as the CPU build
    assert sorted(result.computed) == sorted(p.name for p in (site / "artifacts").iterdir())


@pytest.mark.parametrize("native", [True, False])
def test_renders_and_dreams_record_and_run_the_precision_of_this_machine(
    data: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """bf16 where the CPU has it (render's `auto`), pinned in the key and passed on explicitly."""
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: native)
    loaded = markup_loaded()
    plan = plan_report(loaded, tiny_config(data))
    wanted = "bfloat16" if native else "float32"
    pinned = [a for a in plan.artifacts if a.kind in ("render", "dream")]
    assert pinned and all(a.params["precision"] == wanted for a in pinned)
    concepts = [a for a in plan.artifacts if a.kind == "concepts"]  # their direction renders
    assert concepts and all(a.params["render"]["precision"] == wanted for a in concepts)
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: not native)
    other = plan_report(loaded, tiny_config(data))
    changed = {
        a.kind for a, b in zip(plan.artifacts, other.artifacts, strict=True) if a.key != b.key
    }
    # mining, stats, votes and attribution do not depend on it
    assert changed == {"render", "dream", "concepts"}


def test_images_page_has_the_metric_table_and_the_randomization_verdict(
    site: Path, data: Path
) -> None:
    from vizcnn.attribution import attribute
    from vizcnn.attribution.metrics import TABLE_COLUMNS, faithfulness
    from vizcnn.data.datasets import preprocess
    from vizcnn.data.samples import resolve_image_argument
    from vizcnn.report.builder.compute import REPORT_ROAD_SHARES

    page = (site / "images.html").read_text(encoding="utf-8")
    assert "randomization test" in page
    for _, title, _ in TABLE_COLUMNS:
        assert title in page
    (meta,) = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in (site / "artifacts").glob("*/meta.json")
        if json.loads(p.read_text(encoding="utf-8"))["kind"] == "attribution"
    ]
    stored = meta["data"]
    assert stored["verdicts"]["saliency"] in {"passed", "failed", "undecided"}
    assert f"<td>{stored['verdicts']['saliency']}</td>" in page
    # the stored row is the library's computation on the same image
    loaded = markup_loaded()
    raw, _ = resolve_image_argument(str(data / f"{EVIL}.png"), loaded.channels)
    image = preprocess(raw, loaded.input_size, loaded.resize_crop)
    maps = attribute(loaded, image[None], ["saliency"])
    row = faithfulness(loaded, image[None], maps.maps, maps.targets, shares=REPORT_ROAD_SHARES)
    for key, value in row["saliency"].items():
        assert stored["metrics"]["saliency"][key] == pytest.approx(value, rel=1e-5, abs=1e-7)
