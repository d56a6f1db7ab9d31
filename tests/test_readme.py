"""Every ```python block of the README and of the pages in docs/ runs as written, with small
settings, so a renamed argument breaks a test, not a reader.

Settings shrink by substitution in the block's text (`QUICK`: `steps=256` becomes `steps=2`, and
so on); a block that continues an earlier example or needs a file gets its context from `SETUP`,
run before it in the same namespace (and the same temporary folder). A new page in docs/ is picked
up without edits; a block that is not meant to run says so with a ```text or ```pycon fence.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)

# (pattern, replacement): fewer optimization steps, epochs, images, frames; measured to keep the
# whole file near a minute of CPU on the shared 2-core machine
QUICK = [
    (r"\bsteps=\d+", "steps=2"),
    (r"\bepochs=\d+", "epochs=1"),
    (r"\blimit=\d+", "limit=8"),
    (r"\bcrops_per_image=\d+", "crops_per_image=1"),
    (r"\bframes=\d+", "frames=2"),
    (r"\bunits_per_layer=\d+", "units_per_layer=1"),
    (r"\bshifts=\([\d, ]+\)", "shifts=(1,)"),
]

# what a block assumes from the page around it (keyed by page, relative to the root, and index)
SETUP = {
    ("docs/mine.md", 1): """
import vizcnn
loaded = vizcnn.load_model("efficientnet_lite0")
data = vizcnn.open_dataset("samples", loaded.channels, loaded.input_size, limit=8)
""",
    ("docs/models.md", 0): """
import sys
sys.path.insert(0, GALLERY)
import plot_own_model
plot_own_model.write_digits(__import__("pathlib").Path("out/digits"), 4)
""",
    ("docs/models.md", 1): """
import sys
sys.path.insert(0, GALLERY)
import vizcnn
from own_cnn import build
MEAN, STD, LABELS = 0.3, 0.3, [str(d) for d in range(10)]
""",
    ("docs/python-api.md", 1): """
from vizcnn.models import imagenet_labels
open("classes.txt", "w").write("\\n".join(imagenet_labels()))
""",
    ("docs/python-api.md", 2): """
import torch, torchvision
net = torchvision.models.resnet18(weights=None).train()
x = torch.rand(2, 3, 64, 64)
""",
}

# calls that run at the library's defaults (no steps= to shrink) get small settings added; measured
# with --durations, these were most of the file's time
DEFAULTS = [
    # a dream at the defaults: 4 octaves x 10 steps of a 600x400 photo
    (
        r"vizcnn\.dream\(loaded, sample_image\(\"chelsea\"\), guide=",
        'vizcnn.dream(loaded, sample_image("chelsea"), vizcnn.DreamConfig(octaves=2, steps=2), guide=',
    ),
    # render(model, units) at the default 512 steps
    (r"\brender\((\w+), (\[[^\]]*\])\)", r"render(\1, \2, vizcnn.RenderConfig(steps=2))"),
    # deletion curves at 16 steps, each a forward pass per image, method and curve
    (r"\bdeletion_curves\(([^()]*)\)", r"deletion_curves(\1, steps=2)"),
    # a report mines every crop of the samples (128 images) unless limited
    (r"\bReportConfig\((?!\))(?![^#]*\blimit=)", "ReportConfig(limit=8, "),
]


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        if "_build" in page.parts or page.parent.name in ("commands", "api", "gallery"):
            continue  # generated at build time
        name = page.relative_to(ROOT).as_posix()
        for index, block in enumerate(BLOCK.findall(page.read_text(encoding="utf-8"))):
            found.append((name, index, block))
    return found


def quick(source: str) -> str:
    for pattern, replacement in QUICK:
        source = re.sub(pattern, replacement, source)
    for pattern, replacement in DEFAULTS:
        source = re.sub(pattern, replacement, source)
    return source


def test_the_readme_and_docs_have_python() -> None:
    pages = {name for name, _, _ in _blocks()}
    assert "README.md" in pages and len(pages) > 5


def test_quick_settings_shrink_what_they_name() -> None:
    assert quick("RenderConfig(steps=256), limit=128") == "RenderConfig(steps=2), limit=8"
    assert quick("EquivarianceConfig(shifts=(1, 2, 3, 4))") == "EquivarianceConfig(shifts=(1,))"
    assert (
        quick('render(net, ["a:1", obj.c(2)])')
        == 'render(net, ["a:1", obj.c(2)], vizcnn.RenderConfig(steps=2))'
    )
    assert quick("deletion_curves(m, x, maps, t)") == "deletion_curves(m, x, maps, t, steps=2)"
    assert quick("base = ReportConfig()\nc = ReportConfig(\n    layers=1,\n)").count("limit=8") == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("page", "index", "block"),
    _blocks(),
    ids=[f"{name}-{index}" for name, index, _ in _blocks()],
)
def test_python_block_runs(
    page: str, index: int, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a SETUP's path change stays in this test
    namespace: dict[str, object] = {"__name__": "docs_block", "GALLERY": str(ROOT / "gallery")}
    setup = SETUP.get((page, index))
    if setup:
        exec(compile(setup, f"setup of {page} block {index}", "exec"), namespace)
    exec(compile(quick(block), f"{page} python block {index}", "exec"), namespace)
