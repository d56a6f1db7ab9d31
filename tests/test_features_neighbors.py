"""Nearest neighbours equal a brute-force distance matrix; embeddings are cached per weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import TinyNet, assert_same_state, model_state
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.features.neighbors import (
    capture_input,
    classifier_layer,
    distances,
    embed,
    embed_dataset,
    nearest,
)
from vizcnn.models.base import describe


def _brute(queries: torch.Tensor, keys: torch.Tensor, metric: str) -> list[list[float]]:
    rows = []
    for q in queries.tolist():
        row = []
        for k in keys.tolist():
            if metric == "l2":
                row.append(math.sqrt(sum((a - b) ** 2 for a, b in zip(q, k, strict=True))))
            else:
                dot = sum(a * b for a, b in zip(q, k, strict=True))
                norms = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in k))
                row.append(1 - dot / norms)
        rows.append(row)
    return rows


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_nearest_equals_brute_force(metric: str) -> None:
    generator = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(4, 6, generator=generator), torch.randn(30, 6, generator=generator)
    brute = _brute(queries, keys, metric)
    torch.testing.assert_close(
        distances(queries, keys, metric), torch.tensor(brute, dtype=torch.float64)
    )
    dist, index = nearest(queries, keys, 5, metric)  # type: ignore[arg-type]
    for q in range(4):
        expected = sorted(range(30), key=lambda i: (brute[q][i], i))[:5]
        assert index[q].tolist() == expected
        torch.testing.assert_close(
            dist[q], torch.tensor([brute[q][i] for i in expected], dtype=torch.float64)
        )


def test_ties_invalid_items_and_k() -> None:
    keys = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    dist, index = nearest(torch.tensor([[1.0, 0.0]]), keys, 3)
    assert index.tolist() == [[0, 2, 1]] and dist[0, :2].tolist() == [0.0, 0.0]
    valid = torch.tensor([False, True, True, True])
    assert nearest(torch.tensor([[1.0, 0.0]]), keys, 2, valid=valid)[1].tolist() == [[2, 1]]
    with pytest.raises(VizError, match="k must be 1..3"):
        nearest(torch.zeros(1, 2), keys, 4, valid=valid)
    with pytest.raises(VizError, match="metric"):
        distances(torch.zeros(1, 2), keys, "l1")  # type: ignore[arg-type]


def test_classifier_input_is_caught_by_a_pre_hook(tiny: TinyNet) -> None:
    tiny.train()
    before = model_state(tiny)
    assert classifier_layer(tiny) == "head"
    loaded = describe(tiny, mean=[0.0], std=[1.0], input_size=10)
    images = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    vectors = embed(loaded, images)
    with torch.no_grad():  # by hand: everything before the head, flattened
        x = tiny.pool(torch.relu(tiny.conv1(images)))
        expected = torch.relu(tiny.conv2(x)).flatten(1)
    torch.testing.assert_close(vectors, expected)
    pooled = embed(loaded, images, "conv1")  # a map is averaged over space
    torch.testing.assert_close(pooled, tiny.conv1(images).detach().mean(dim=(2, 3)))
    assert_same_state(before, model_state(tiny))
    with capture_input(tiny, "head") as seen:
        tiny(images)
    assert seen["input"].shape == (3, 4) and len(tiny.head._forward_pre_hooks) == 0
    with pytest.raises(VizError, match="no nn.Linear"):
        classifier_layer(nn.Sequential(nn.Conv2d(1, 1, 1)))


def test_embed_dataset_batches_and_caches(tmp_path, tiny: TinyNet) -> None:
    loaded = describe(tiny, mean=[0.0], std=[1.0], input_size=10)
    images = torch.rand(7, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    data = TensorImages(images)
    calls: list[tuple[int, int]] = []
    first = embed_dataset(
        loaded,
        data,
        cache_dir=tmp_path,
        progress=lambda d, t, m: calls.append((d, t)),
        run=RunOptions(batch=3),
    )
    assert calls == [(3, 7), (6, 7), (7, 7)] and not first.cached
    torch.testing.assert_close(first.vectors, embed(loaded, images), atol=1e-6, rtol=1e-5)
    second = embed_dataset(loaded, data, cache_dir=tmp_path, run=RunOptions(batch=3))
    assert second.cached and torch.equal(second.vectors, first.vectors)
    assert len(list(tmp_path.glob("embeddings-*.pt"))) == 1
    with torch.no_grad():
        tiny.conv2.weight.mul_(2.0)  # new weights: a new cache entry, new vectors
    third = embed_dataset(loaded, data, cache_dir=tmp_path, run=RunOptions(batch=3))
    assert not third.cached and len(list(tmp_path.glob("embeddings-*.pt"))) == 2
    assert not torch.allclose(third.vectors, first.vectors)


def _folder(tmp_path, count: int = 6):
    folder = tmp_path / "data"
    folder.mkdir()
    generator = torch.Generator().manual_seed(4)
    for i in range(count):
        pixels = (torch.rand(40, 40, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return folder


def test_neighbors_command_and_cache(tmp_path) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out" / "nn.png"
    query = str(folder / "img2.png")
    args = [
        "neighbors",
        query,
        "sample:camera",
        str(folder),
        "-m",
        "lenet5_digits",
        "-k",
        "3",
        "-q",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["provenance"]["technique"] == "neighbors"
    assert data["provenance"]["options"]["layer"] == "classifier-input"
    first = data["result"]["neighbors"][0]
    assert first["names"][0].endswith("img2.png") and first["distances"][0] < 1e-4  # itself
    assert data["result"]["embedding_dim"] == 84 and not data["result"]["cached"]
    assert (tmp_path / "out" / ".vizcnn_cache").is_dir()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "cached" in again.output
    assert json.loads(out.with_suffix(".json").read_text())["result"]["neighbors"][0] == first


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png", "DATA"], "not found"),
        (["sample:camera", "DATA", "-l", "features.99"], "unknown layer"),
        (["sample:camera", "EMPTY"], "no images"),
        (["sample:camera", "DATA", "-k", "7"], "more than the 6 images"),
        (["sample:camera"], "QUERY"),
    ],
)
def test_neighbors_one_line_errors(tmp_path, args: list[str], message: str) -> None:
    folder = _folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(folder) if a == "DATA" else str(empty) if a == "EMPTY" else a for a in args]
    result = CliRunner().invoke(
        app, ["neighbors", *args, "-m", "lenet5_digits", "-o", str(tmp_path / "nn.png")]
    )
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    if result.exit_code == 1:
        assert len(result.output.strip().splitlines()) == 1
