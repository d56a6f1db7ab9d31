"""Layering of the report: `vizcnn.report` is presentation only and imports no technique."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "vizcnn"
TECHNIQUES = ("optvis", "deepdream", "mining", "features", "attribution", "ablation")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "report").glob("*.py")), ids=lambda p: p.name)
def test_report_imports_no_technique_and_not_the_composition(path: Path) -> None:
    banned = {f"vizcnn.{name}" for name in (*TECHNIQUES, "microscope")}
    for module in imported_modules(path):
        assert not any(module == b or module.startswith(b + ".") for b in banned), module


def test_no_technique_imports_the_report_or_the_composition() -> None:
    for name in TECHNIQUES:
        for path in (ROOT / name).glob("*.py"):
            for module in imported_modules(path):
                assert not module.startswith(("vizcnn.report", "vizcnn.microscope")), path
