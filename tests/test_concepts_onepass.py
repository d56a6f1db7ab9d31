"""The concepts' sample of positions from the report's one data pass (`data_pass`): the same
sample `find_concepts` takes, whatever the batch size, order or ranks, and patches from it
equal to `concept_patches` when every position is sampled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from gloo_helpers import free_port, join_cpu_group
from test_concepts import concept_model, images
from test_mine_layers import CONFIGS, dataset

from mine_helpers import loaded_tiny
from vizcnn.concepts import (
    concept_coefficients,
    concept_patches,
    concepts_from_sample,
    find_concepts,
    sampled_concept_patches,
)
from vizcnn.core.distributed import shutdown
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.hooks import forward_to
from vizcnn.mining.layers import data_pass, mine_layers
from vizcnn.mining.reservoir import PositionReservoir, SampleConfig, position_keys

RUN = RunOptions(batch=4)
SAMPLES = [SampleConfig("act2", cap=300, seed=5), SampleConfig("act3", cap=10_000, seed=2)]


def brute_rows(layer: str, where: torch.Tensor) -> torch.Tensor:
    """The activations at `where` (image id, y, x), 4 images a forward as the pass runs them (a
    batch's convolution may round differently from one image's)."""
    loaded = loaded_tiny()
    maps = torch.cat(
        [
            forward_to(loaded.module, loaded.normalize(part), [layer])[layer]
            for part in dataset().images.split(4)
        ]
    )
    return maps[where[:, 0], :, where[:, 1], where[:, 2]]


ROUNDING = {"rtol": 1e-3, "atol": 1e-4}  # another batch size rounds a convolution otherwise


def test_reservoir_keeps_the_cap_smallest_keys_whatever_the_chunks() -> None:
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(30, 4, 5, 6, generator=g)
    ids = torch.arange(100, 130)
    keys = position_keys(7, ids, 5 * 6)  # brute force: every key, the 50 smallest
    smallest = torch.topk(keys.flatten(), 50, largest=False).indices
    b, rest = smallest // 30, smallest % 30
    wanted = sorted(zip((ids[b]).tolist(), (rest // 6).tolist(), (rest % 6).tolist(), strict=True))
    for chunks in ([30], [1] * 30, [7, 3, 20], [13, 17]):
        order = torch.randperm(30, generator=g)  # any order of the images
        reservoir = PositionReservoir(50, 7)
        start = 0
        for size in chunks:
            part = order[start : start + size]
            reservoir.add(acts[part], ids[part])
            start += size
        sample = reservoir.sample("x")
        assert [tuple(p) for p in sample.positions.tolist()] == wanted
        assert reservoir.rows is not None and reservoir.rows.shape[0] == 2 * 50  # fixed buffer
        assert sample.positions_seen == 30 * 30 and sample.map_size == (5, 6)
        where = sample.positions
        torch.testing.assert_close(
            sample.rows, acts[where[:, 0] - 100, :, where[:, 1], where[:, 2]], rtol=0, atol=0
        )


def test_data_pass_samples_what_find_concepts_samples() -> None:
    found = data_pass(loaded_tiny(), dataset(), CONFIGS[:1], SAMPLES, run=RUN)
    assert list(found.samples) == ["act2", "act3"]
    for config in SAMPLES:
        sample = found.samples[str(config.layer)]
        alone = find_concepts(
            loaded_tiny(), dataset(), config.layer, 3, max_positions=config.cap,
            seed=config.seed, run=RUN,
        )  # fmt: skip
        torch.testing.assert_close(sample.positions, alone.positions, rtol=0, atol=0)
        assert sample.positions_seen == alone.positions_seen and sample.image_ids == list(range(23))
        torch.testing.assert_close(sample.rows, brute_rows(config.layer, sample.positions))
        ours = concepts_from_sample(loaded_tiny(), sample, 3, names=dataset().names)
        torch.testing.assert_close(ours.W, alone.W)
        assert ours.reconstruction_error == pytest.approx(alone.reconstruction_error, rel=1e-6)
        assert ours.image_names == alone.image_names
    assert found.samples["act2"].sampled == 300 < found.samples["act2"].positions_seen
    assert found.samples["act3"].complete  # 23 images x 8 x 8 < the cap


def test_sample_does_not_depend_on_the_batch_size() -> None:
    one = data_pass(loaded_tiny(), dataset(), [], SAMPLES, run=RUN).samples
    for batch in (1, 7, 23):
        other = data_pass(loaded_tiny(), dataset(), [], SAMPLES, run=RunOptions(batch=batch))
        for name, sample in one.items():
            got = other.samples[name]
            torch.testing.assert_close(got.positions, sample.positions, rtol=0, atol=0)
            torch.testing.assert_close(got.rows, sample.rows, **ROUNDING)
            assert got.positions_seen == sample.positions_seen


def test_samples_leave_the_mined_layers_unchanged() -> None:
    alone = mine_layers(loaded_tiny(), dataset(), CONFIGS, bins=16, run=RUN)
    mined_too = SampleConfig("act1", cap=500, seed=3)  # a layer both mined and sampled
    found = data_pass(loaded_tiny(), dataset(), CONFIGS, [*SAMPLES, mined_too], bins=16, run=RUN)
    both = found.mined
    own = find_concepts(loaded_tiny(), dataset(), "act1", 2, max_positions=500, seed=3, run=RUN)
    torch.testing.assert_close(found.samples["act1"].positions, own.positions, rtol=0, atol=0)
    for name, one in alone.items():
        got = both[name]
        for a, b in (
            (got.top.image_ids, one.top.image_ids),
            (got.top.positions, one.top.positions),
            (got.top.values, one.top.values),
            (got.counts, one.counts),
            (got.edges, one.edges),
            (got.means, one.means),
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def test_sampled_patches_equal_concept_patches_when_every_position_is_sampled() -> None:
    loaded, _ = concept_model()
    data = TensorImages(images(12))
    sample = data_pass(loaded, data, [], [SampleConfig("act", cap=12 * 64)]).samples["act"]
    assert sample.complete
    concepts = concepts_from_sample(loaded, sample, 3)
    ours = sampled_concept_patches(loaded, concepts, sample, data, n=4, thumbnail_size=16)
    theirs = concept_patches(loaded, concepts, data, n=4, thumbnail_size=16)
    assert set(ours.patches) == set(theirs.patches) == {0, 1, 2}
    for concept, wanted in theirs.patches.items():
        got = ours.patches[concept]
        assert [(p.image_id, p.position, p.box) for p in got] == [
            (p.image_id, p.position, p.box) for p in wanted
        ]
        torch.testing.assert_close(
            torch.tensor([p.value for p in got]), torch.tensor([p.value for p in wanted])
        )
        for a, b in zip(got, wanted, strict=True):
            torch.testing.assert_close(a.patch, b.patch, rtol=0, atol=0)


def test_sampled_patches_are_the_best_sampled_positions() -> None:
    loaded, _ = concept_model()
    data = TensorImages(images(12))
    sample = data_pass(loaded, data, [], [SampleConfig("act", cap=200, seed=1)]).samples["act"]
    assert not sample.complete
    concepts = concepts_from_sample(loaded, sample, 3)
    found = sampled_concept_patches(loaded, concepts, sample, data, n=3, thumbnail_size=16)
    # brute force: every position's NNLS coefficient, restricted to the sampled ones
    U = concept_coefficients(loaded, concepts, data.images)
    where = sample.positions
    values = U[where[:, 0], :, where[:, 1], where[:, 2]]  # (n, k)
    sampled = {tuple(p) for p in where.tolist()}
    for concept in range(3):
        best: dict[int, float] = {}
        for (image, _y, _x), value in zip(where.tolist(), values[:, concept].tolist(), strict=True):
            best[image] = max(best.get(image, -1.0), value)
        wanted = sorted(best.values(), reverse=True)[:3]
        hits = found.patches[concept]
        assert [h.value for h in hits] == pytest.approx(wanted, rel=1e-4, abs=1e-6)
        assert len({h.image_id for h in hits}) == 3
        assert all((h.image_id, *h.position) in sampled for h in hits)


def test_a_negative_layer_is_refused_in_one_line() -> None:
    with pytest.raises(VizError, match="negative activations") as refused:
        data_pass(loaded_tiny(), dataset(), CONFIGS, [SampleConfig("conv2")], run=RUN)
    assert "act2" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(VizError, match="at least one"):
        data_pass(loaded_tiny(), dataset(), [], [])
    with pytest.raises(VizError, match="max_positions must be at least 1"):
        SampleConfig("act2", cap=0)
    with pytest.raises(VizError, match="twice"):
        data_pass(loaded_tiny(), dataset(), [], [SampleConfig("act2"), SampleConfig("act2")])
    loaded, _ = concept_model()
    sample = data_pass(loaded, TensorImages(images(3)), [], [SampleConfig("act")]).samples["act"]
    other = concepts_from_sample(loaded, sample, 2)
    other.positions = other.positions[1:]
    with pytest.raises(VizError, match="not the one the concepts"):
        sampled_concept_patches(loaded, other, sample, TensorImages(images(3)))
    with pytest.raises(VizError, match="the data has 2 images; give the data the sample"):
        sampled_concept_patches(
            loaded, concepts_from_sample(loaded, sample, 2), sample, TensorImages(images(2))
        )


def worker(rank: int, world: int, port: int, out: str) -> None:
    join_cpu_group(rank, world, port)
    try:
        # rank 2 of 3 gets images 2, 5, ...: uneven shares, merged exactly
        found = data_pass(loaded_tiny(), dataset(), CONFIGS[:1], SAMPLES, run=RUN)
        torch.save(
            {
                name: {
                    "rows": s.rows,
                    "positions": s.positions,
                    "seen": s.positions_seen,
                    "ids": s.image_ids,
                    "size": s.map_size,
                }
                for name, s in found.samples.items()
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        shutdown()


def test_gloo_ranks_sample_what_one_rank_samples(tmp_path: Path) -> None:
    mp.spawn(worker, args=(3, free_port(), str(tmp_path)), nprocs=3, join=True)
    single = data_pass(loaded_tiny(), dataset(), CONFIGS[:1], SAMPLES, run=RUN).samples
    for rank in range(3):
        merged = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, one in single.items():
            got = merged[name]
            torch.testing.assert_close(got["positions"], one.positions, rtol=0, atol=0)
            torch.testing.assert_close(got["rows"], one.rows, **ROUNDING)
            assert got["seen"] == one.positions_seen and got["ids"] == one.image_ids
            assert tuple(got["size"]) == one.map_size
