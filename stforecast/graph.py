"""Graph construction and the matrix forms graph models consume.

Adjacencies are ``[N, N]`` numpy float32 with row ``i`` = sensor ``i``. ``W[i, j]`` weights
the edge from ``i`` to ``j`` (DCRNN's convention for directed road distance).
"""

from __future__ import annotations

import numpy as np


def gaussian_kernel(distances: np.ndarray, threshold: float = 0.1,
                    sigma: float | None = None) -> np.ndarray:
    """DCRNN's road-distance kernel: ``W = exp(-(d / sigma)^2)``, entries below ``threshold`` cut.

    ``distances`` is ``[N, N]`` with ``inf`` where no road path is known (weight 0).
    ``sigma`` defaults to the standard deviation of all finite distances, as DCRNN's
    ``gen_adj_mx.py`` does; pass it explicitly to keep a graph stable across subsets.
    """
    d = np.asarray(distances, dtype=np.float64)
    finite = np.isfinite(d)
    if sigma is None:
        sigma = float(d[finite].std())
    if sigma <= 0:
        raise ValueError("sigma must be positive (are all distances equal?)")
    w = np.zeros_like(d)
    w[finite] = np.exp(-np.square(d[finite] / sigma))
    w[w < threshold] = 0.0
    return w.astype(np.float32)


def edges_to_distances(n: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray,
                       symmetric: bool = False) -> np.ndarray:
    """``[N, N]`` distances from an edge list: 0 on the diagonal, ``inf`` where unknown."""
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0.0)
    d[src, dst] = cost
    if symmetric:
        d[dst, src] = np.minimum(d[dst, src], cost)
    return d


def random_walk(adj: np.ndarray) -> np.ndarray:
    """Row-normalised transition matrix ``D^-1 W`` (rows of isolated nodes stay zero)."""
    a = np.asarray(adj, dtype=np.float64)
    deg = a.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(deg > 0, a / deg, 0.0)
    return p.astype(np.float32)


def double_transition(adj: np.ndarray) -> list[np.ndarray]:
    """Forward and backward transition matrices, Graph WaveNet's ``doubletransition`` supports."""
    return [random_walk(adj), random_walk(np.asarray(adj).T)]


def scaled_laplacian(adj: np.ndarray) -> np.ndarray:
    """``2 L / lambda_max - I`` of the symmetrised normalised Laplacian (ChebNet / STGCN).

    ``L = I - D^-1/2 W D^-1/2`` on ``max(W, W^T)``; its eigenvalues lie in [0, 2], so the
    result's lie in [-1, 1], which keeps the Chebyshev recursion stable.
    """
    a = np.asarray(adj, dtype=np.float64)
    a = np.maximum(a, a.T)
    np.fill_diagonal(a, 0.0)
    deg = a.sum(axis=1)
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
    lap = np.eye(len(a)) - inv_sqrt[:, None] * a * inv_sqrt[None, :]
    lam_max = float(np.linalg.eigvalsh(lap).max())
    if lam_max <= 0:  # a graph with no edges: the Laplacian is zero
        lam_max = 2.0
    return (2.0 * lap / lam_max - np.eye(len(a))).astype(np.float32)


def symmetric_normalized(adj: np.ndarray) -> np.ndarray:
    """``D^-1/2 W D^-1/2`` with ``D`` the row sums (Kipf & Welling's GCN propagation matrix
    when ``W`` has self-loops; rows and columns of isolated nodes stay zero). ``W`` is taken
    as given: an asymmetric ``W`` gives an asymmetric result."""
    a = np.asarray(adj, dtype=np.float64)
    deg = a.sum(axis=1)
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    return (inv_sqrt[:, None] * a * inv_sqrt[None, :]).astype(np.float32)


def with_self_loops(adj: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """``W`` with its diagonal set to ``weight`` (1: a self-loop on every node; 0: none),
    whatever the data had there."""
    a = np.array(adj, dtype=np.float32, copy=True)
    np.fill_diagonal(a, weight)
    return a
