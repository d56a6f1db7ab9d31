"""sphinx-gallery glue for scripts that save their pictures instead of showing matplotlib figures.

Each `gallery/plot_*.py` takes its output folder as its first argument (`python
gallery/plot_x.py OUT`). `gallery_argv` gives every script its own empty folder under
`docs/_build/gallery_out/`, and `written_images`, an image scraper, embeds after each code block
the pictures that block wrote there (PNG, JPEG, GIF; the largest few when a block writes many,
which are its contact sheets rather than their tiles).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "_build" / "gallery_out"
PICTURES = (".png", ".jpg", ".jpeg", ".gif")
MOST = 6  # pictures embedded per code block

_seen: dict[Path, dict[str, float]] = {}


def _out_dir(script: str | Path) -> Path:
    return OUT / Path(script).stem


def gallery_argv(gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list[str]:
    """`sys.argv[1:]` of a gallery script: a fresh output folder of its own."""
    out = _out_dir(script_vars["src_file"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _seen[out] = {}
    if Path(script_vars["src_file"]).stem == "plot_report_screenshots":
        return ["", str(out)]  # no site given: it builds a small one under OUT
    return [str(out)]


def written_images(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
    """reST embedding the pictures the block just wrote into its script's output folder."""
    from sphinx_gallery.scrapers import figure_rst

    out = _out_dir(block_vars["src_file"])
    if not out.is_dir():
        return ""
    seen = _seen.setdefault(out, {})
    new = [
        p
        for p in out.iterdir()
        if p.suffix.lower() in PICTURES and seen.get(p.name) != p.stat().st_mtime
    ]
    for picture in new:
        seen[picture.name] = picture.stat().st_mtime
    if len(new) > MOST:
        new = sorted(new, key=lambda p: p.stat().st_size, reverse=True)[:MOST]
    names = []
    for picture in sorted(new):
        target = Path(next(block_vars["image_path_iterator"])).with_suffix(picture.suffix.lower())
        shutil.copyfile(picture, target)
        names.append(str(target))
    return figure_rst(names, gallery_conf["src_dir"]) if names else ""
