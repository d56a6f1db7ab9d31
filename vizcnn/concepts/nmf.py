"""Non-negative matrix factorization in torch: `A (n, C) ~ U (n, k) @ W (k, C)`, U, W >= 0.

The solver is HALS (hierarchical alternating least squares, Cichocki & Phan 2009): each sweep
updates one column of U, then one row of W, at a time, in closed form; it is the coordinate
descent that scikit-learn's `NMF(solver="cd")` runs, here on whatever device the matrix lives
(float32, batched matrix products). The start is NNDSVDa (Boutsidis & Gallopoulos 2008, with
zeros filled by the matrix's mean), scikit-learn's default for k < min(n, C), so both find the
same concepts on the same matrix. No randomness unless `init="random"` (seeded).

`nnls` solves the other half alone: the coefficients of new rows against fixed directions W,
by the same column-wise updates run to convergence (a convex problem: the exact non-negative
least-squares solution, as `scipy.optimize.nnls` gives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vizcnn.core.devices import Seed, draw_seed
from vizcnn.core.errors import VizError

__all__ = ["Factorization", "nmf", "nnls", "relative_error"]

_EPS = 1e-10  # keeps a HALS column off exact zero so it can come back (scikit-learn does too)


@dataclass
class Factorization:
    """`A ~ U @ W`: coefficients `U (n, k)`, directions `W (k, C)` with unit-norm rows."""

    U: torch.Tensor  # (n, k) >= 0
    W: torch.Tensor  # (k, C) >= 0, each row of unit L2 norm (U carries the scale)
    error: float  # relative Frobenius error ||A - UW|| / ||A||
    iterations: int  # HALS sweeps run
    converged: bool  # False: stopped at max_iter


def relative_error(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor) -> float:
    """`||A - U W||_F / ||A||_F` (0 for an all-zero A reconstructed exactly)."""
    norm = float(torch.linalg.norm(A))
    residual = float(torch.linalg.norm(A - U @ W))
    return residual / norm if norm > 0 else residual


def _nndsvda(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD start with zeros set to the mean of A (scikit-learn's `init="nndsvda"`)."""
    # The top-k singular triplets from the small C x C Gram matrix (n may be 10^5 rows), in
    # float64 so the eigenvectors are stable.
    A64 = A.double()
    gram = (A64.T @ A64).cpu()
    values, vectors = torch.linalg.eigh(gram)
    order = torch.argsort(values, descending=True)[:k]
    singular = values[order].clamp_min(0).sqrt()
    V = vectors[:, order].T  # (k, C)
    U_full = (A64.cpu() @ V.T) / singular.clamp_min(1e-30)  # (n, k)
    # the sign of a singular pair is arbitrary; NNDSVD makes the first one positive
    flip = torch.sign(U_full.sum(0) + V.sum(1))
    flip[flip == 0] = 1
    U_full, V = U_full * flip, V * flip[:, None]
    U0 = torch.zeros(A.shape[0], k, dtype=torch.float64)
    W0 = torch.zeros(k, A.shape[1], dtype=torch.float64)
    U0[:, 0] = singular[0].sqrt() * U_full[:, 0].abs()
    W0[0] = singular[0].sqrt() * V[0].abs()
    for j in range(1, k):
        x, y = U_full[:, j], V[j]
        xp, xn, yp, yn = x.clamp_min(0), (-x).clamp_min(0), y.clamp_min(0), (-y).clamp_min(0)
        xpn, ypn = torch.linalg.norm(xp), torch.linalg.norm(yp)
        xnn, ynn = torch.linalg.norm(xn), torch.linalg.norm(yn)
        if xpn * ypn >= xnn * ynn:
            u, v, sigma = xp / xpn.clamp_min(1e-30), yp / ypn.clamp_min(1e-30), xpn * ypn
        else:
            u, v, sigma = xn / xnn.clamp_min(1e-30), yn / ynn.clamp_min(1e-30), xnn * ynn
        scale = (singular[j] * sigma).sqrt()
        U0[:, j], W0[j] = scale * u, scale * v
    mean = float(A64.mean())
    U0[U0 < 1e-6] = mean
    W0[W0 < 1e-6] = mean
    return U0.to(A), W0.to(A)


def _random_start(A: torch.Tensor, k: int, seed: Seed) -> tuple[torch.Tensor, torch.Tensor]:
    # scikit-learn's init="random": |N(0, 1)| scaled so U W has A's mean
    generator = torch.Generator().manual_seed(draw_seed(seed))
    scale = math.sqrt(max(float(A.mean()), 0.0) / k)
    U0 = torch.randn(A.shape[0], k, generator=generator).abs() * scale
    W0 = torch.randn(k, A.shape[1], generator=generator).abs() * scale
    return U0.to(A), W0.to(A)


def _update_columns(U: torch.Tensor, products: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """One HALS sweep over the columns of U for `min ||A - U W||`: `products` = A W^T (n, k),
    `gram` = W W^T (k, k). Updates U in place and returns it."""
    for j in range(U.shape[1]):
        if gram[j, j] <= 0:
            continue
        step = (products[:, j] - U @ gram[:, j]) / gram[j, j]
        U[:, j] = (U[:, j] + step).clamp_min(_EPS)
    return U


def nmf(
    A: torch.Tensor,
    k: int,
    *,
    max_iter: int = 400,
    tol: float = 1e-5,
    init: str = "nndsvda",
    seed: Seed = 0,
) -> Factorization:
    """Factorize a non-negative `A (n, C)` into `U (n, k) @ W (k, C)` by HALS.

    Args:
        A: the matrix, on any device; computed in float32 (float64 stays float64).
        k: number of components (concepts), 1 <= k <= min(n, C).
        max_iter: HALS sweeps at most.
        tol: stop when the relative error improves by less than `tol` (relative) in a sweep.
        init: "nndsvda" (deterministic, scikit-learn's default) or "random" (seeded).
        seed: the random start's seed (`init="random"` only).

    Returns:
        A `Factorization`; W's rows have unit norm (U carries the scale), components in the
        order of their share of A (sum of U's column), largest first.

    Example:
        >>> found = nmf(torch.rand(500, 32), 4)
        >>> found.W.shape, found.error < 1
    """
    if A.dim() != 2:
        raise VizError(f"nmf needs a matrix (n, C), got shape {tuple(A.shape)}")
    if not 1 <= k <= min(A.shape):
        raise VizError(
            f"k must be between 1 and {min(A.shape)} for a {tuple(A.shape)} matrix, got {k}"
        )
    if not A.is_floating_point() or A.dtype in (torch.float16, torch.bfloat16):
        A = A.float()
    if bool((A < 0).any()):
        raise VizError(f"nmf needs a non-negative matrix; its minimum is {float(A.min()):.3g}")
    if init == "nndsvda":
        U, W = _nndsvda(A, k)
    elif init == "random":
        U, W = _random_start(A, k, seed)
    else:
        raise VizError(f"unknown nmf init {init!r}; use nndsvda or random")
    squared = float((A.double() ** 2).sum())
    previous = math.inf
    converged = False
    sweeps = 0
    for sweeps in range(1, max_iter + 1):
        U = _update_columns(U, A @ W.T, W @ W.T)
        # U^T A, not A^T U: the same product, without walking A column by column (7x faster)
        UtA, UtU = U.T @ A, U.T @ U
        W = _update_columns(W.T.contiguous(), UtA.T, UtU).T
        # ||A - UW||^2 = ||A||^2 - 2 <U^T A, W> + <U^T U, W W^T>: no n x C residual per sweep
        cross = float((UtA * W).sum())
        square = float((UtU * (W @ W.T)).sum())
        error = math.sqrt(max(squared - 2 * cross + square, 0.0))
        if previous - error <= tol * max(previous, 1e-30) and sweeps > 1:
            converged = True
            break
        previous = error
    norms = torch.linalg.norm(W, dim=1).clamp_min(1e-30)
    W = W / norms[:, None]
    U = U * norms[None, :]
    order = torch.argsort(U.sum(0), descending=True)
    U, W = U[:, order].contiguous(), W[order].contiguous()
    return Factorization(U, W, relative_error(A, U, W), sweeps, converged)


def nnls(
    A: torch.Tensor, W: torch.Tensor, *, max_iter: int = 500, tol: float = 1e-7
) -> torch.Tensor:
    """Non-negative least squares for each row: `argmin_{u >= 0} ||a - u W||` against fixed W.

    Args:
        A: `(n, C)` rows (any sign), on W's device.
        W: `(k, C)` directions.
        max_iter: coordinate sweeps at most (exact on convergence: the problem is convex).
        tol: stop when no coefficient moved by more than `tol` times the largest one.

    Returns:
        `(n, k)` coefficients >= 0, in A's dtype.

    Example:
        >>> nnls(torch.rand(10, 8), torch.rand(3, 8)).shape
        torch.Size([10, 3])
    """
    if A.dim() != 2 or W.dim() != 2 or A.shape[1] != W.shape[1]:
        raise VizError(
            f"nnls needs A (n, C) and W (k, C) with the same C; got {tuple(A.shape)} and "
            f"{tuple(W.shape)}"
        )
    W = W.to(A)
    gram = W @ W.T
    products = A @ W.T
    # start from the clipped unconstrained solution: few sweeps are then left to do
    start = torch.linalg.lstsq(gram.double().cpu(), products.T.double().cpu()).solution
    U = start.T.to(A).clamp_min(0).contiguous()
    for _ in range(max_iter):
        before = U.clone()
        for j in range(U.shape[1]):
            if gram[j, j] <= 0:
                continue
            U[:, j] = (U[:, j] + (products[:, j] - U @ gram[:, j]) / gram[j, j]).clamp_min(0)
        moved = float((U - before).abs().max()) if U.numel() else 0.0
        if moved <= tol * max(float(U.abs().max()) if U.numel() else 0.0, 1e-30):
            break
    return U
