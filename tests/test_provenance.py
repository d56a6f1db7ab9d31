"""The provenance block: digests that track weights and data, and comparisons that name a change."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vizcnn.io.provenance import (
    differing_options,
    files_digest,
    provenance,
    tensor_digest,
    weights_digest,
)


def _net(seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return net


def test_weights_digest_follows_weights_and_buffers() -> None:
    a, b = _net(0), _net(0)
    assert weights_digest(a) == weights_digest(b)
    assert weights_digest(a) != weights_digest(_net(1))
    with torch.no_grad():
        b[1].running_mean.add_(1e-3)  # a buffer alone changes what the network computes
    assert weights_digest(a) != weights_digest(b)
    assert weights_digest(a.to(torch.bfloat16)) != weights_digest(_net(0))  # dtype counts


def test_files_and_tensor_digests(tmp_path: Path) -> None:
    f = tmp_path / "a.png"
    f.write_bytes(b"12345")
    first = files_digest([f])
    f.write_bytes(b"123456")  # size changes
    assert files_digest([f]) != first
    x = torch.arange(6.0)
    assert tensor_digest(x) == tensor_digest(x.clone())
    assert tensor_digest(x) != tensor_digest(x + 1)
    assert tensor_digest(x) != tensor_digest(x.view(2, 3))


def test_block_is_json_and_comparisons_name_the_option() -> None:
    net = _net(0)
    block = provenance(
        technique="render",
        model_name="tiny",
        weights="random",
        module=net,
        options={"steps": 8, "size": (64, 64), "path": Path("x")},
        seed=3,
        device=torch.device("cpu"),
        dtype=torch.float32,
        command=["/usr/bin/vizcnn", "render", "-o", "out dir"],
    )
    again = json.loads(json.dumps(block))
    assert again["options"] == {"steps": 8, "size": [64, 64], "path": "x"}
    assert again["command"] == "vizcnn render -o 'out dir'"
    assert again["dtype"] == "float32" and again["weights_digest"] == weights_digest(net)
    assert differing_options(again, block) == []
    changed = provenance(
        technique="render", model_name="tiny", weights="random", module=net,
        options={"steps": 9, "size": (64, 64), "path": Path("x")}, seed=4,
        device="cpu", dtype=torch.float32,
    )  # fmt: skip
    assert differing_options(again, changed) == ["seed", "options.steps"]
    assert "technique" in differing_options({}, block)  # an old file without a block is stale
