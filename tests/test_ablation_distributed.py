"""Two gloo processes: sharded evaluation merges to exactly the single-process counts, and DDP
retraining (each rank half of every batch) matches one process training on whole batches."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from gloo_helpers import free_port, join_cpu_group
from test_ablation_eval import identity, mlp, toy_data

from vizcnn.ablation.evaluate import evaluate
from vizcnn.ablation.surgery import ablate
from vizcnn.ablation.training import TrainConfig, train
from vizcnn.core.distributed import shutdown
from vizcnn.core.run_options import RunOptions

CONFIG = TrainConfig(retrain="all", epochs=2, batch_size=8)
SEED = 3


def train_data():  # type: ignore[no-untyped-def]
    data = toy_data(35, seed=5)  # the last batch (3 images) splits 2 / 1 over the two ranks
    data.labels[data.labels < 0] = 2
    return data


def worker(rank: int, world: int, port: int, out: str) -> None:
    join_cpu_group(rank, world, port)
    try:
        scores = evaluate(
            {"a": mlp(0), "b": mlp(1)}, toy_data(), identity, reference="a", run=RunOptions(batch=4)
        )
        data = train_data()
        cut = ablate(mlp(), ["6", "7"], example=data.images[:2], seed=3)
        train(cut, data, identity, CONFIG, seed=SEED)
        torch.save(
            {"scores": {k: asdict(v) for k, v in scores.items()}, "state": cut.module.state_dict()},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        shutdown()


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tmp_path: Path) -> None:
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = evaluate(
        {"a": mlp(0), "b": mlp(1)}, toy_data(), identity, reference="a", run=RunOptions(batch=4)
    )
    data = train_data()
    cut = ablate(mlp(), ["6", "7"], example=data.images[:2], seed=3)
    train(cut, data, identity, CONFIG, seed=SEED)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in ("a", "b"):
            want = asdict(single[name])
            kl = want.pop("kl_sum")
            assert got["scores"][name].pop("kl_sum") == pytest.approx(kl, rel=1e-9, abs=1e-12)
            assert got["scores"][name] == want  # counts: exact
        for key, value in cut.module.state_dict().items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-5, atol=1e-6)


def test_too_few_images_for_the_ranks_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from vizcnn.ablation import training
    from vizcnn.core.distributed import Shard
    from vizcnn.core.errors import VizError

    monkeypatch.setattr(training, "current_shard", lambda: Shard(rank=0, world_size=4))
    data = train_data()
    small = type(data)(data.images[:3], data.labels[:3])
    cut = ablate(mlp(), ["6", "7"], example=data.images[:2], seed=3)
    with pytest.raises(VizError, match="3 training images cannot be shared by 4 processes"):
        train(cut, small, identity, CONFIG, seed=SEED)
