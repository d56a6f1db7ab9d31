"""`mine_layers`: every layer in one pass equals `mine_topk` per layer, with numpy's histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from gloo_helpers import free_port, join_cpu_group

from mine_helpers import loaded_tiny, random_images
from vizcnn.core.distributed import shutdown
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.hooks import forward_to
from vizcnn.mining.layers import mine_layers
from vizcnn.mining.streaming import MineConfig, mine_topk

CONFIGS = [
    MineConfig("act1", channels=(0, 3, 5), k=4),
    MineConfig("act2", k=5, rank="mean"),
    MineConfig("act3", channels=(2, 7, 11, 15), k=6),
]
RUN = RunOptions(batch=4)


def dataset() -> TensorImages:
    images = random_images(23, seed=4)
    images[7] = images[1]  # a duplicate: mining keeps it once per channel
    return TensorImages(images)


def brute_activations(layer: str, channels: tuple[int, ...] | None) -> torch.Tensor:
    """(C', N) float64: every image's every position, a batch of 4 at a time as mining runs
    (a batch's convolution may round differently from one image's)."""
    loaded = loaded_tiny()
    rows = []
    for images in dataset().images.split(4):
        out = forward_to(loaded.module, loaded.normalize(images), [layer], detach=True)[layer]
        rows.append(out.transpose(0, 1).flatten(1))
    acts = torch.cat(rows, 1).double()
    return acts if channels is None else acts[list(channels)]


def test_one_pass_equals_a_mine_per_layer_exactly() -> None:
    mined = mine_layers(loaded_tiny(), dataset(), CONFIGS, run=RUN)
    assert list(mined) == ["act1", "act2", "act3"]
    for config in CONFIGS:
        single = mine_topk(loaded_tiny(), dataset(), config, run=RUN)
        got = mined[str(config.layer)].top
        assert got.channels == single.channels and got.images_seen == single.images_seen == 23
        torch.testing.assert_close(got.image_ids, single.image_ids, rtol=0, atol=0)
        torch.testing.assert_close(got.positions, single.positions, rtol=0, atol=0)
        torch.testing.assert_close(got.values, single.values, rtol=0, atol=0, equal_nan=True)


def test_histograms_equal_numpys_and_means_the_float64_mean() -> None:
    mined = mine_layers(loaded_tiny(), dataset(), CONFIGS, bins=16, run=RUN)
    for config in CONFIGS:
        layer = mined[str(config.layer)]
        acts = brute_activations(str(config.layer), config.channels)
        assert layer.counts.shape == (len(layer.channels), 16)
        for row in range(len(layer.channels)):
            values = acts[row].numpy()
            counts, _ = np.histogram(values, bins=layer.edges[row].numpy())
            np.testing.assert_array_equal(layer.counts[row].numpy(), counts)
            assert int(layer.counts[row].sum()) == values.size  # nothing fell outside
        torch.testing.assert_close(layer.means, acts.mean(1), rtol=1e-12, atol=1e-12)


def test_one_forward_per_batch_cut_at_the_deepest_layer() -> None:
    loaded = loaded_tiny()
    sizes: dict[str, list[int]] = {"conv1": [], "head": []}

    def counter(name: str):  # type: ignore[no-untyped-def]
        return lambda module, inputs, output: sizes[name].append(int(inputs[0].shape[0]))

    hooks = [getattr(loaded.module, n).register_forward_hook(counter(n)) for n in sizes]
    try:
        mine_layers(loaded, dataset(), CONFIGS, run=RUN)
    finally:
        for hook in hooks:
            hook.remove()
    # preflight's one probe image, then one forward per batch for all three layers; never
    # past act3 (the head never runs)
    assert sizes == {"conv1": [1, 4, 4, 4, 4, 4, 3], "head": []}


def test_samples_ride_the_same_forward_per_batch() -> None:
    from vizcnn.mining.layers import data_pass
    from vizcnn.mining.reservoir import SampleConfig

    loaded = loaded_tiny()
    sizes: dict[str, list[int]] = {"conv1": [], "conv3": [], "head": []}

    def counter(name: str):  # type: ignore[no-untyped-def]
        return lambda module, inputs, output: sizes[name].append(int(inputs[0].shape[0]))

    hooks = [getattr(loaded.module, n).register_forward_hook(counter(n)) for n in sizes]
    try:
        # one mined layer, one sampled deeper: still one forward per batch, cut at act3
        found = data_pass(loaded, dataset(), CONFIGS[:1], [SampleConfig("act3", cap=50)], run=RUN)
    finally:
        for hook in hooks:
            hook.remove()
    assert found.samples["act3"].sampled == 50 and list(found.mined) == ["act1"]
    batches = [1, 4, 4, 4, 4, 4, 3]  # preflight's probe image, then the six batches
    assert sizes == {"conv1": batches, "conv3": batches, "head": []}


def test_bad_input_is_one_line() -> None:
    with pytest.raises(VizError, match="at least one"):
        mine_layers(loaded_tiny(), dataset(), [])
    with pytest.raises(VizError, match="twice"):
        mine_layers(loaded_tiny(), dataset(), [MineConfig("act1"), MineConfig("act1")])
    with pytest.raises(VizError, match="bins"):
        mine_layers(loaded_tiny(), dataset(), CONFIGS, bins=1)


def worker(rank: int, world: int, port: int, out: str) -> None:
    join_cpu_group(rank, world, port)
    try:
        mined = mine_layers(loaded_tiny(), dataset(), CONFIGS, bins=16, run=RUN)
        torch.save(
            {
                name: {
                    "ids": m.top.image_ids,
                    "values": m.top.values,
                    "counts": m.counts,
                    "edges": m.edges,
                    "means": m.means,
                }
                for name, m in mined.items()
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        shutdown()


def test_two_gloo_ranks_merge_to_one_rank(tmp_path: Path) -> None:
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = mine_layers(loaded_tiny(), dataset(), CONFIGS, bins=16, run=RUN)
    for rank in range(2):
        merged = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, one in single.items():
            got = merged[name]
            torch.testing.assert_close(got["ids"], one.top.image_ids, rtol=0, atol=0)
            torch.testing.assert_close(
                got["values"], one.top.values, rtol=0, atol=0, equal_nan=True
            )
            torch.testing.assert_close(got["counts"], one.counts, rtol=0, atol=0)
            torch.testing.assert_close(got["edges"], one.edges, rtol=0, atol=0)
            torch.testing.assert_close(got["means"], one.means, rtol=1e-12, atol=1e-12)


def test_unreadable_files_are_skipped_alike(tmp_path: Path) -> None:
    from mine_helpers import write_pngs
    from vizcnn.data.datasets import open_dataset

    paths = write_pngs(tmp_path / "data", random_images(9, seed=6))
    paths[4].write_bytes(b"not a png")  # one unreadable file in the middle of a batch
    data = open_dataset(tmp_path / "data", 3, (32, 32))
    mined = mine_layers(loaded_tiny(), data, CONFIGS, run=RUN)
    for config in CONFIGS:
        single = mine_topk(loaded_tiny(), data, config, run=RUN)
        got = mined[str(config.layer)]
        assert got.top.skipped == single.skipped and len(single.skipped) == 1
        assert got.top.images_seen == single.images_seen == 8
        torch.testing.assert_close(got.top.image_ids, single.image_ids, rtol=0, atol=0)
        assert int(got.counts[0].sum()) == 8 * single.layer_shape[1] * single.layer_shape[2]
