"""What a command imports: a short render must not pay for libraries it does not use.

`import torchvision` (it loads torch._dynamo), `torch.optim` (its first optimizer imports
torch._dynamo), captum and matplotlib cost about 3 CPU s together, which was half of a 32-step
render's whole process. The check runs the real CLI in a fresh interpreter and lists the heavy
modules it ended up holding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vizcnn.io.provenance import _torchvision_version
from vizcnn.models.base import imagenet_labels

HEAVY = ("torchvision", "torch._dynamo", "captum", "matplotlib", "sklearn", "skimage")

PROBE = """
import json, sys
from vizcnn.cli.main import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps([m for m in {heavy} if m in sys.modules]), file=sys.stderr)
"""


def _heavy_modules_after(args: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return list(json.loads(done.stderr.strip().splitlines()[-1]))


def test_render_imports_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    out = tmp_path / "render"
    args = ["render", "-l", "_blocks.1", "-c", "0", "--steps", "2", "--image-size", "32"]
    assert _heavy_modules_after([*args, "-q", "-o", str(out)]) == []
    assert (out / "manifest.json").is_file()  # it did render


def test_help_of_the_group_lists_every_lazy_command_with_its_short_help() -> None:
    # listing the commands with their short help imports each command's module
    done = subprocess.run(
        [sys.executable, "-m", "vizcnn.cli.main", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    from vizcnn.cli.main import LAZY_COMMANDS

    for name in LAZY_COMMANDS:
        assert name in listed, name
    assert "Render images that excite" in listed["render"]
    assert "DeepDream" in done.stdout


def test_bundled_imagenet_labels_equal_torchvisions() -> None:
    from torchvision.models import ResNet50_Weights

    assert imagenet_labels() == list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_torchvision_version_read_without_import_equals_the_modules(monkeypatch) -> None:
    import torchvision

    imported = torchvision.__version__
    monkeypatch.delitem(sys.modules, "torchvision")  # so the file is read, not the module
    assert _torchvision_version() == imported


def test_an_unknown_command_suggests_the_close_ones() -> None:
    from click.testing import CliRunner

    from vizcnn.cli.main import app

    result = CliRunner().invoke(app, ["rendr"])
    assert result.exit_code == 2
    assert "No such command 'rendr'. Did you mean: render?" in result.output


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_cli_process_keeps_freed_memory_for_reuse() -> None:
    from vizcnn.cli.memory import reuse_freed_memory

    # glibc accepts both settings (a refused value returns 0); they change only this process
    assert reuse_freed_memory() is True
