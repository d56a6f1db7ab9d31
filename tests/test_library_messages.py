"""Library messages name arguments and config fields, never CLI flags; the CLI maps them back.

A script author never typed `--tile` or `-k`: `vizcnn.*` says `DreamConfig.tile` or
`MineConfig.k`, and `cli.flags.as_flags` (the `FIELD_FLAGS` table) turns that into the flag
when the same message reaches the command line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from vizcnn.ablation.training import TrainConfig
from vizcnn.cli.flags import as_flags
from vizcnn.concepts.config import ConceptConfig
from vizcnn.core.errors import VizError
from vizcnn.features.probes import ProbeConfig
from vizcnn.mining.streaming import MineConfig
from vizcnn.report.config import ReportConfig

LIBRARY = Path(__file__).resolve().parents[1] / "vizcnn"
# `--tile`, `--retrain`; `-k`, `-l` after a space, a bracket or the start (not `4-D`, `{x}-c`)
FLAG = re.compile(r"(?<![\w}\-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])")
# Strings that are a command line on purpose, not advice to a user:
ON_PURPOSE = {
    # `remake_command`: the `vizcnn dream` command recorded in a dream's provenance to make it
    # again, and the load_model argument -> flag table it is built with
    "runs/dream.py",
    # ffmpeg's own command line (`-y -f rawvideo ... -c:v libx264`)
    "io/video.py",
}


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with `{}` for each replacement field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else "{}" for part in node.values
        )
    return None


def flags_in_strings(path: Path) -> list[str]:
    """`line: flag in 'text'` for every string literal (docstrings aside) naming a CLI flag."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    parts = {  # the pieces of f-strings are reported with their f-string
        id(value) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
        for value in node.values
    }  # fmt: skip
    found = []
    for node in ast.walk(tree):
        text = _text(node)
        if text is None or id(node) in docs or id(node) in parts:
            continue
        for flag in FLAG.findall(text):
            found.append(f"{node.lineno}: {flag} in {text[:80]!r}")
    return found


def test_no_library_string_names_a_cli_flag() -> None:
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        relative = path.relative_to(LIBRARY).as_posix()
        if relative in ON_PURPOSE:
            assert flags_in_strings(path), f"{relative} needs no allow-list entry any more"
            continue
        offenders += [f"vizcnn/{relative}:{hit}" for hit in flags_in_strings(path)]
    assert not offenders, "library strings naming CLI flags (name the argument or config " \
        "field, and map it in cli/flags.py FIELD_FLAGS):\n" + "\n".join(offenders)  # fmt: skip


def test_the_scan_finds_flags(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text(
        'def f(x):\n    """Use --tile."""\n    raise E(f"use a larger --tile {x}-D (-k)", "4-D")\n',
        encoding="utf-8",
    )
    assert [hit.split(" in ")[0] for hit in flags_in_strings(path)] == ["3: --tile", "3: -k"]


CONFIG_ERRORS: list[tuple[Callable[[], object], str, str]] = [
    (lambda: MineConfig("conv", k=0), "MineConfig.k must be at least 1", "-k must be at least 1"),
    (lambda: MineConfig("conv", rank="median"), "unknown MineConfig.rank", "unknown --rank"),
    (
        lambda: MineConfig("conv", checkpoint_every=0),
        "MineConfig.checkpoint_every",
        "--checkpoint-every must",
    ),
    (
        lambda: MineConfig("conv", checkpoint_seconds=0),
        "MineConfig.checkpoint_seconds",
        "--checkpoint-seconds must",
    ),
    (lambda: TrainConfig(retrain="some"), "unknown TrainConfig.retrain", "unknown --retrain"),
    (lambda: TrainConfig(epochs=0), "TrainConfig.epochs must", "--epochs must"),
    (lambda: TrainConfig(lr=0.0), "TrainConfig.lr must", "--lr must"),
    (lambda: TrainConfig(batch_size=0), "TrainConfig.batch_size must", "--batch must"),
    (
        lambda: TrainConfig(retrain="head", from_scratch=True),
        "TrainConfig.from_scratch needs TrainConfig.retrain='all'",
        "--from-scratch needs --retrain all",
    ),
    (lambda: ReportConfig(units_per_layer=0), "ReportConfig.units_per_layer", "--units-per-layer"),
    (lambda: ReportConfig(limit=0), "ReportConfig.limit must", "--limit must"),
    (lambda: ReportConfig(crops=0), "ReportConfig.crops must", "--crops must"),
    (lambda: ReportConfig(projections="x"), "ReportConfig.projections", "unknown --projections"),
    (lambda: ReportConfig(layers=("a", "a")), "ReportConfig.layers names", "--layers names"),
    (lambda: ReportConfig(vote_images=-1), "ReportConfig.vote_images", "--vote-images must"),
    (lambda: ReportConfig(vote_classes=0), "ReportConfig.vote_classes", "--vote-classes must"),
    (lambda: ReportConfig(accentuations=-1), "ReportConfig.accentuations", "--accentuations must"),
    (lambda: ReportConfig(accent_steps=0), "ReportConfig.accent_steps", "--accent-steps must"),
    (lambda: ReportConfig(concepts=-1), "ReportConfig.concepts must", "--concepts must"),
    (
        lambda: ReportConfig(concept_positions=0),
        "ReportConfig.concept_positions",
        "--concept-positions must",
    ),
    (
        lambda: ReportConfig(render=replace(ReportConfig().render, diversity=9)),
        "ReportConfig.render.diversity must be 1..8",
        "--diversity must be 1..8",
    ),
    (lambda: ProbeConfig(test_fraction=0.0), "ProbeConfig.test_fraction", "--test-fraction must"),
    (lambda: ProbeConfig(C=0.0), "ProbeConfig.C must be positive", "-C must be positive"),
    (lambda: ProbeConfig(max_iter=0), "ProbeConfig.max_iter must", "--max-iter must"),
    (lambda: ProbeConfig(crops=0), "ProbeConfig.crops must", "--crops must"),
    (lambda: ConceptConfig(k=0), "ConceptConfig.k must be at least 1", "-k must be at least 1"),
    (lambda: ConceptConfig(max_positions=0), "ConceptConfig.max_positions", "--max-positions must"),
    (lambda: ConceptConfig(patches=0), "ConceptConfig.patches must", "--patches must"),
    (lambda: ConceptConfig(thumbnail=4), "ConceptConfig.thumbnail must", "--thumbnail must"),
    (lambda: ConceptConfig(heatmap_images=0), "ConceptConfig.heatmap_images", "--heatmap-images"),
    (
        lambda: ConceptConfig(importance_images=0),
        "ConceptConfig.importance_images",
        "--importance-images must",
    ),
    (lambda: ConceptConfig(limit=0), "ConceptConfig.limit must", "--limit must"),
    (lambda: ConceptConfig(crops=0), "ConceptConfig.crops must", "--crops must"),
    # the techniques' own fields are checked by their configs (RenderConfig, MineConfig, ...)
    (
        lambda: ReportConfig(mine=replace(ReportConfig().mine, k=0)),
        "MineConfig.k must be at least 1",
        "-k must be at least 1",
    ),
]


@pytest.mark.parametrize(("make", "library", "cli"), CONFIG_ERRORS)
def test_config_messages_name_fields_and_the_cli_maps_them_to_flags(
    make: Callable[[], object], library: str, cli: str
) -> None:
    with pytest.raises(VizError) as info:
        make()
    message = str(info.value)
    assert library in message and not FLAG.findall(message.split(", got")[0]), message
    assert cli in as_flags(message) and "Config." not in as_flags(message), as_flags(message)
