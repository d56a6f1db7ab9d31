"""Every technique on every model of the any-model matrix (`tests/model_matrix.py`): timm
architectures of 14 families and every torchvision classification CNN family, random weights,
small inputs, through the CLI as a user runs it. Each cell succeeds, or gives the one-line
refusal `REFUSALS` records for it; `docs/models.md`'s table is `REFUSALS`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from model_matrix import (
    REFUSALS,
    TECHNIQUES,
    command,
    matrix_markdown,
    model_specs,
    write_inputs,
)
from vizcnn.cli.main import app

pytest.importorskip("timm")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return write_inputs(str(tmp_path_factory.mktemp("matrix-inputs")))


@pytest.mark.slow
@pytest.mark.parametrize("technique", TECHNIQUES)
@pytest.mark.parametrize("spec", model_specs())
def test_technique_on_model(
    spec: str, technique: str, inputs: tuple[str, str], tmp_path: Path
) -> None:
    image, data = inputs
    result = CliRunner().invoke(app, command(spec, technique, str(tmp_path / "out"), *inputs))
    refusal = REFUSALS.get((spec, technique))
    if refusal is None:
        assert result.exit_code == 0, f"{spec} {technique}: {result.output[-2000:]}"
        return
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1, result.output[-2000:]
    assert refusal in lines[0], lines[0]


def test_the_docs_table_is_the_matrix() -> None:
    """docs/models.md shows the matrix as `matrix_markdown` makes it from `REFUSALS`."""
    text = DOCS.read_text(encoding="utf-8")
    table = text[
        text.index("<!-- matrix -->") + len("<!-- matrix -->\n") : text.index("<!-- /matrix -->")
    ]
    assert table == matrix_markdown()
