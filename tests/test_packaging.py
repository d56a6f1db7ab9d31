"""Packaging: every subpackage ships in the wheel, and the old flat import paths still work."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        "vizcnn." + ".".join(init.parent.relative_to(ROOT / "vizcnn").parts)
        for init in (ROOT / "vizcnn").rglob("__init__.py")
        if init.parent != ROOT / "vizcnn"
    }
    assert found | {"vizcnn", "vizcnn.cli"} == listed


def test_old_flat_paths_alias_the_new_modules() -> None:
    from vizcnn import _aliases

    for old, new in _aliases.ALIASES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    import vizcnn

    assert vizcnn.imaging is sys.modules["vizcnn.io.imaging"]
