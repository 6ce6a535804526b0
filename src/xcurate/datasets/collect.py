"""Collect transition datasets by running a behaviour policy in a domain's Gymnasium environment.

INTERFACE (stable):

    collect(domain, policy, n_transitions, noise=0.0, seed=0, progress=True, quality=None)
        -> TransitionDataset
    evaluate(domain, policy, episodes=5, seed=0) -> np.ndarray of episode returns
    QUALITIES = ("random", "medium", "expert", "medium-expert")

What is stored per transition: observation s, action a (after noise and clipping), reward,
explicit next observation s' (on termination or truncation the real final observation, never
the reset observation), ``terminals`` (real termination) and ``timeouts`` (truncation by the
1000-step limit, or the last, unfinished episode of the budget) kept separate, episode ids and
steps, and the raw MuJoCo ``qpos``/``qvel`` of s (unclipped, root x included) so that the
dynamics oracle can replay any transition exactly.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError

QUALITIES = ("random", "medium", "expert", "medium-expert")


def _resolve(domain: Any, policy: Any, seed: int):
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.policies import Policy, load_policy

    dom = get_domain(domain)
    if isinstance(policy, Policy):
        pol = policy
        if pol.robot is not None:
            pol.check_domain(dom)
        if pol.obs_dim != dom.obs_dim or pol.act_dim != dom.act_dim:
            raise ConfigError(f"policy {pol.spec!r} dims ({pol.obs_dim}, {pol.act_dim}) do not fit domain "
                              f"{dom.name!r} ({dom.obs_dim}, {dom.act_dim})")
    else:
        pol = load_policy(str(policy), dom, seed=seed)
    return dom, pol


def collect(domain: Any, policy: Any, n_transitions: int, noise: float = 0.0, seed: int = 0,
            progress: bool = True, quality: str | None = None) -> TransitionDataset:
    """Roll a policy out in a domain and return exactly ``n_transitions`` transitions.

    Args:
        domain: Domain name or :class:`~xcurate.datasets.domains.Domain`.
        policy: A :class:`~xcurate.datasets.policies.Policy` or a policy spec string.
        n_transitions: Number of transitions to collect (> 0).
        noise: Standard deviation of Gaussian noise added to each action (then clipped to the
            action box); 0 keeps the policy deterministic.
        seed: Seeds the environment resets, the action noise and the random policy.
        progress: Show a Rich progress bar.
        quality: Label stored in the metadata (random / medium / expert / medium-expert / custom).

    Returns:
        A validated :class:`TransitionDataset` with qpos/qvel and metadata (domain, quality,
        policy spec, noise, seed, env id, library versions, timing).

    Raises:
        ConfigError: bad sizes, unknown domain/policy or a policy/domain mismatch.
    """
    from xcurate.utils import library_versions

    n = int(n_transitions)
    if n <= 0:
        raise ConfigError(f"n_transitions must be positive, got {n_transitions}")
    if noise < 0 or not np.isfinite(noise):
        raise ConfigError(f"noise must be a finite number >= 0, got {noise}")
    dom, pol = _resolve(domain, policy, seed)
    env = dom.make_env()
    base = env.unwrapped
    low = np.asarray(env.action_space.low, np.float64)
    high = np.asarray(env.action_space.high, np.float64)
    data = base.data
    nq, nv = int(base.model.nq), int(base.model.nv)
    od, ad = dom.obs_dim, dom.act_dim

    obs_buf = np.empty((n, od), np.float64)
    next_buf = np.empty((n, od), np.float64)
    act_buf = np.empty((n, ad), np.float64)
    rew = np.empty(n, np.float64)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    ep_ids = np.empty(n, np.int64)
    steps = np.empty(n, np.int64)
    qpos = np.empty((n, nq), np.float64)
    qvel = np.empty((n, nv), np.float64)
    noise_rng = np.random.default_rng([seed, 1])
    act = pol._act  # the unchecked batch method: avoids per-step validation overhead
    t_arr = np.zeros(1, np.int64)

    t0 = time.perf_counter()
    bar = _progress(progress, f"collect {dom.name} ({pol.name})", n)
    try:
        obs, _ = env.reset(seed=int(seed))
        pol.reset()
        ep, t = 0, 0
        for i in range(n):
            qpos[i] = data.qpos
            qvel[i] = data.qvel
            t_arr[0] = t
            a = act(obs.reshape(1, od), t_arr)[0]  # dims were checked once in _resolve
            if noise > 0:
                a = a + noise_rng.normal(0.0, noise, size=ad)
            a = np.minimum(np.maximum(a, low), high)
            nobs, r, terminated, truncated, _ = env.step(a)
            obs_buf[i] = obs
            act_buf[i] = a
            rew[i] = r
            next_buf[i] = nobs  # the real s' (Gymnasium returns the final obs; reset comes later)
            ep_ids[i] = ep
            steps[i] = t
            term[i] = terminated
            tout[i] = truncated and not terminated
            t += 1
            if terminated or truncated:
                obs, _ = env.reset()
                pol.reset()
                ep, t = ep + 1, 0
            else:
                obs = nobs
            if bar is not None and (i + 1) % 1000 == 0:
                bar[0].update(bar[1], completed=i + 1)
        budget_cut = not (term[-1] or tout[-1])
        if budget_cut:  # the last episode was cut by the budget: a truncation, not a termination
            tout[-1] = True
    finally:
        env.close()
        if bar is not None:
            bar[0].update(bar[1], completed=n)
            bar[0].stop()
    elapsed = time.perf_counter() - t0
    ds = TransitionDataset.from_arrays(
        observations=obs_buf, actions=act_buf, rewards=rew, next_observations=next_buf,
        terminals=term, timeouts=tout, episode_ids=ep_ids, steps=steps, qpos=qpos, qvel=qvel,
        source=f"collect:{dom.name}:{pol.spec}")
    rets = ds.returns_per_episode()
    complete = rets[:-1] if budget_cut and len(rets) > 1 else rets
    ds.metadata = {
        "domain": dom.name, "robot": dom.robot, "env_id": dom.env_id, "quality": quality,
        "policy": pol.spec, "policy_name": pol.name, "policy_info": _jsonable(pol.info),
        "noise": float(noise), "seed": int(seed), "n_transitions": n, "n_episodes": int(ds.n_episodes),
        "last_episode_cut_by_budget": bool(budget_cut),
        "return_mean": float(complete.mean()), "return_std": float(complete.std()),
        "collect_seconds": round(elapsed, 3), "steps_per_second": round(n / max(elapsed, 1e-9), 1),
        "versions": library_versions(),
    }
    return ds


def evaluate(domain: Any, policy: Any, episodes: int = 5, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """Undiscounted returns of ``episodes`` full episodes (deterministic unless ``noise`` > 0)."""
    dom, pol = _resolve(domain, policy, seed)
    env = dom.make_env()
    rng = np.random.default_rng([seed, 1])
    low, high = env.action_space.low, env.action_space.high
    out = []
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=int(seed) + e)
            pol.reset()
            total, t, done = 0.0, 0, False
            while not done:
                a = pol(obs[None, :], steps=np.array([t]))[0]
                if noise > 0:
                    a = a + rng.normal(0.0, noise, size=len(a))
                obs, r, terminated, truncated, _ = env.step(np.clip(a, low, high))
                total += float(r)
                t += 1
                done = terminated or truncated
            out.append(total)
    finally:
        env.close()
    return np.asarray(out)


def _progress(enabled: bool, label: str, total: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True)
    task = prog.add_task(label, total=total)
    prog.start()
    return prog, task


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out
