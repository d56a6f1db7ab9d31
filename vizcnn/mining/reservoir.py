"""A capped uniform sample of a layer's positions (each position: one row of C activations).

Reservoir sampling by random keys: every position gets a uniform key and the sample is the `cap`
positions with the smallest keys. A position's key is a function of (seed, image id, y, x) alone:
each image's `h * w` keys are drawn from a `torch.Generator` seeded from (seed, image id). The
sample therefore does not depend on the batch size, the order of the images or how they are
split over `torchrun` ranks, and the ranks merge exactly (each rank's kept positions hold the
smallest keys of its share; the merged sample is the `cap` smallest of their union). Keys are
float64; exact ties (about never) are broken by (image id, y, x), so "the `cap` smallest" is one
set.

Used by `vizcnn.concepts.find_concepts` (its own pass) and by the report's one data pass
(`vizcnn.mining.layers.data_pass`): both give the same sample of the same data and seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from vizcnn.core.distributed import all_gather, all_gather_objects, current_shard
from vizcnn.core.errors import VizError
from vizcnn.hooks import Layer

__all__ = [
    "DEFAULT_MAX_POSITIONS",
    "PositionReservoir",
    "PositionSample",
    "SampleConfig",
    "position_keys",
]

DEFAULT_MAX_POSITIONS = 20_000  # cap of a layer's sample of positions
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class SampleConfig:
    """What to sample of one layer in a data pass: its spec, the cap and the keys' seed."""

    layer: Layer  # dotted name, `name#k` for the k-th call, or the submodule
    cap: int = DEFAULT_MAX_POSITIONS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise VizError(f"max_positions must be at least 1, got {self.cap}")


@dataclass
class PositionSample:
    """A layer's sample: rows and their (image id, y, x), ordered by (image id, y, x)."""

    layer: str
    rows: torch.Tensor  # (n, C) float32 activations, on the device they were computed on
    positions: torch.Tensor  # (n, 3) int64 (image id, y, x)
    positions_seen: int  # positions offered; the sample is min(cap, this) of them
    map_size: tuple[int, int]  # (h, w) of the layer's map
    cap: int
    seed: int
    image_ids: list[int] = field(default_factory=list)  # images whose positions were offered

    @property
    def sampled(self) -> int:
        return int(self.positions.shape[0])

    @property
    def complete(self) -> bool:
        """Whether every position offered is in the sample."""
        return self.sampled == self.positions_seen


def _splitmix(value: int) -> int:
    """One step of splitmix64: a well-mixed 64-bit int from any int (Steele et al. 2014)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def position_keys(seed: int, image_ids: torch.Tensor, positions: int) -> torch.Tensor:
    """`(B, positions)` float64 uniform keys of each image's positions (row-major y, x): drawn
    from a generator seeded from (seed, image id) alone."""
    mixed = _splitmix(seed & _MASK)
    keys = torch.empty(len(image_ids), positions, dtype=torch.float64)
    for row, image in enumerate(image_ids.tolist()):
        generator = torch.Generator().manual_seed(_splitmix(mixed ^ (int(image) & _MASK)))
        keys[row] = torch.rand(positions, generator=generator, dtype=torch.float64)
    return keys


def _smallest(keys: torch.Tensor, codes: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` smallest (key, code) pairs, in any order."""
    by_code = torch.argsort(codes)
    order = by_code[torch.argsort(keys[by_code], stable=True)]
    return order[:count]


class PositionReservoir:
    """A uniform sample without replacement of at most `cap` positions of everything added.

    A batch's position is copied only if its key is at or below the `cap`-th smallest of the
    keys held and offered so far, so at most about `cap` rows per batch and about
    `cap * ln(seen / cap)` over a whole pass, not `seen`. They go into one buffer allocated at
    the first batch (`cap` plus the larger of `cap` and the first batch's copies, rows of C
    float32: at most 2 x `cap` x C numbers, barring exact key ties), compacted back to the `cap`
    smallest keys when full: memory is fixed after the first batch however many images
    follow.
    """

    def __init__(self, cap: int, seed: int) -> None:
        if cap < 1:
            raise VizError(f"max_positions must be at least 1, got {cap}")
        self.cap = cap
        self.seed = seed
        self.threshold = math.inf  # a key above it can never be among the cap smallest
        self.rows: torch.Tensor | None = None  # (capacity, C) float32 buffer
        self.keys = torch.empty(0, dtype=torch.float64)  # (capacity,) their keys
        self.where = torch.empty(0, 3, dtype=torch.long)  # (capacity, 3) (image id, y, x)
        self.held = 0
        self.seen = 0
        self.map_size = (0, 0)
        self.image_ids: list[int] = []

    def _allocate(self, acts: torch.Tensor, count: int) -> torch.Tensor:
        if self.rows is None or self.rows.shape[0] < self.cap + count:
            capacity = self.cap + max(self.cap, count)
            # ordinary tensors even under inference_mode: merged in place after the pass
            with torch.inference_mode(False):
                rows = torch.empty(capacity, acts.shape[1], device=acts.device)
                keys = torch.empty(capacity, dtype=torch.float64)
                where = torch.empty(capacity, 3, dtype=torch.long)
            if self.rows is not None:  # a larger batch than the first: grow once, keep the held
                rows[: self.held] = self.rows[: self.held]
                keys[: self.held] = self.keys[: self.held]
                where[: self.held] = self.where[: self.held]
            self.rows, self.keys, self.where = rows, keys, where
        return self.rows

    def _codes(self, where: torch.Tensor) -> torch.Tensor:
        height, width = self.map_size
        return (where[:, 0] * height + where[:, 1]) * width + where[:, 2]

    def add(self, acts: torch.Tensor, ids: torch.Tensor) -> None:
        """Offer every position of `acts` `(B, C, h, w)` (images `ids` `(B,)`, distinct)."""
        batch, _channels, height, width = acts.shape
        if batch == 0:
            return
        self.map_size = (int(height), int(width))
        self.image_ids += [int(i) for i in ids]
        count = batch * height * width
        keys = position_keys(self.seed, ids, height * width).flatten()  # b, y, x
        self.seen += count
        if self.held + count > self.cap:
            # only the cap smallest keys of what is held and offered can stay: copy no more
            pool = torch.cat([self.keys[: self.held], keys])
            self.threshold = min(self.threshold, float(torch.kthvalue(pool, self.cap).values))
        chosen = (keys <= self.threshold).nonzero().flatten()
        if not len(chosen):
            return
        rows = self._allocate(acts, len(chosen))
        if self.held + len(chosen) > rows.shape[0]:
            self.merge()
        b, rest = chosen // (height * width), chosen % (height * width)
        y, x = rest // width, rest % width
        end = self.held + len(chosen)
        on = acts.device
        rows[self.held : end] = acts[b.to(on), :, y.to(on), x.to(on)].float()
        self.keys[self.held : end] = keys[chosen]
        self.where[self.held : end] = torch.stack([ids.cpu()[b], y, x], dim=1)
        self.held = end

    def merge(self) -> None:
        """Keep the `cap` smallest keys and lower the threshold to the largest of them."""
        if self.rows is None:
            return
        if self.held > self.cap:
            kept = _smallest(self.keys[: self.held], self._codes(self.where[: self.held]), self.cap)
            self.rows[: self.cap] = self.rows[kept.to(self.rows.device)]
            self.keys[: self.cap] = self.keys[kept]
            self.where[: self.cap] = self.where[kept]
            self.held = self.cap
        if self.held == self.cap:
            self.threshold = float(self.keys[: self.held].max())

    def sample(
        self,
        layer: str,
        channels: int = 0,
        *,
        ranks: bool = False,
        device: torch.device | None = None,
    ) -> PositionSample:
        """The sample (copies). With `ranks`, the ranks' samples merged when `torchrun` runs
        several (each rank offered its own share of the images; every rank must call it;
        `channels` and `device` give the rows' width and device to a rank that saw no image)."""
        self.merge()
        rows = self.rows[: self.held] if self.rows is not None else None
        keys, where = self.keys[: self.held], self.where[: self.held]
        seen, map_size, image_ids = self.seen, self.map_size, list(self.image_ids)
        if ranks and current_shard().world_size > 1:
            rows, keys, where, seen, map_size, image_ids = self._gathered(rows, channels, device)
        if rows is None:
            rows = torch.empty(0, channels)
        height, width = map_size
        order = torch.argsort((where[:, 0] * height + where[:, 1]) * width + where[:, 2])
        return PositionSample(
            layer=layer,
            rows=rows[order.to(rows.device)].clone(),
            positions=where[order].clone(),
            positions_seen=seen,
            map_size=map_size,
            cap=self.cap,
            seed=self.seed,
            image_ids=sorted(image_ids),
        )

    def _gathered(
        self, rows: torch.Tensor | None, channels: int, device: torch.device | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, tuple[int, int], list[int]]:
        """Every rank's kept positions, cut to the `cap` smallest keys of their union."""
        width = int(rows.shape[1]) if rows is not None else channels
        # NCCL moves CUDA tensors only: every rank gathers on its device
        device = rows.device if rows is not None else (device or torch.device("cpu"))
        # all_gather needs one shape on every rank: pad each rank's share to the cap
        padded_rows = torch.zeros(self.cap, width, device=device)
        padded_keys = torch.full((self.cap,), math.inf, dtype=torch.float64, device=device)
        padded_where = torch.zeros(self.cap, 3, dtype=torch.long, device=device)
        if rows is not None:
            padded_rows[: self.held] = rows
            padded_keys[: self.held] = self.keys[: self.held].to(device)
            padded_where[: self.held] = self.where[: self.held].to(device)
        counts = torch.tensor([self.held, self.seen, *self.map_size], device=device)
        held = torch.stack(all_gather(counts)).cpu()
        parts = [all_gather(t) for t in (padded_rows, padded_keys, padded_where)]
        ranks = range(len(held))
        all_rows = torch.cat([parts[0][r][: int(held[r, 0])] for r in ranks])
        keys = torch.cat([parts[1][r][: int(held[r, 0])].cpu() for r in ranks])
        where = torch.cat([parts[2][r][: int(held[r, 0])].cpu() for r in ranks])
        map_size = (int(held[:, 2].max()), int(held[:, 3].max()))
        self.map_size = map_size
        kept = _smallest(keys, self._codes(where), self.cap)
        image_ids = [i for part in all_gather_objects(self.image_ids) for i in part]
        return (
            all_rows[kept.to(all_rows.device)],
            keys[kept],
            where[kept],
            int(held[:, 1].sum()),
            map_size,
            image_ids,
        )
