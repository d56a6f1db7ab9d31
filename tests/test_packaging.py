"""Packaging: every subpackage ships in the wheel; the public names are exported, no old path."""

from __future__ import annotations

import importlib
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


def test_every_public_name_is_exported_and_no_old_flat_path_is() -> None:
    import vizcnn
    from vizcnn.attribution import attribute

    for name in vizcnn.__all__:
        assert getattr(vizcnn, name) is not None, name
    assert vizcnn.attribute is attribute and "GradCAM" in vizcnn.__all__
    for old in ("vizcnn.imaging", "vizcnn.rendering", "vizcnn.errors"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    with pytest.raises(AttributeError):
        vizcnn.imaging  # noqa: B018
