"""A streaming per-channel histogram of activations with exact merges (batches, ranks).

Each channel keeps `bins` counts on a grid of power-of-two width: bin j covers
`[(low + j) * 2^e, (low + j + 1) * 2^e)`. When a batch brings values outside the range, the width
doubles (e grows) until the whole range seen fits: an old bin `a` falls wholly into the new bin
`a >> d`, because `floor(floor(x / 2^e) / 2^d) == floor(x / 2^(e + d))`, so no count is ever
split or estimated. The exponent is the smallest one (at least `MIN_EXPONENT`) whose grid holds
[min, max] of everything seen, so it depends only on the values, not on their order: two ranks'
histograms re-binned to the exponent of their union and summed equal one pass over all the data,
and each channel's counts equal `numpy.histogram` of its values with the edges `edges()` gives.
Non-finite values are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HISTOGRAM_BINS = 32  # bins per channel
MIN_EXPONENT = -40  # finest bin width 2^-40: a constant channel still gets a (tiny) bin


def _fits(low: torch.Tensor, high: torch.Tensor, exponent: torch.Tensor, bins: int) -> torch.Tensor:
    scale = torch.pow(2.0, -exponent.double())
    return torch.floor(high * scale) - torch.floor(low * scale) <= bins - 1


def _exponent(
    low: torch.Tensor, high: torch.Tensor, start: torch.Tensor, bins: int
) -> torch.Tensor:
    """Per channel the smallest exponent >= `start` whose grid of `bins` bins holds [low, high]."""
    span = (high - low).clamp_min(0)
    guess = torch.floor(torch.log2(span.clamp_min(1e-300) / bins)) - 1  # never above the answer
    exponent = torch.maximum(start, guess.nan_to_num(MIN_EXPONENT).to(torch.int64))
    while True:  # a few steps at most: the guess is within two of the answer
        short = ~_fits(low, high, exponent, bins)
        if not bool(short.any()):
            return exponent
        exponent = exponent + short.to(torch.int64)


@dataclass
class RunningHistogram:
    """Per channel: counts `(C, bins)` int64, exponent `(C,)`, first bin index `(C,)`, and the
    smallest and largest finite values seen `(C,)` float64 (+inf / -inf before any)."""

    counts: torch.Tensor
    exponent: torch.Tensor
    low: torch.Tensor
    vmin: torch.Tensor
    vmax: torch.Tensor

    @classmethod
    def empty(
        cls, channels: int, bins: int = HISTOGRAM_BINS, device: torch.device | str = "cpu"
    ) -> RunningHistogram:
        def full(value: float) -> torch.Tensor:
            return torch.full((channels,), value, dtype=torch.float64, device=device)

        return cls(
            torch.zeros((channels, bins), dtype=torch.int64, device=device),
            torch.full((channels,), MIN_EXPONENT, dtype=torch.int64, device=device),
            torch.zeros((channels,), dtype=torch.int64, device=device),
            full(float("inf")),
            full(float("-inf")),
        )

    @property
    def bins(self) -> int:
        return int(self.counts.shape[1])

    def _rebinned(self, exponent: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """These counts on the coarser grid (`exponent` >= self.exponent, first bin `low`)."""
        channels, bins = self.counts.shape
        shift = (exponent - self.exponent)[:, None]
        absolute = self.low[:, None] + torch.arange(bins, device=self.counts.device)[None, :]
        target = (absolute >> shift) - low[:, None]
        seen = self.counts > 0
        target = torch.where(seen, target, 0)  # empty bins may map outside the new grid
        rows = torch.arange(channels, device=self.counts.device)[:, None] * bins
        flat = torch.zeros(channels * bins, dtype=torch.int64, device=self.counts.device)
        flat.index_add_(0, (rows + target).flatten(), self.counts.flatten())
        return flat.view(channels, bins)

    def _grid(
        self, vmin: torch.Tensor, vmax: torch.Tensor, start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        have = torch.isfinite(vmin)
        exponent = torch.where(
            have,
            _exponent(torch.where(have, vmin, 0.0), torch.where(have, vmax, 0.0), start, self.bins),
            start,
        )
        low = torch.floor(torch.where(have, vmin, 0.0) * torch.pow(2.0, -exponent.double()))
        return exponent, low.to(torch.int64)

    def update(self, values: torch.Tensor) -> None:
        """Count `values` `(C, N)`: row c holds channel c's new values (any float dtype)."""
        values = values.double()
        finite = torch.isfinite(values)
        inf = torch.tensor(float("inf"), dtype=torch.float64, device=values.device)
        vmin = torch.minimum(self.vmin, torch.where(finite, values, inf).amin(1))
        vmax = torch.maximum(self.vmax, torch.where(finite, values, -inf).amax(1))
        exponent, low = self._grid(vmin, vmax, self.exponent)
        counts = self._rebinned(exponent, low)
        index = torch.floor(values * torch.pow(2.0, -exponent.double())[:, None]).to(torch.int64)
        index = (
            index
            - low[:, None]
            + torch.arange(len(low), device=values.device)[:, None] * (self.bins)
        )
        counts += torch.bincount(index[finite], minlength=counts.numel()).view_as(counts)
        self.counts, self.exponent, self.low, self.vmin, self.vmax = (
            counts,
            exponent,
            low,
            vmin,
            vmax,
        )

    def merge(self, others: list[RunningHistogram]) -> RunningHistogram:
        """The histogram of the union of this and `others` (e.g. one per rank), exactly."""
        parts = [self, *others]
        vmin = torch.stack([p.vmin for p in parts]).amin(0)
        vmax = torch.stack([p.vmax for p in parts]).amax(0)
        start = torch.stack([p.exponent for p in parts]).amax(0)
        exponent, low = self._grid(vmin, vmax, start)
        counts = sum((p._rebinned(exponent, low) for p in parts), torch.zeros_like(self.counts))
        return RunningHistogram(counts, exponent, low, vmin, vmax)

    def edges(self) -> torch.Tensor:
        """`(C, bins + 1)` float64 bin edges (exact: integers times powers of two)."""
        steps = torch.arange(self.bins + 1, device=self.counts.device, dtype=torch.float64)
        return (self.low.double()[:, None] + steps[None, :]) * torch.pow(
            2.0, self.exponent.double()
        )[:, None]
