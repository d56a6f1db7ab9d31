"""The README's Python runs as written (with small step counts), so a renamed argument breaks a
test, not a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python() -> None:
    assert _python_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = re.sub(r"\bsteps=\d+", "steps=2", _python_blocks()[index])
    monkeypatch.chdir(tmp_path)
    exec(compile(source, f"README.md python block {index}", "exec"), {"__name__": "readme"})
