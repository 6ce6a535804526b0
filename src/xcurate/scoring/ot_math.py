"""Pure functions of the optimal-transport (OTDF) scorer.

Everything here takes arrays/tensors and returns arrays/tensors; no I/O, no state. The solvers
are POT's (``ot.sinkhorn``, ``ot.emd``, ``ot.unbalanced.sinkhorn_unbalanced``) called with torch
tensors (CPU or CUDA) or numpy arrays; only the cosine cost and the score read-out are written
here.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

#: Official OTDF recipe constants (ott-jax Sinkhorn as used by the OTDF code).
OFFICIAL_CHUNK = 10_000
OFFICIAL_EPS_FACTOR = 0.05
OFFICIAL_ITERS = 100
OFFICIAL_THRESHOLD = 1e-9


def transition_features(observations: np.ndarray, actions: np.ndarray,
                        next_observations: np.ndarray) -> np.ndarray:
    """u = concat(s, a, s') per row, shape (N, 2*obs_dim + act_dim)."""
    return np.concatenate([observations, actions, next_observations], axis=1)


def cosine_cost(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine distance matrix C_ij = 1 - cos(x_i, y_j), values in [0, 2].

    Zero vectors get cosine 0 (cost 1) instead of NaN.
    """
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(eps)
    yn = y / y.norm(dim=1, keepdim=True).clamp_min(eps)
    return (1.0 - xn @ yn.T).clamp_(0.0, 2.0)


def sqeuclidean_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance matrix C_ij = ||x_i - y_j||^2 divided by the feature count.

    Dividing by the dimension keeps z-scored features at cost ~2 per pair on average.
    """
    return (torch.cdist(x, y) ** 2).div_(x.shape[1])


def sinkhorn_plan(cost: torch.Tensor, eps_factor: float = OFFICIAL_EPS_FACTOR,
                  n_iter: int = OFFICIAL_ITERS, threshold: float = OFFICIAL_THRESHOLD,
                  method: str = "auto") -> torch.Tensor:
    """Balanced entropic OT plan between uniform marginals, the official OTDF way.

    The cost is scaled by its maximum and epsilon is ``eps_factor`` x the mean scaled cost
    (ott-jax's default relative epsilon); POT runs at most ``n_iter`` Sinkhorn iterations.

    Args:
        cost: (n, m) cost matrix (unscaled), float32 or float64, any device.
        eps_factor: epsilon relative to the mean of the max-scaled cost.
        n_iter: maximum Sinkhorn iterations.
        threshold: stop threshold on the marginal violation.
        method: "sinkhorn" (scaling, fast), "sinkhorn_log" (log domain, robust) or "auto"
            (scaling while the kernel exp(-1/reg) is representable in the dtype, else the log
            domain; a non-finite scaling result is recomputed in the log domain).

    Returns:
        (n, m) coupling whose rows sum to 1/n (POT ends on the row update).
    """
    import ot

    n, m = cost.shape
    scaled = cost / cost.max().clamp_min(1e-30)
    reg = float(eps_factor * scaled.mean())
    reg = max(reg, 1e-12)
    a = torch.full((n,), 1.0 / n, dtype=scaled.dtype, device=scaled.device)
    b = torch.full((m,), 1.0 / m, dtype=scaled.dtype, device=scaled.device)
    if method == "auto":
        # the kernel exp(-C/reg) must stay representable: exp(-700) in float64, exp(-85) in float32.
        limit = 600.0 if scaled.dtype == torch.float64 else 80.0
        method = "sinkhorn" if 1.0 / reg < limit else "sinkhorn_log"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" is expected with 100 iterations
        plan = ot.sinkhorn(a, b, scaled, reg, method=method, numItermax=n_iter, stopThr=threshold)
    if not torch.isfinite(plan).all() and method != "sinkhorn_log":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = ot.sinkhorn(a, b, scaled, reg, method="sinkhorn_log", numItermax=n_iter,
                               stopThr=threshold)
    return plan


def emd_plan(cost: np.ndarray, num_iter_max: int = 100_000_000) -> np.ndarray:
    """Exact OT plan (network simplex, POT ``ot.emd``) between uniform marginals.

    ``num_iter_max`` must be large (~1e8): POT's default 1e5 stops early with a non-optimal plan.
    """
    import ot

    cost = np.ascontiguousarray(cost, dtype=np.float64)
    n, m = cost.shape
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    return ot.emd(a, b, cost, numItermax=int(num_iter_max))


def unbalanced_plan(cost: torch.Tensor, reg: float = 0.01, lambda_src: float = 0.05,
                    lambda_tar: float = 0.5, n_iter: int = 1000) -> torch.Tensor:
    """Unbalanced entropic OT plan (ROOT/UOTDF style) with KL marginal relaxations.

    The cost is scaled by its maximum. ``lambda_src`` relaxes the source (row) marginal,
    ``lambda_tar`` the target (column) marginal: a small ``lambda_src`` lets far-away source
    rows shed mass.
    """
    import ot

    n, m = cost.shape
    scaled = (cost / cost.max().clamp_min(1e-30)).to(torch.float64)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=cost.device)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64, device=cost.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = ot.unbalanced.sinkhorn_unbalanced(a, b, scaled, reg, (lambda_src, lambda_tar),
                                                 method="sinkhorn_stabilized", numItermax=n_iter)
    return plan


def coupling_scores(plan: torch.Tensor | np.ndarray, cost: torch.Tensor | np.ndarray,
                    normalise_rows: bool = True) -> np.ndarray:
    """OTDF deviation d_i = -sum_j P_ij C_ij from a plan and the UNSCALED cost.

    Args:
        plan: (n, m) coupling with uniform row mass a_i = 1/n.
        cost: (n, m) unscaled cost.
        normalise_rows: True (xcurate's fix) divides by the row mass a_i = 1/n so that the
            score is the plan's conditional expected cost, on one scale whatever the chunk size,
            in [-max C, 0]; False is the official recipe, whose scale is proportional to 1/n (the
            short last chunk gets larger magnitudes).

    Returns:
        (n,) float64 scores, higher = closer to the target.
    """
    if isinstance(plan, np.ndarray):
        d = -(plan * np.asarray(cost, dtype=plan.dtype)).sum(axis=1)
    else:
        d = -(plan * cost.to(plan.dtype)).sum(dim=1).double().cpu().numpy()
    if normalise_rows:
        d = d * plan.shape[0]
    return np.asarray(d, dtype=np.float64)


def row_mass_ratio(plan: torch.Tensor) -> np.ndarray:
    """Transported mass of each source row relative to its nominal mass 1/n (unbalanced OT)."""
    n = plan.shape[0]
    return (plan.sum(dim=1).double() * n).cpu().numpy()


def zscore_stats(x: np.ndarray, min_std: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (std floored at ``min_std``) of ``x``."""
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), min_std)
    return mean, std
