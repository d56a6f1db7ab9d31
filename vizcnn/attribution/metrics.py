"""Faithfulness metrics beside deletion/insertion: ROAD, and average drop / increase in confidence.

**ROAD** (Rong et al. 2022, "A consistent and efficient evaluation strategy for attribution
methods"): remove a share of the pixels, most relevant first (MoRF) or least relevant first
(LeRF), and follow the target class probability. Removed pixels are not set to a flat value (the
model would see the removal's shape) but imputed with the paper's noisy linear imputation: each
removed pixel is the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones, 1/12 for
the diagonals, renormalized at the border), removed neighbours being unknowns too, which makes
one sparse linear system per image and share (solved with scipy), plus Gaussian noise. A good map
makes the MoRF probability fall fast (low mean) and the LeRF one stay (high mean).

**Average drop and increase in confidence** (Chattopadhay et al. 2018, Grad-CAM++): the image
multiplied by the map scaled to a maximum of 1 (an "explanation map") is shown to the model.
Average drop = mean over images of `max(0, Y - O) / Y` (Y: the target probability on the image,
O: on the explanation map), lower is better; increase in confidence = the share of images with
`O > Y`, higher is better. Both are in percent, as in the paper.

A pixel's importance is the sum over channels of |attribution|, as in `deletion.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vizcnn.attribution.classifier import Classifier
from vizcnn.attribution.deletion import pixel_ranks, target_probabilities
from vizcnn.core.devices import draw_seed
from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.hooks import inplace_off, model_guard
from vizcnn.models.base import ModelLike, as_loaded

# the 8 neighbours and their weights in the paper's imputation (its code's `neighbors_weights`)
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)
DEFAULT_SHARES = (0.1, 0.3, 0.5, 0.7, 0.9)  # shares of the pixels removed (the paper's grid)


def imputation_system(
    image: np.ndarray, removed: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """The linear system of the noisy linear imputation, as `((rows, cols, values), b, unknowns)`.

    Unknown k (the k-th removed pixel in row-major order) satisfies
    `sum_n w_n * x_k - sum_{n removed} w_n * x_n = sum_{n kept} w_n * image_n` over its
    in-image neighbours n: x_k is the weighted mean of its neighbours. The matrix is given by
    its `(row, column, value)` entries, `b` is `(K, C)`, `unknowns` `(K, 2)` their (y, x).
    """
    channels, h, w = image.shape
    ys, xs = np.nonzero(removed)
    index = -np.ones((h, w), dtype=np.int64)
    index[ys, xs] = np.arange(len(ys))
    rows: list[np.ndarray] = [np.arange(len(ys))]
    cols: list[np.ndarray] = [np.arange(len(ys))]
    diagonal = np.zeros(len(ys))
    values: list[np.ndarray] = []
    b = np.zeros((len(ys), channels))
    for dy, dx, weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diagonal += weight * inside
        k = np.nonzero(inside)[0]
        neighbour = index[ny[k], nx[k]]
        unknown = neighbour >= 0
        rows.append(k[unknown])
        cols.append(neighbour[unknown])
        values.append(np.full(int(unknown.sum()), -weight))
        known = k[~unknown]
        b[known] += weight * image[:, ny[known], nx[known]].T
    entries = (np.concatenate(rows), np.concatenate(cols), np.concatenate([diagonal, *values]))
    return entries, b, np.stack([ys, xs], axis=1)


def impute(
    image: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.01,
    seed: int | torch.Generator = 0,
) -> torch.Tensor:
    """`image` `(C, H, W)` with the `removed` `(H, W)` pixels replaced by ROAD's noisy linear
    imputation (the weighted mean of the neighbours, one sparse solve, plus N(0, noise^2)).

    Raises:
        VizError: every pixel removed (nothing to impute from).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    mask = removed.detach().cpu().numpy().astype(bool)
    if mask.all():
        raise VizError("ROAD cannot impute an image with every pixel removed; keep some")
    out = image.detach().clone()
    if not mask.any():
        return out
    pixels = image.detach().double().cpu().numpy()
    (r, c, v), b, where = imputation_system(pixels, mask)
    matrix = coo_matrix((v, (r, c)), shape=(len(b), len(b))).tocsc()
    solved = np.asarray(spsolve(matrix, b)).reshape(len(b), -1)  # (K, C)
    values = torch.from_numpy(solved.T.copy())  # (C, K)
    if noise > 0:
        generator = (
            seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        )
        values = values + noise * torch.randn(
            values.shape, generator=generator, dtype=torch.float64
        )
    ys = torch.from_numpy(where[:, 0])
    xs = torch.from_numpy(where[:, 1])
    out[:, ys.to(out.device), xs.to(out.device)] = values.to(device=out.device, dtype=out.dtype)
    return out


@dataclass(frozen=True)
class RoadCurves:
    """ROAD of one method over a batch: target probability per removed share."""

    shares: tuple[float, ...]  # share of pixels removed at each point
    morf: torch.Tensor  # (B, S) most relevant removed first: lower = better map
    lerf: torch.Tensor  # (B, S) least relevant removed first: higher = better map

    @property
    def morf_mean(self) -> float:
        return float(self.morf.mean())

    @property
    def lerf_mean(self) -> float:
        return float(self.lerf.mean())


def _probabilities(net: Classifier, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # float64 on the host: the metrics are summed and compared in numpy
    return target_probabilities(net, images, targets).double().cpu()


def _check_map(name: str, attribution: torch.Tensor, x: torch.Tensor) -> None:
    b, _, h, w = x.shape
    if attribution.dim() != 4 or attribution.shape[0] != b or attribution.shape[2:] != x.shape[2:]:
        raise VizError(
            f"map {name!r} has shape {tuple(attribution.shape)}; expected ({b}, C, {h}, {w})"
        )


def road(
    model: ModelLike,
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    shares: Sequence[float] = DEFAULT_SHARES,
    noise: float = 0.01,
    seed: int | torch.Generator = 0,
    batch: int = 32,
    progress: ProgressCallback = no_progress,
) -> dict[str, RoadCurves]:
    """ROAD (remove and debias) MoRF and LeRF curves of each map, at the `shares` of pixels.

    Args:
        model: a `LoadedModel` or bare `nn.Module`; left exactly as found.
        images: `(B, C, H, W)` in [0, 1].
        maps: method name -> attribution `(B, C', H, W)` (ranked by the sum over channels of |.|).
        targets: `(B,)` class per image whose probability is followed.
        shares: shares of the pixels removed, each in (0, 1).
        noise: std of the Gaussian noise added to imputed pixels ([0, 1] pixel units; the
            paper's 0.01).
        seed: the noise (an int gives the same curves on every call).
        batch: imputed images per forward pass.

    Example:
        >>> curves = road(model, images, result.maps, result.targets)
        >>> curves["gradcam"].morf_mean, curves["gradcam"].lerf_mean
    """
    if not shares or any(not 0 < s < 1 for s in shares):
        raise VizError(f"ROAD shares {tuple(shares)} must each lie in (0, 1)")
    if noise < 0 or batch < 1:
        raise VizError(f"ROAD noise ({noise}) must be >= 0 and batch ({batch}) at least 1")
    loaded = as_loaded(model)
    warn_if_normalized(images)
    net = Classifier(loaded)
    x = images.to(device=loaded.device, dtype=loaded.dtype)
    targets = targets.to(x.device)
    b, _, h, w = x.shape
    for name, attribution in maps.items():
        _check_map(name, attribution, x)
    generator = torch.Generator().manual_seed(draw_seed(seed))
    counts = [round(s * h * w) for s in shares]
    curves: dict[str, RoadCurves] = {}
    with model_guard(loaded.module), inplace_off(loaded.module):
        for done, (name, attribution) in enumerate(maps.items()):
            ranks = pixel_ranks(attribution.to(x.device))  # (B, H, W), 0 = most important
            probs = torch.empty(2, b, len(shares), dtype=torch.float64)
            jobs = [(order, i, j) for order in (0, 1) for i in range(b) for j in range(len(shares))]
            for start in range(0, len(jobs), batch):
                group = jobs[start : start + batch]
                imputed = []
                for order, i, j in group:
                    # MoRF removes the `count` most important pixels, LeRF the least important
                    gone = ranks[i] < counts[j] if order == 0 else ranks[i] >= h * w - counts[j]
                    imputed.append(impute(x[i], gone, noise=noise, seed=generator))
                index = torch.tensor([i for _, i, _ in group], device=x.device)
                p = _probabilities(net, torch.stack(imputed), targets[index])
                for k, (order, i, j) in enumerate(group):
                    probs[order, i, j] = p[k]
            curves[name] = RoadCurves(tuple(float(s) for s in shares), probs[0], probs[1])
            progress(done + 1, len(maps), name)
    return curves


@dataclass(frozen=True)
class Confidence:
    """Average drop and increase in confidence of one method (Chattopadhay et al. 2018)."""

    drop: torch.Tensor  # (B,) max(0, Y - O) / Y per image
    increase: torch.Tensor  # (B,) bool: O > Y

    @property
    def average_drop(self) -> float:
        """Mean drop in percent (lower is better)."""
        return 100.0 * float(self.drop.double().mean())

    @property
    def increase_in_confidence(self) -> float:
        """Share of images whose probability rose, in percent (higher is better)."""
        return 100.0 * float(self.increase.double().mean())


def explanation_maps(images: torch.Tensor, attribution: torch.Tensor) -> torch.Tensor:
    """The images times their maps scaled to a maximum of 1 per image (sum over channels of
    |attribution|; an all-zero map gives a black image)."""
    importance = attribution.abs().sum(1, keepdim=True).to(images.dtype)
    peak = importance.flatten(1).amax(1).view(-1, 1, 1, 1)
    scaled = torch.where(peak > 0, importance / peak.clamp(min=1e-30), torch.zeros_like(importance))
    return images * scaled


def confidence(
    model: ModelLike,
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    batch: int = 32,
) -> dict[str, Confidence]:
    """Average drop and increase in confidence of each map (one forward per image and map).

    Example:
        >>> scores = confidence(model, images, result.maps, result.targets)
        >>> scores["gradcam"].average_drop, scores["gradcam"].increase_in_confidence
    """
    if batch < 1:
        raise VizError(f"batch ({batch}) must be at least 1")
    loaded = as_loaded(model)
    warn_if_normalized(images)
    net = Classifier(loaded)
    x = images.to(device=loaded.device, dtype=loaded.dtype)
    targets = targets.to(x.device)
    for name, attribution in maps.items():
        _check_map(name, attribution, x)
    found: dict[str, Confidence] = {}
    with model_guard(loaded.module), inplace_off(loaded.module):
        original = torch.cat(
            [
                _probabilities(net, x[s : s + batch], targets[s : s + batch])
                for s in range(0, len(x), batch)
            ]
        )
        for name, attribution in maps.items():
            shown = explanation_maps(x, attribution.to(x.device))
            after = torch.cat(
                [
                    _probabilities(net, shown[s : s + batch], targets[s : s + batch])
                    for s in range(0, len(x), batch)
                ]
            )
            drop = (original - after).clamp(min=0) / original.clamp(min=1e-30)
            found[name] = Confidence(drop=drop, increase=after > original)
    return found


# the per-method table's columns: (key, heading, which way is better)
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("deletion_area", "deletion", "lower"),
    ("insertion_area", "insertion", "higher"),
    ("road_morf", "ROAD MoRF", "lower"),
    ("road_lerf", "ROAD LeRF", "higher"),
    ("average_drop", "avg drop %", "lower"),
    ("increase_in_confidence", "increase %", "higher"),
)


def faithfulness(
    model: ModelLike,
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    steps: int = 16,
    baseline: float = 0.0,
    shares: Sequence[float] = DEFAULT_SHARES,
    noise: float = 0.01,
    seed: int | torch.Generator = 0,
    batch: int = 32,
) -> dict[str, dict[str, float]]:
    """Every metric of `TABLE_COLUMNS` per method, means over the images: deletion and
    insertion areas (`deletion_curves`), ROAD MoRF and LeRF mean probabilities (`road`),
    average drop and increase in confidence (`confidence`).

    Example:
        >>> table = faithfulness(model, images, result.maps, result.targets)
        >>> table["gradcam"]["road_morf"]
    """
    from vizcnn.attribution.deletion import deletion_curves

    curves = deletion_curves(
        model, images, maps, targets, steps=steps, baseline=baseline, batch=batch
    )
    return metric_rows(
        {
            m: (float(c.deletion_area.mean()), float(c.insertion_area.mean()))
            for m, c in curves.items()
        },
        road(model, images, maps, targets, shares=shares, noise=noise, seed=seed, batch=batch),
        confidence(model, images, maps, targets, batch=batch),
    )


def metric_rows(
    areas: dict[str, tuple[float, float]],
    roads: dict[str, RoadCurves],
    scores: dict[str, Confidence],
) -> dict[str, dict[str, float]]:
    """The per-method rows of `TABLE_COLUMNS` from the three metrics' results."""
    return {
        m: {
            "deletion_area": areas[m][0],
            "insertion_area": areas[m][1],
            "road_morf": roads[m].morf_mean,
            "road_lerf": roads[m].lerf_mean,
            "average_drop": scores[m].average_drop,
            "increase_in_confidence": scores[m].increase_in_confidence,
        }
        for m in areas
    }


def metric_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table of `faithfulness` rows, one line per method ("" for none)."""
    if not rows:
        return ""
    width = max(6, *(len(m) for m in rows))
    columns = [c for c in TABLE_COLUMNS if all(c[0] in row for row in rows.values())]
    head = f"{'method':<{width}}" + "".join(f"  {title:>10}" for _, title, _ in columns)
    better = f"{'better':<{width}}" + "".join(f"  {way:>10}" for _, _, way in columns)
    lines = [head, better]
    for method, row in rows.items():
        lines.append(f"{method:<{width}}" + "".join(f"  {row[key]:10.3f}" for key, _, _ in columns))
    return "\n".join(lines)
