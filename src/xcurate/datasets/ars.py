"""Augmented Random Search (Mania, Guy & Recht 2018, variant V2-t) for linear policies, in numpy.

Used to train the small builtin behaviour policies shipped with xcurate (so that datasets can be
collected without the zoo agents in ``../shared``). Hand-written on purpose: ARS is ~100 lines, a
library implementation (sb3-contrib ARS) would pull torch policies and VecEnv machinery into a
loop whose cost is dominated by MuJoCo steps, and the result must be a plain ``(A, O)`` matrix.

Policy: ``a = clip(M (o - mu) / sigma, -1, 1)`` with running observation statistics (mu, sigma)
updated from every state visited during training. Each iteration samples N directions
``delta_k``, evaluates ``M +/- nu delta_k``, keeps the b best directions (by max of the two
returns) and steps ``M += alpha / (b sigma_R) sum_k (r+_k - r-_k) delta_k``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xcurate.errors import ConfigError


@dataclass
class ARSConfig:
    """Hyper-parameters and budget of one ARS run."""

    n_directions: int = 8  # N: directions sampled per iteration (2N rollouts)
    top_directions: int = 4  # b: best directions used in the update (b <= N)
    step_size: float = 0.02  # alpha: learning rate
    noise: float = 0.03  # nu: exploration noise scale of the directions
    horizon: int = 1000  # maximal rollout length during training
    alive_bonus_offset: float = 0.0  # subtracted from every training reward (removes the survival bonus)
    max_seconds: float = 600.0  # wall-clock budget
    max_iterations: int = 100_000  # iteration budget
    eval_every: int = 10  # evaluate the current policy every k iterations
    eval_episodes: int = 3  # deterministic episodes per evaluation (no shaping, no noise)
    target_return: float | None = None  # stop early once an evaluation reaches this return
    seed: int = 0  # seeds directions and environment resets


@dataclass
class Checkpoint:
    """An evaluated snapshot of the linear policy."""

    iteration: int  # ARS iteration at which it was taken
    env_steps: int  # training environment steps so far
    seconds: float  # wall time so far
    eval_return: float  # mean deterministic return over eval_episodes
    W: np.ndarray  # (A, O) policy matrix
    obs_mean: np.ndarray  # (O,) normalisation mean
    obs_std: np.ndarray  # (O,) normalisation std


@dataclass
class ARSResult:
    """Outcome of :func:`train_ars`: all checkpoints (chronological) and totals."""

    domain: str
    config: ARSConfig
    checkpoints: list[Checkpoint] = field(default_factory=list)
    env_steps: int = 0
    seconds: float = 0.0
    final_state: dict[str, np.ndarray] = field(default_factory=dict)  # W, mean, m2, n: pass as init= to resume

    @property
    def best(self) -> Checkpoint:
        """Checkpoint with the highest evaluation return."""
        return max(self.checkpoints, key=lambda c: c.eval_return)

    def closest_to(self, target: float) -> Checkpoint:
        """Checkpoint whose evaluation return is closest to ``target``."""
        return min(self.checkpoints, key=lambda c: abs(c.eval_return - target))

    def history(self) -> list[dict[str, Any]]:
        """(iteration, env_steps, seconds, eval_return) of every checkpoint."""
        return [{"iteration": c.iteration, "env_steps": c.env_steps, "seconds": round(c.seconds, 1),
                 "eval_return": round(c.eval_return, 1)} for c in self.checkpoints]


class RunningStat:
    """Running mean/variance over observation batches (Chan et al. parallel update)."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def update(self, x: np.ndarray) -> None:
        """Add a batch ``x`` of shape (k, dim)."""
        if len(x) == 0:
            return
        k = len(x)
        bm = x.mean(axis=0)
        bm2 = ((x - bm) ** 2).sum(axis=0)
        tot = self.n + k
        delta = bm - self.mean
        self.mean = self.mean + delta * k / tot
        self.m2 = self.m2 + bm2 + delta**2 * self.n * k / tot
        self.n = tot

    @property
    def std(self) -> np.ndarray:
        """Standard deviation (1 where fewer than 2 samples or zero variance)."""
        if self.n < 2:
            return np.ones_like(self.mean)
        s = np.sqrt(self.m2 / (self.n - 1))
        return np.where(s < 1e-8, 1.0, s)


def _rollout(env: Any, M: np.ndarray, mean: np.ndarray, std: np.ndarray, horizon: int, offset: float,
             seed: int | None, record: list[np.ndarray] | None) -> tuple[float, int]:
    """One episode on the unwrapped env; returns (shaped return, steps)."""
    obs, _ = env.reset(seed=seed)
    total, n = 0.0, 0
    while n < horizon:
        if record is not None:
            record.append(obs)
        a = np.clip(M @ ((obs - mean) / std), -1.0, 1.0)
        obs, r, terminated, _, _ = env.step(a)
        total += float(r) - offset
        n += 1
        if terminated:
            break
    return total, n


def train_ars(domain: Any, config: ARSConfig | None = None,
              callback: Callable[[Checkpoint], None] | None = None,
              init: dict[str, np.ndarray] | None = None) -> ARSResult:
    """Train a linear policy with ARS V2-t on ``domain`` within the configured budget.

    Args:
        domain: Domain name or object (its Gymnasium env is stepped directly, unwrapped; the
            horizon is enforced here).
        config: Hyper-parameters and budget.
        callback: Called with every new evaluated :class:`Checkpoint` (e.g. to log progress).
        init: ``final_state`` of an earlier run (keys W, mean, m2, n) to continue training from.

    Returns:
        An :class:`ARSResult` with all checkpoints.
    """
    from xcurate.datasets.domains import get_domain

    cfg = config or ARSConfig()
    if not 1 <= cfg.top_directions <= cfg.n_directions:
        raise ConfigError(f"top_directions must be in [1, n_directions={cfg.n_directions}], got {cfg.top_directions}")
    dom = get_domain(domain)
    env = dom.make_env()
    eval_env = dom.make_env()
    u = env.unwrapped
    rng = np.random.default_rng(cfg.seed)
    obs_dim, act_dim = dom.obs_dim, dom.act_dim
    M = np.zeros((act_dim, obs_dim))
    stat = RunningStat(obs_dim)
    if init is not None:
        if np.shape(init["W"]) != (act_dim, obs_dim):
            raise ConfigError(f"init W has shape {np.shape(init['W'])}, domain {dom.name} needs {(act_dim, obs_dim)}")
        M = np.array(init["W"], dtype=np.float64)
        stat.mean, stat.m2, stat.n = np.array(init["mean"], np.float64), np.array(init["m2"], np.float64), int(init["n"])
    res = ARSResult(domain=dom.name, config=cfg)
    t0 = time.perf_counter()
    ep_seed = int(rng.integers(2**31))
    it = 0
    try:
        while it < cfg.max_iterations:
            it += 1
            mean, std = stat.mean.copy(), stat.std.copy()
            deltas = rng.standard_normal((cfg.n_directions, act_dim, obs_dim))
            r_pos = np.empty(cfg.n_directions)
            r_neg = np.empty(cfg.n_directions)
            states: list[np.ndarray] = []
            for k in range(cfg.n_directions):
                for sign, out in ((1.0, r_pos), (-1.0, r_neg)):
                    ep_seed += 1
                    ret, n = _rollout(u, M + sign * cfg.noise * deltas[k], mean, std, cfg.horizon,
                                      cfg.alive_bonus_offset, ep_seed, states)
                    out[k] = ret
                    res.env_steps += n
            stat.update(np.asarray(states))
            order = np.argsort(-np.maximum(r_pos, r_neg))[: cfg.top_directions]
            sigma_r = np.concatenate([r_pos[order], r_neg[order]]).std()
            if sigma_r < 1e-8:
                sigma_r = 1.0
            step = np.tensordot(r_pos[order] - r_neg[order], deltas[order], axes=1)
            M = M + cfg.step_size / (cfg.top_directions * sigma_r) * step
            elapsed = time.perf_counter() - t0
            last = elapsed >= cfg.max_seconds or it >= cfg.max_iterations
            if it % cfg.eval_every == 0 or last:
                ev = _evaluate_linear(eval_env, M, stat.mean, stat.std, cfg.eval_episodes, 10_000 + it)
                ck = Checkpoint(it, res.env_steps, time.perf_counter() - t0, ev, M.copy(), stat.mean.copy(),
                                stat.std.copy())
                res.checkpoints.append(ck)
                if callback is not None:
                    callback(ck)
                if cfg.target_return is not None and ev >= cfg.target_return:
                    break
            if last:
                break
    finally:
        env.close()
        eval_env.close()
    res.seconds = time.perf_counter() - t0
    res.final_state = {"W": M.copy(), "mean": stat.mean.copy(), "m2": stat.m2.copy(), "n": np.array(stat.n)}
    return res


def _evaluate_linear(env: Any, M: np.ndarray, mean: np.ndarray, std: np.ndarray, episodes: int, seed: int) -> float:
    """Mean return of deterministic episodes with the (wrapped, time-limited) env."""
    rets = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 100 + e)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(np.clip(M @ ((obs - mean) / std), -1.0, 1.0))
            total += float(r)
            done = terminated or truncated
        rets.append(total)
    return float(np.mean(rets))


def config_dict(cfg: ARSConfig) -> dict[str, Any]:
    """The config as a plain dict (for manifests)."""
    return asdict(cfg)
