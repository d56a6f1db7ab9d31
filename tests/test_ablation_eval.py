"""Evaluation counts against a brute-force loop; seeded retraining; equal budgets; refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.ablation.data import TensorData
from vizcnn.ablation.evaluate import Scores, batch_scores, evaluate
from vizcnn.ablation.experiment import plan, run_ablation
from vizcnn.ablation.surgery import ablate
from vizcnn.ablation.training import TrainConfig, train, trainable_names
from vizcnn.ablation.variants import Variant
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions


def _weight(network: Any, index: int) -> torch.Tensor:
    """The weight of layer `index` of an `mlp` (or of an ablated one's module)."""
    layer = getattr(network, "module", network)[index]
    assert isinstance(layer.weight, torch.Tensor)
    return layer.weight


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),  # 0
        nn.ReLU(),  # 1
        nn.Conv2d(3, 5, 3, padding=1),  # 2: channel change
        nn.ReLU(),  # 3
        nn.AdaptiveAvgPool2d(2),  # 4
        nn.Flatten(),  # 5
        nn.Linear(20, 16),  # 6
        nn.ReLU(),  # 7
        nn.Linear(16, 7),  # 8
    )


def toy_data(n: int = 37, seed: int = 0) -> TensorData:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 6, 6, generator=generator)
    labels = torch.randint(0, 7, (n,), generator=generator)
    labels[::5] = -1  # some images without a label
    return TensorData(images, labels)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def brute_force(net: nn.Module, ref: nn.Module, data: TensorData) -> Scores:
    """One image at a time, float64, sets and loops instead of tensor ops."""
    net, ref = net.double(), ref.double()
    s = Scores()
    for i in range(len(data)):
        image, label = data[i]
        with torch.no_grad():
            out = net(image[None].double())[0]
            base = ref(image[None].double())[0]
        order = sorted(range(7), key=lambda k: -float(out[k]))
        ref_order = sorted(range(7), key=lambda k: -float(base[k]))
        s.images += 1
        if label >= 0:
            s.labelled += 1
            s.top1 += order[0] == label
            s.top5 += label in order[:5]
        s.agree_top1 += order[0] == ref_order[0]
        s.overlap_top5 += len(set(order[:5]) & set(ref_order[:5]))
        p = [float(v) for v in F.softmax(base, 0)]
        q = [float(v) for v in F.softmax(out, 0)]
        if max(p) >= 0.5:
            s.confident += 1
            s.agree_confident += order[0] == ref_order[0]
        s.kl_sum += sum(
            pi * (torch.tensor(pi).log() - torch.tensor(qi).log()).item()
            for pi, qi in zip(p, q, strict=True)
        )
    return s


def test_evaluate_equals_brute_force() -> None:
    data = toy_data()
    a, b = mlp(0), mlp(1)
    got = evaluate({"a": a, "b": b}, data, identity, reference="a", run=RunOptions(batch=8))
    want = brute_force(mlp(1), mlp(0), data)
    keys = ("images", "labelled", "top1", "top5", "agree_top1", "overlap_top5", "confident")
    for key in (*keys, "agree_confident"):
        assert getattr(got["b"], key) == getattr(want, key), key
    assert got["b"].kl_sum == pytest.approx(want.kl_sum, rel=1e-5)
    assert got["a"].agree_top1 == len(data) and got["a"].kl_sum == pytest.approx(0.0, abs=1e-9)
    assert got["b"].top1_accuracy == want.top1 / want.labelled


def test_batch_scores_merge_exactly() -> None:
    torch.manual_seed(3)
    logits, ref = torch.randn(20, 7), torch.randn(20, 7)
    labels = torch.randint(0, 7, (20,))
    whole = batch_scores(logits, labels, ref)
    parts = batch_scores(logits[::2], labels[::2], ref[::2]) + batch_scores(
        logits[1::2], labels[1::2], ref[1::2]
    )
    assert (whole.top1, whole.top5, whole.agree_top1, whole.overlap_top5) == (
        parts.top1, parts.top5, parts.agree_top1, parts.overlap_top5,
    )  # fmt: skip
    assert whole.kl_sum == pytest.approx(parts.kl_sum)


def test_evaluate_leaves_model_as_found() -> None:
    net = mlp().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    evaluate({"n": net}, toy_data(), identity)
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_seeded_training_is_deterministic() -> None:
    data = toy_data(32)
    data.labels[data.labels < 0] = 0
    config = TrainConfig(retrain="all", epochs=2, batch_size=8, from_scratch=True)
    weights = []
    # an int seed, and a generator seeded with it (the seed convention of every technique)
    for seed in (4, torch.Generator().manual_seed(4)):
        cut = ablate(mlp(), ["6", "7"], example=data.images[:2], seed=4)
        state = torch.get_rng_state()
        train(cut, data, identity, config, seed=seed)
        assert torch.equal(torch.get_rng_state(), state)  # torch's global RNG is not read
        weights.append([p.clone() for p in cut.module.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
    other = ablate(mlp(), ["6", "7"], example=data.images[:2], seed=4)
    train(other, data, identity, config, seed=5)
    assert not torch.equal(_weight(other, 8), weights[0][-2])


def test_head_training_updates_only_new_layers_and_head() -> None:
    data = toy_data(32)
    data.labels[data.labels < 0] = 1
    net = mlp()
    cut = ablate(net, ["2", "3"], example=data.images[:2])  # conv 3->5 -> 1x1 adapter
    assert set(trainable_names(cut, "head")) == {
        "2.adapter.weight",
        "2.adapter.bias",
        "8.weight",
        "8.bias",
    }
    frozen = _weight(cut, 6).clone()
    head = _weight(cut, 8).clone()
    losses = train(cut, data, identity, TrainConfig(retrain="head", epochs=1, batch_size=8))
    assert len(losses) == 4  # equal budget: ceil(32 / 8) steps per epoch
    assert torch.equal(_weight(cut, 6), frozen)
    assert not torch.equal(_weight(cut, 8), head)
    assert torch.equal(_weight(net, 8), head)  # the user's network never trains


def test_retrain_none_refused_where_an_adapter_is_needed() -> None:
    data = toy_data()
    variants = [Variant("ok", ("1",)), Variant("needs", ("2", "3"))]
    with pytest.raises(VizError, match="variant 'needs' needs training"):
        plan(mlp(), variants, TrainConfig(retrain="none"), example=data.images[:2])
    with pytest.raises(VizError, match="variant 'bad'.*unknown layer"):
        plan(mlp(), [Variant("bad", ("9x",))], TrainConfig(), example=data.images[:2])


def test_run_without_retraining_matches_hand_built_network() -> None:
    data = toy_data()
    net = mlp().eval()
    result = run_ablation(net, [Variant("no-relu", ("1",))], data, TrainConfig(retrain="none"),
                          run=RunOptions(batch=5), planned=plan(net, [Variant("no-relu", ("1",))], TrainConfig(retrain="none"), example=data.images[:2]))  # fmt: skip
    assert [r.name for r in result.rows] == ["original", "no-relu"]
    by_hand = nn.Sequential(*[m for i, m in enumerate(net) if i != 1])
    want = brute_force(by_hand, mlp(), data)
    row = result.row("no-relu")
    assert (row.scores.top1, row.scores.top5, row.scores.agree_top1) == (
        want.top1,
        want.top5,
        want.agree_top1,
    )
    assert row.params_removed == 0 and not row.adapter


def test_train_config_validation() -> None:
    with pytest.raises(VizError, match="TrainConfig.retrain"):
        TrainConfig(retrain="some")
    with pytest.raises(VizError, match="TrainConfig.from_scratch"):
        TrainConfig(retrain="head", from_scratch=True)
    with pytest.raises(VizError, match="TrainConfig.lr"):
        TrainConfig(lr=0.0)


def test_image_folder_labels_follow_sorted_class_folders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vizcnn.ablation.data import ImageFolderData, UnlabelledData, open_labelled
    from vizcnn.io.imaging import save_png

    generator = torch.Generator().manual_seed(0)
    for cls, count in (("b_dog", 1), ("a_cat", 2)):
        for i in range(count):
            save_png(torch.rand(3, 12, 12, generator=generator), tmp_path / cls / f"{i}.png")
    data = open_labelled(tmp_path, 3, (8, 8))
    assert isinstance(data, ImageFolderData) and data.classes == ["a_cat", "b_dog"]
    assert [data[i][1] for i in range(3)] == [0, 0, 1]
    assert data[0][0].shape == (3, 8, 8)
    flat = open_labelled(tmp_path / "a_cat", 3, (8, 8))
    assert isinstance(flat, UnlabelledData) and flat[0][1] == -1
