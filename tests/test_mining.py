"""Streaming top-k mining against brute-force oracles: ranking, ties, duplicates, resume."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import assert_same_state, model_state
from mine_helpers import loaded_tiny, random_images
from vizcnn.core.errors import VizError
from vizcnn.core.progress import no_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages, content_hashes
from vizcnn.hooks import forward_to
from vizcnn.mining.streaming import MineConfig, mine_topk, parse_channels
from vizcnn.mining.topk import RunningTopK, TopK, decode, encode


def oracle(loaded, images: torch.Tensor, layer: str, k: int, rank: str, channels=None):
    """Whole activation tensor at once; per channel sort by (value desc, id asc)."""
    acts = forward_to(loaded.module, loaded.normalize(images), [layer])[layer]
    if channels is not None:
        acts = acts[:, list(channels)]
    flat = acts.flatten(2)
    peak, where = flat.max(2)
    scores = flat.mean(2) if rank == "mean" else peak
    width = acts.shape[3]
    result = []
    for c in range(acts.shape[1]):
        order = sorted(range(len(images)), key=lambda i: (-float(scores[i, c]), i))[:k]
        result.append(
            [
                (float(scores[i, c]), i, int(where[i, c]) // width, int(where[i, c]) % width)
                for i in order
            ]
        )
    return result


def assert_matches(top: TopK, expected) -> None:
    for row, hits in enumerate(expected):
        got = top.hits(row)
        assert [h[1:] for h in got] == [h[1:] for h in hits], f"row {row}"
        torch.testing.assert_close(
            torch.tensor([h[0] for h in got]), torch.tensor([h[0] for h in hits])
        )


@pytest.mark.parametrize("rank", ["max", "mean"])
@pytest.mark.parametrize("layer", ["conv2", "act3"])
def test_topk_equals_brute_force_oracle(rank: str, layer: str) -> None:
    loaded = loaded_tiny()
    images = random_images(37, seed=3)
    config = MineConfig(layer=layer, k=5, rank=rank)
    top = mine_topk(loaded, TensorImages(images), config, run=RunOptions(batch=8))
    assert top.images_seen == 37
    assert top.values.shape == (len(top.channels), 5)
    assert_matches(top, oracle(loaded, images, layer, 5, rank))


def test_channel_subset_and_batch_size_do_not_change_the_answer() -> None:
    loaded = loaded_tiny()
    images = random_images(21, seed=4)
    channels = (3, 0, 11)
    one = mine_topk(
        loaded, TensorImages(images), MineConfig("conv3", channels, k=4), run=RunOptions(batch=1)
    )
    big = mine_topk(
        loaded, TensorImages(images), MineConfig("conv3", channels, k=4), run=RunOptions(batch=64)
    )
    assert one.channels == channels
    assert_matches(one, oracle(loaded, images, "conv3", 4, "max", channels))
    torch.testing.assert_close(one.image_ids, big.image_ids, rtol=0, atol=0)


def test_fewer_images_than_k_leave_empty_slots() -> None:
    loaded = loaded_tiny()
    top = mine_topk(loaded, TensorImages(random_images(3)), MineConfig("conv3", (0, 1), k=9))
    assert [len(top.hits(row)) for row in range(2)] == [3, 3]
    assert (top.image_ids[:, 3:] == -1).all() and torch.isnan(top.values[:, 3:]).all()
    assert sorted(h[1] for h in top.hits(0)) == [0, 1, 2]  # each image at most once


def test_keys_rank_by_value_then_lower_id_exactly() -> None:
    values = torch.tensor([1.5, -0.0, 0.0, -2.0, 1.5, float("inf"), -3e-38, 7.0])
    ids = torch.tensor([9, 4, 3, 0, 2, 8, 6, 1])
    keys = encode(values, ids)
    order = keys.argsort(descending=True)
    expected = sorted(range(8), key=lambda i: (-float(values[i]), int(ids[i])))
    assert order.tolist() == expected
    decoded, decoded_ids = decode(keys)
    torch.testing.assert_close(decoded, values + 0.0, rtol=0, atol=0)
    assert decoded_ids.tolist() == ids.tolist()


def test_running_topk_is_independent_of_order_and_batching() -> None:
    generator = torch.Generator().manual_seed(0)
    count, channels = 50, 6
    values = torch.randint(0, 5, (count, channels), generator=generator).float()  # many ties
    positions = torch.randint(0, 20, (count, channels), generator=generator)
    hashes = torch.arange(1, count + 1)
    results = []
    for seed, batch in ((1, 7), (2, 1), (3, 50)):
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        top = RunningTopK.empty(channels, 4)
        for start in range(0, count, batch):
            ids = order[start : start + batch]
            top.update(
                values[ids],
                positions[ids],
                ids,
                hashes[ids],
                torch.ones(len(ids), dtype=torch.bool),
            )
        results.append(top)
    for other in results[1:]:
        torch.testing.assert_close(other.keys, results[0].keys, rtol=0, atol=0)
        torch.testing.assert_close(other.positions, results[0].positions, rtol=0, atol=0)
    got_values, got_ids = decode(results[0].keys)
    for c in range(channels):  # oracle: sort by (value desc, id asc)
        expected = sorted(range(count), key=lambda i: (-float(values[i, c]), i))[:4]
        assert got_ids[c].tolist() == expected


def test_duplicate_content_fills_a_channel_once() -> None:
    loaded = loaded_tiny()
    base = random_images(6, seed=5)
    # images 0, 3 and 7 are the same picture; so are 1 and 6 (also within one batch)
    images = torch.stack(
        [base[0], base[1], base[2], base[0], base[3], base[4], base[1], base[0], base[5]]
    )
    hashes = content_hashes(images).tolist()
    top = mine_topk(loaded, TensorImages(images), MineConfig("conv3", k=9), run=RunOptions(batch=4))
    unique = [0, 1, 2, 4, 5, 8]  # first occurrences: the oracle mines distinct content only
    expected = oracle(loaded, images[unique], "conv3", 9, "max")
    for row in range(len(top.channels)):
        got = top.hits(row)
        assert len({hashes[h[1]] for h in got}) == len(got) == 6
        assert [h[1] for h in got] == [unique[h[1]] for h in expected[row]]


def test_unreadable_items_are_skipped_and_listed() -> None:
    loaded = loaded_tiny()
    images = random_images(10, seed=6)

    class Flaky(TensorImages):
        def load(self, index: int) -> torch.Tensor:
            if index in (2, 7):
                raise OSError("image file is truncated")
            return super().load(index)

    top = mine_topk(loaded, Flaky(images), MineConfig("conv3", k=3), run=RunOptions(batch=4))
    assert top.images_seen == 8
    assert [name for name, _ in top.skipped] == ["tensor:2", "tensor:7"]
    assert all("truncated" in reason for _, reason in top.skipped)
    assert all(h[1] not in (2, 7) for row in range(16) for h in top.hits(row))
    keep = [i for i in range(10) if i not in (2, 7)]
    expected = oracle(loaded, images[keep], "conv3", 3, "max")
    assert [[keep[h[1]] for h in row] for row in expected] == [
        [h[1] for h in top.hits(r)] for r in range(16)
    ]


def test_all_unreadable_is_a_one_line_error() -> None:
    class Broken(TensorImages):
        def load(self, index: int) -> torch.Tensor:
            raise ValueError("not an image")

    with pytest.raises(VizError, match="no readable image among 4") as info:
        mine_topk(loaded_tiny(), Broken(random_images(4)), MineConfig("conv3"))
    assert "\n" not in str(info.value)


class Crash(Exception):
    pass


def crash_after(images: int):
    def progress(done: int, total: int, message: str) -> None:
        if done >= images:
            raise Crash

    return progress


def assert_same_result(got: TopK, want: TopK) -> None:
    for name in ("values", "image_ids", "positions"):
        torch.testing.assert_close(
            getattr(got, name), getattr(want, name), rtol=0, atol=0, equal_nan=True
        )
    assert got.images_seen == want.images_seen and got.skipped == want.skipped


@pytest.mark.parametrize(("every", "crash_at"), [(1, 16), (2, 24)])
def test_resume_after_crash_equals_uninterrupted_run(
    tmp_path: Path, every: int, crash_at: int
) -> None:
    loaded = loaded_tiny()
    data = TensorImages(random_images(45, seed=7))
    config = MineConfig("act3", k=4, checkpoint_every=every)
    full = mine_topk(loaded, data, config, run=RunOptions(batch=8))
    checkpoint = tmp_path / "state.pt"
    with pytest.raises(Crash):
        mine_topk(
            loaded,
            data,
            config,
            checkpoint=checkpoint,
            progress=crash_after(crash_at),
            run=RunOptions(batch=8),
        )
    assert checkpoint.is_file()
    seen: list[int] = []
    resumed = mine_topk(
        loaded, data, config, checkpoint=checkpoint, resume=True,
        progress=lambda done, total, message: seen.append(done), run=RunOptions(batch=8),
    )  # fmt: skip
    assert seen[0] == crash_at  # a failing run saves what it did before the exception
    assert resumed.resumed_from == crash_at and full.resumed_from == 0
    assert resumed.images_seen == full.images_seen == 45
    again = mine_topk(
        loaded, data, config, checkpoint=checkpoint, resume=True, run=RunOptions(batch=8)
    )  # nothing left
    assert again.resumed_from == 45
    for result in (resumed, again):
        assert_same_result(result, full)


class Interrupting(TensorImages):
    """Tensor images, two of them unreadable, that raise KeyboardInterrupt once at `stop_at`."""

    def __init__(self, images: torch.Tensor, stop_at: int | None) -> None:
        super().__init__(images)
        self.stop_at = stop_at

    def load(self, index: int) -> torch.Tensor:
        if index == self.stop_at:
            self.stop_at = None
            raise KeyboardInterrupt
        if index in (5, 18):
            raise OSError("truncated file")
        return super().load(index)


@pytest.mark.parametrize("where", ["progress", "loading", "forward"])
def test_interrupt_saves_state_and_resume_equals_uninterrupted_run(
    tmp_path: Path, where: str
) -> None:
    """Ctrl-C after a batch, while loading one, or inside the forward pass: saved at once
    (the batch interval is never reached) and resumed to the uninterrupted result."""
    loaded = loaded_tiny()
    images = random_images(45, seed=21)
    config = MineConfig("conv3", k=5, checkpoint_every=1000)
    full = mine_topk(loaded, Interrupting(images, None), config, run=RunOptions(batch=8))
    readable = [i for i in range(45) if i not in (5, 18)]
    expected = oracle(loaded, images[readable], "conv3", 5, "max")
    for row in expected:  # oracle ids index the readable images: map them back
        row[:] = [(v, readable[i], y, x) for v, i, y, x in row]
    assert_matches(full, expected)
    assert [name for name, _ in full.skipped] == ["tensor:5", "tensor:18"]

    checkpoint = tmp_path / "state.pt"
    data = Interrupting(images, 21 if where == "loading" else None)
    progress = no_progress
    hook = None
    if where == "progress":

        def progress(done: int, total: int, message: str) -> None:
            if done >= 24:
                raise KeyboardInterrupt

    elif where == "forward":
        calls = []

        def stop(module, args) -> None:
            calls.append(1)
            if len(calls) == 3:  # the batch of images 16-23, after its unreadable item 18
                raise KeyboardInterrupt

        hook = loaded.module.conv1.register_forward_pre_hook(stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            mine_topk(
                loaded,
                data,
                config,
                checkpoint=checkpoint,
                progress=progress,
                run=RunOptions(batch=8),
            )
    finally:
        if hook is not None:
            hook.remove()
    state = torch.load(checkpoint, weights_only=True)
    assert state["position"] == {"progress": 24, "loading": 16, "forward": 16}[where]
    assert [item[0] for item in state["skipped"]] == [5] + ([18] if where == "progress" else [])
    resumed = mine_topk(
        loaded, data, config, checkpoint=checkpoint, resume=True, run=RunOptions(batch=8)
    )
    assert resumed.resumed_from == state["position"]
    assert_same_result(resumed, full)


def test_checkpoints_by_time_as_well_as_by_batches(tmp_path: Path) -> None:
    loaded = loaded_tiny()
    data = TensorImages(random_images(40, seed=8))
    checkpoint = tmp_path / "state.pt"

    def watcher(found: list[int | None]):
        def progress(done: int, total: int, message: str) -> None:
            state = torch.load(checkpoint, weights_only=True) if checkpoint.is_file() else None
            found.append(None if state is None else state["position"])

        return progress

    often: list[int | None] = []
    config = MineConfig("conv2", k=3, checkpoint_every=1000, checkpoint_seconds=1e-9)
    mine_topk(
        loaded,
        data,
        config,
        checkpoint=checkpoint,
        progress=watcher(often),
        run=RunOptions(batch=8),
    )
    assert often == [None, 8, 16, 24, 32, 40]  # a tiny interval: saved after every batch
    checkpoint.unlink()
    rarely: list[int | None] = []
    config = MineConfig("conv2", k=3, checkpoint_every=1000, checkpoint_seconds=3600)
    mine_topk(
        loaded,
        data,
        config,
        checkpoint=checkpoint,
        progress=watcher(rarely),
        run=RunOptions(batch=8),
    )
    assert rarely == [None, None, None, None, None, 40]  # only the final save
    with pytest.raises(VizError, match="MineConfig.checkpoint_seconds"):
        MineConfig("conv2", checkpoint_seconds=float("inf"))
    with pytest.raises(VizError, match="MineConfig.checkpoint_seconds"):
        MineConfig("conv2", checkpoint_seconds=float("nan"))


def test_resume_refuses_another_runs_checkpoint_naming_each_difference(tmp_path: Path) -> None:
    images = random_images(10)
    base = MineConfig("conv3", channels=(0, 1), k=2)
    checkpoint = tmp_path / "state.pt"
    mine_topk(loaded_tiny(), TensorImages(images), base, checkpoint=checkpoint)
    changed_images = images.clone()
    changed_images[3] = 1 - changed_images[3]
    other_name = loaded_tiny()
    other_name.name = "another"
    cases = [
        (loaded_tiny(), images, replace(base, k=3), "MineConfig.k: 2 in the checkpoint, 3 now"),
        (
            loaded_tiny(),
            images,
            replace(base, rank="mean"),
            "MineConfig.rank: max in the checkpoint",
        ),
        (
            loaded_tiny(),
            images,
            replace(base, layer="act3"),
            "the layer (MineConfig.layer): conv3 in the",
        ),
        (
            loaded_tiny(),
            images,
            replace(base, channels=(0, 2)),
            "the channels (MineConfig.channels)",
        ),
        # same name, another random initialization (what weights='none' with another seed is)
        (loaded_tiny(seed=1), images, base, "the model's weights"),
        (
            other_name,
            images,
            base,
            "the model (LoadedModel.name): tiny_miner in the checkpoint, another now",
        ),
        (loaded_tiny(), changed_images, base, "the images' contents"),
        (loaded_tiny(), images[:9], base, "the list of images"),
    ]
    labels = (
        "MineConfig.k",
        ".rank",
        ".layer",
        ".channels",
        "weights",
        ".name",
        "contents",
        "list of",
    )
    for loaded, data, config, message in cases:
        with pytest.raises(VizError) as info:
            mine_topk(loaded, TensorImages(data), config, checkpoint=checkpoint, resume=True)
        text = str(info.value)
        assert (
            message in text and "overwrite=True instead of resume=True" in text and "\n" not in text
        )
        named = [label for label in labels if label in text]
        assert len(named) == 1 + (data is not images and len(data) != len(images)), text
    # the same settings resume (nothing left to do) to the same answer
    again = mine_topk(loaded_tiny(), TensorImages(images), base, checkpoint=checkpoint, resume=True)
    assert again.resumed_from == 10


def test_changed_image_files_are_noticed_on_resume(tmp_path: Path) -> None:
    from mine_helpers import write_pngs
    from vizcnn.data.datasets import open_dataset

    paths = write_pngs(tmp_path / "data", random_images(6, seed=4))
    loaded = loaded_tiny()
    checkpoint = tmp_path / "state.pt"
    config = MineConfig("conv3", k=2)
    mine_topk(loaded, open_dataset(tmp_path / "data", 3, (32, 32)), config, checkpoint=checkpoint)
    stat = paths[2].stat()
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # re-saved later
    with pytest.raises(VizError, match="the images' contents"):
        mine_topk(
            loaded, open_dataset(tmp_path / "data", 3, (32, 32)), config,
            checkpoint=checkpoint, resume=True,
        )  # fmt: skip


def test_unreadable_data_writes_no_checkpoint(tmp_path: Path) -> None:
    class Broken(TensorImages):
        def load(self, index: int) -> torch.Tensor:
            raise ValueError("not an image")

    checkpoint = tmp_path / "out" / "checkpoint" / "rank0-of-1.pt"
    with pytest.raises(VizError, match="no readable image"):
        mine_topk(
            loaded_tiny(), Broken(random_images(4)), MineConfig("conv3"), checkpoint=checkpoint
        )
    assert list(tmp_path.iterdir()) == []


def test_model_is_left_unchanged_and_bad_options_are_one_line_errors() -> None:
    loaded = loaded_tiny()
    before = model_state(loaded.module)
    mine_topk(
        loaded, TensorImages(random_images(5)), MineConfig("act2", k=2), run=RunOptions(batch=2)
    )
    assert_same_state(before, model_state(loaded.module))
    with pytest.raises(VizError, match="did you mean"):
        mine_topk(loaded, TensorImages(random_images(2)), MineConfig("conv9"))
    with pytest.raises(VizError, match="mining needs a"):
        mine_topk(loaded, TensorImages(random_images(2)), MineConfig("head"))
    with pytest.raises(VizError, match="MineConfig.k must be"):
        mine_topk(loaded, TensorImages(random_images(2)), MineConfig("conv3", k=0))
    assert_same_state(before, model_state(loaded.module))


def test_parse_channels() -> None:
    assert parse_channels("0:64", 40) == tuple(range(40))
    assert parse_channels("3,5,9", 40) == (3, 5, 9)
    assert parse_channels("::10", 40) == (0, 10, 20, 30)
    assert parse_channels(None, 3) == (0, 1, 2)
    for bad, message in (
        ("50", "out of range"),
        ("a:b", "bad channels"),
        ("30:20", "selects no"),
    ):
        with pytest.raises(VizError, match=message):
            parse_channels(bad, 40)


def test_worker_processes_give_the_same_result() -> None:
    loaded = loaded_tiny()
    data = TensorImages(random_images(19, seed=14))
    alone = mine_topk(loaded, data, MineConfig("conv3", k=3), run=RunOptions(batch=5, workers=0))
    shared = mine_topk(loaded, data, MineConfig("conv3", k=3), run=RunOptions(batch=5, workers=2))
    torch.testing.assert_close(shared.image_ids, alone.image_ids, rtol=0, atol=0)
    torch.testing.assert_close(shared.values, alone.values, rtol=0, atol=0)


def test_content_hashes_identify_identical_images_only() -> None:
    images = random_images(4, seed=15)
    images[2] = images[0]
    changed = images[0].clone()
    changed[1, 5, 7] = (changed[1, 5, 7] * 255 + (1 if changed[1, 5, 7] < 0.5 else -1)) / 255
    hashes = content_hashes(torch.cat([images, changed[None]]))
    assert hashes[0] == hashes[2] and len(set(hashes.tolist())) == 4  # one pixel, one level: new
    assert hashes[0] == content_hashes(images[0][None])[0]  # independent of the batch
    assert (hashes != 0).all()
