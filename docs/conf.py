"""Sphinx configuration: the vizcnn documentation site, offline (furo, no CDN, no remote fonts).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (the `docs` extra).
``VIZCNN_GALLERY_QUICK=1`` runs the gallery scripts with small step counts (CI);
``-D plot_gallery=0`` skips running them (pages without figures).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import vizcnn  # noqa: E402

project = "vizcnn"
author = "the vizcnn authors"
copyright = "the vizcnn authors, MIT licence"
release = vizcnn.__version__
version = release

extensions = [
    "vizcnn_pages",  # commands/*.md from click, api/index.md from __all__ (first: autosummary reads it)
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_gallery.gen_gallery",
]

# -- sources ----------------------------------------------------------------------------------
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# README.md is the plain index GitHub shows for docs/; the site's index is index.md
exclude_patterns = ["_build", "README.md", "gallery/*.ipynb", "gallery/*.py", "gallery/*.md5"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # the guides link to #section anchors, as GitHub renders them
default_role = "literal"  # docstrings write `name` for code
pygments_style = "sphinx"
smartquotes = False  # option names keep their two hyphens (--seed), quotes stay as typed

# -- API --------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- gallery ----------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "gallery"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"/plot_",  # every plot_*.py runs; own_cnn.py is a module they import
    "ignore_pattern": r"(own_cnn|__init__)\.py",
    # named by import path (not function objects) so Sphinx can cache the configuration
    "image_scrapers": ("matplotlib", "gallery_scraper.written_images"),
    "reset_argv": "gallery_scraper.gallery_argv",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "write_computation_times": False,  # its page loads jQuery and DataTables from a CDN
    "default_thumb_file": str(DOCS / "images" / "dream_before_after.jpg"),
    "min_reported_time": 5,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
}

# -- HTML: furo, everything served from the build folder --------------------------------------
html_theme = "furo"
html_title = f"vizcnn {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False
html_copy_source = False
