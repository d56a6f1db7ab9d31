"""Layering of the report: its HTML (`vizcnn.report.html`) is presentation only and imports no
technique and not the builder; no technique imports the report."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "vizcnn"
TECHNIQUES = ("optvis", "deepdream", "mining", "features", "attribution", "ablation")
HTML = "vizcnn.report.html"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_html_layer_exists() -> None:
    assert sorted(p.name for p in (ROOT / "report" / "html").glob("*.py")) == [
        "__init__.py",
        "charts.py",
        "links.py",
        "pages.py",
        "site.py",
    ]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "report" / "html").glob("*.py")), ids=lambda p: p.name
)
def test_report_html_imports_no_technique_and_not_the_builder(path: Path) -> None:
    banned = {f"vizcnn.{name}" for name in TECHNIQUES}
    for module in imported_modules(path):
        assert not any(module == b or module.startswith(b + ".") for b in banned), module
        if module.startswith("vizcnn.report"):  # within the report: only its HTML layer
            assert module == HTML or module.startswith(HTML + "."), module


def test_no_technique_imports_the_report() -> None:
    for name in TECHNIQUES:
        for path in (ROOT / name).rglob("*.py"):
            for module in imported_modules(path):
                assert not module.startswith("vizcnn.report"), path
