"""CUDA smoke test: surgery, retraining and evaluation on the GPU agree with the CPU."""

from __future__ import annotations

import pytest
import torch
from test_ablation_eval import identity, mlp, toy_data

from vizcnn.ablation.evaluate import evaluate
from vizcnn.ablation.surgery import ablate
from vizcnn.ablation.training import TrainConfig, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_cuda_equals_cpu() -> None:
    data = toy_data(32, seed=5)
    data.labels[data.labels < 0] = 2
    config = TrainConfig(retrain="head", epochs=2, batch_size=8)
    results = {}
    for device in ("cpu", "cuda"):
        net = mlp().to(device)
        cut = ablate(net, ["2", "3"], example=data.images[:2].to(device), seed=1)
        assert all(p.device.type == device for p in cut.module.parameters())
        train(cut, data, identity, config, seed=1, device=device)
        scores = evaluate(
            {"net": net, "cut": cut.module}, data, identity, reference="net", device=device
        )
        results[device] = (scores, {k: v.cpu() for k, v in cut.module.state_dict().items()})
    for key, value in results["cpu"][1].items():
        torch.testing.assert_close(results["cuda"][1][key], value, rtol=1e-4, atol=1e-5)
    for name in ("net", "cut"):
        assert results["cuda"][0][name].top1 == results["cpu"][0][name].top1
        assert results["cuda"][0][name].agree_top1 == results["cpu"][0][name].agree_top1
