"""Mining's top-k: the running per-channel top-k (O(channels x k) memory, updated on the
device) and `TopK`, the result of a streaming pass.

Each candidate is packed into one int64 sort key: the activation's float32 bits mapped to an
order-preserving integer in the high 32 bits, and (2^32 - 1 - image id) in the low 32 bits. One
`torch.topk` over keys then ranks by value descending and breaks ties by image id ascending,
exactly and deterministically, on any device, whatever order the images came in (batches,
resumed runs, ranks). An empty slot holds the smallest int64, below every real candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

EMPTY = torch.iinfo(torch.int64).min  # key of an empty slot
_LOW = 1 << 32
MAX_IMAGES = _LOW - 1  # image ids must fit in the low 32 bits of a key


def encode(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Sort keys for float `values` `(..., B)` of images `ids` `(B,)`; NaN becomes EMPTY."""
    finite = values.float() + 0.0  # -0.0 + 0.0 == +0.0: one key for zero
    bits = finite.view(torch.int32).to(torch.int64)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: flip magnitude
    keys = ordered * _LOW + (MAX_IMAGES - ids)
    return keys.masked_fill(torch.isnan(finite), EMPTY)


def decode(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `encode`: (float32 values, int64 ids); EMPTY gives (NaN, -1)."""
    ordered = torch.div(keys, _LOW, rounding_mode="floor")
    ids = MAX_IMAGES - (keys - ordered * _LOW)
    bits = torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered).to(torch.int32)
    values = bits.view(torch.float32)
    empty = keys == EMPTY
    return values.masked_fill(empty, float("nan")), ids.masked_fill(empty, -1)


@dataclass
class RunningTopK:
    """Per channel the k best (value, image id, position, content hash) seen so far.

    Attributes are `(C, k)` tensors sorted best first: `keys` (see `encode`), `positions`
    (flat index y * W + x of the unit), `hashes` (content hash; 0 for an empty slot).
    """

    keys: torch.Tensor
    positions: torch.Tensor
    hashes: torch.Tensor

    @classmethod
    def empty(cls, channels: int, k: int, device: torch.device | str = "cpu") -> RunningTopK:
        keys = torch.full((channels, k), EMPTY, dtype=torch.int64, device=device)
        zeros = torch.zeros((channels, k), dtype=torch.int64, device=device)
        return cls(keys, zeros, zeros.clone())

    @property
    def k(self) -> int:
        return int(self.keys.shape[1])

    def update(
        self,
        values: torch.Tensor,
        positions: torch.Tensor,
        ids: torch.Tensor,
        hashes: torch.Tensor,
        valid: torch.Tensor,
    ) -> None:
        """Merge one batch: per image one candidate per channel.

        Args:
            values: `(B, C)` per-image score of each channel (spatial max or mean).
            positions: `(B, C)` flat position of that image's best unit per channel.
            ids: `(B,)` image ids (data-set indices), distinct from every id seen before.
            hashes: `(B,)` content hashes; an image whose content is already held for a
                channel, or repeats an earlier image of the batch, is not a candidate there.
            valid: `(B,)` False for items to ignore (unreadable files).
        """
        batch = values.shape[0]
        keys = encode(values.t(), ids)  # (C, B)
        earlier = torch.ones(batch, batch, dtype=torch.bool, device=ids.device).tril(-1)
        repeated = ((hashes[:, None] == hashes[None, :]) & earlier).any(1)
        drop = (~valid | repeated)[None, :] | (
            self.hashes[:, :, None] == hashes[None, None, :]
        ).any(1)
        keys = keys.masked_fill(drop, EMPTY)
        channels = keys.shape[0]
        self._select(
            torch.cat([self.keys, keys], 1),
            torch.cat([self.positions, positions.t().to(torch.int64)], 1),
            torch.cat([self.hashes, hashes[None, :].expand(channels, batch)], 1),
        )

    def merge(self, others: list[RunningTopK]) -> RunningTopK:
        """The exact top-k of the union of this and `others` (e.g. one per rank)."""
        parts = [self, *others]
        keys = torch.cat([p.keys for p in parts], 1)
        positions = torch.cat([p.positions for p in parts], 1)
        hashes = torch.cat([p.hashes for p in parts], 1)
        order = keys.argsort(dim=1, descending=True)  # keys are unique except EMPTY
        keys, positions, hashes = (t.gather(1, order) for t in (keys, positions, hashes))
        size = keys.shape[1]
        earlier = torch.ones(size, size, dtype=torch.bool, device=keys.device).tril(-1)
        # The same content held by two parts: keep the better-ranked copy only.
        repeated = ((hashes[:, :, None] == hashes[:, None, :]) & earlier[None]).any(2)
        keys = keys.masked_fill(repeated & (hashes != 0), EMPTY)
        merged = RunningTopK.empty(keys.shape[0], self.k, keys.device)
        merged._select(keys, positions, hashes)
        return merged

    def _select(self, keys: torch.Tensor, positions: torch.Tensor, hashes: torch.Tensor) -> None:
        top, index = keys.topk(self.k, dim=1)
        empty = top == EMPTY
        self.keys = top
        # Empty slots can come from any tied EMPTY candidate: blank them so state is canonical.
        self.positions = positions.gather(1, index).masked_fill(empty, 0)
        self.hashes = hashes.gather(1, index).masked_fill(empty, 0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "keys": self.keys.cpu(),
            "positions": self.positions.cpu(),
            "hashes": self.hashes.cpu(),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, torch.Tensor], device: torch.device | str = "cpu"
    ) -> RunningTopK:
        return cls(*(state[name].to(device) for name in ("keys", "positions", "hashes")))


@dataclass
class TopK:
    """Result of the streaming pass: per mined channel its k best images, best first.

    Rows follow `channels`; empty slots (fewer images than k) have id -1 and value NaN.
    """

    layer: str  # the mined layer
    channels: tuple[int, ...]  # channel of each row
    rank: str  # "max" or "mean"
    values: torch.Tensor  # (C', k) float32 score
    image_ids: torch.Tensor  # (C', k) int64 index into the data set, -1 = empty
    positions: torch.Tensor  # (C', k, 2) int64 (y, x) of the best unit in the layer's map
    layer_shape: tuple[int, int, int]  # (C, H, W) of the layer's output for one image
    images_seen: int  # images that went through the network
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) not readable
    resumed_from: int = 0  # images of this process's share that came from a checkpoint

    def hits(self, row: int) -> list[tuple[float, int, int, int]]:
        """(value, image id, y, x) of row `row`'s filled slots, best first."""
        found = []
        for slot in range(self.values.shape[1]):
            image = int(self.image_ids[row, slot])
            if image >= 0:
                y, x = (int(v) for v in self.positions[row, slot])
                found.append((float(self.values[row, slot]), image, y, x))
        return found
