"""Oracle replay: the ground-truth target outcome of every source transition.

For each source transition (s, a, r, s'), the target simulator is put into state s, action a
is applied for one environment step (``frame_skip`` MuJoCo steps with ``mujoco.rollout``, or raw
``mujoco.mj_step`` on one reused ``MjData`` for Ant; never ``env.step``), and the target reward r_tar, next observation s'_tar and
``terminated`` flag are read. The reward is Gymnasium v5's reward for the robot, re-implemented
on the raw simulator state (hand-written on purpose: Gymnasium exposes it only through
``env.step``, which cannot be batched or put into an arbitrary state cheaply):

- HalfCheetah: ``(x' - x)/dt - 0.1 |a|^2``.
- Hopper: ``(x' - x)/dt + healthy - 1e-3 |a|^2``; healthy: z > 0.7, |angle| < 0.2 and
  ``qpos[2:], qvel`` inside (-100, 100); ``terminated = not healthy``.
- Walker2d: same with 0.8 < z < 2.0 and |angle| < 1.
- Ant: ``(x'_torso - x_torso)/dt + healthy - 0.5 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2`` with
  healthy 0.2 <= z <= 1 and a finite state. Gymnasium reads the torso position from
  ``data.xpos``, which after an RK4 ``mj_step`` is the last Runge-Kutta stage, not ``qpos``: the
  "before" position of a step is the lagging value left by the *previous* step. The oracle
  rebuilds it by re-simulating the previous row of the same episode in the domain the data came
  from (``source_domain``, else ``dataset.metadata["domain"]``, else the unshifted robot, then the
  target itself), accepting it only where that reproduces the row's state to 1e-6. Rows where
  this is impossible (first stored row of a partial episode, unknown source) use the fresh
  ``qpos`` value (exact at step 0 after a reset) and get ``reward_exact=False``.

Initial states: raw ``qpos``/``qvel`` when the dataset stores them (exact; with
``extras["qacc_warmstart"]`` bit-exact; without it the solver warm start is guessed from the
previous row's action, see :func:`_warmstart_guess`). Otherwise from the observation, where that is exact:
HalfCheetah obs = qpos[1:] + qvel, Ant (27-dim) obs = qpos[2:] + qvel, with root x (and y) = 0,
which is exact on a flat floor. Hopper and Walker2d clip qvel to +/-10 in the observation: rows
with a clipped velocity cannot be replayed and are returned ``valid=False`` with a reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xcurate.datasets.domains import Domain, get_domain
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError

#: Number of root position coordinates excluded from the observation, per robot.
ROOT_DIMS = {"halfcheetah": 1, "hopper": 1, "walker2d": 1, "ant": 2}
#: Robots whose observation clips qvel to +/-10.
CLIPPED_QVEL = {"hopper", "walker2d"}
#: Gymnasium v5 reward constants per robot (defaults of the v5 constructors).
REWARD_PARAMS: dict[str, dict[str, Any]] = {
    "halfcheetah": {"forward": 1.0, "ctrl": 0.1},
    "hopper": {"forward": 1.0, "ctrl": 1e-3, "healthy": 1.0, "z": (0.7, np.inf), "angle": (-0.2, 0.2),
               "state": (-100.0, 100.0)},
    "walker2d": {"forward": 1.0, "ctrl": 1e-3, "healthy": 1.0, "z": (0.8, 2.0), "angle": (-1.0, 1.0)},
    "ant": {"forward": 1.0, "ctrl": 0.5, "healthy": 1.0, "z": (0.2, 1.0), "contact": 5e-4,
            "contact_range": (-1.0, 1.0)},
}
_ANT_MAIN_BODY = 1
_MATCH_TOL = 1e-6


@dataclass
class ReplayResult:
    """Outcome of replaying a dataset's (s, a) in a target domain.

    Attributes:
        domain: the target domain's name.
        rewards: (N,) Gymnasium v5 reward r_tar (NaN where not valid).
        next_observations: (N, obs_dim) s'_tar (NaN where not valid).
        terminals: (N,) bool, Gymnasium's ``terminated`` after the step (False where not valid).
        valid: (N,) bool, False where the row could not be replayed.
        reason: (N,) str, why a row is not valid ("" where valid).
        reward_exact: (N,) bool, False where the reward used an approximation (Ant rows whose
            lagging "before" position could not be rebuilt; see the module docstring).
        next_qpos: (N, nq) raw positions after the step (root x/y relative to the replayed start).
        next_qvel: (N, nv) raw velocities after the step.
        seconds: wall-clock time of the replay.
        info: extra facts (initial-state source, source domain used for Ant, ...).
    """

    domain: str
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    reward_exact: np.ndarray
    next_qpos: np.ndarray
    next_qvel: np.ndarray
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def reason_counts(self) -> dict[str, int]:
        """Number of invalid rows per reason."""
        vals, counts = np.unique(self.reason[~self.valid], return_counts=True)
        return {str(v): int(c) for v, c in zip(vals, counts, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Counts and timing as a JSON-friendly dict."""
        n = len(self)
        return {"domain": self.domain, "n": n, "valid": int(self.valid.sum()),
                "reward_exact": int(self.reward_exact.sum()), "invalid_reasons": self.reason_counts(),
                "seconds": round(self.seconds, 4), "rows_per_s": round(n / max(self.seconds, 1e-9), 1),
                **self.info}


# ------------------------------------------------------------------------------------------ state
def observation_from_state(robot: str, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Gymnasium v5's observation of (N, nq) ``qpos`` and (N, nv) ``qvel`` (Ant: 27 dims)."""
    k = ROOT_DIMS[robot]
    vel = np.clip(qvel, -10.0, 10.0) if robot in CLIPPED_QVEL else qvel
    return np.concatenate([qpos[:, k:], vel], axis=1)


def initial_states(domain: str | Domain, dataset: TransitionDataset
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Simulator states of the dataset's observations.

    Returns:
        (qpos (N, nq), qvel (N, nv), valid (N,) bool, reason (N,) str, how) where ``how`` is
        ``"qpos/qvel"`` or ``"observations"``.
    """
    dom = get_domain(domain)
    model = dom.make_model()
    nq, nv, n = model.nq, model.nv, len(dataset)
    reason = np.full(n, "", dtype=object)
    if dataset.has_state:
        qpos = np.asarray(dataset.qpos, dtype=np.float64)
        qvel = np.asarray(dataset.qvel, dtype=np.float64)
        if qpos.shape != (n, nq) or qvel.shape != (n, nv):
            raise DataError(f"{dataset.source}: qpos/qvel shapes {qpos.shape}/{qvel.shape} do not match "
                            f"domain {dom.name!r} (expected ({n}, {nq})/({n}, {nv}))")
        how = "qpos/qvel"
    else:
        k = ROOT_DIMS[dom.robot]
        obs = np.asarray(dataset.observations, dtype=np.float64)
        qpos = np.zeros((n, nq))
        qpos[:, k:] = obs[:, : nq - k]
        qvel = obs[:, nq - k: nq - k + nv].copy()
        how = "observations"
        if dom.robot in CLIPPED_QVEL:
            clipped = (np.abs(qvel) >= 10.0).any(axis=1)
            reason[clipped] = "qvel clipped at +/-10 in the observation (store raw qpos/qvel to replay)"
    bad = ~(np.isfinite(qpos).all(1) & np.isfinite(qvel).all(1))
    reason[bad & (reason == "")] = "non-finite state"
    bad_a = ~np.isfinite(np.asarray(dataset.actions, dtype=np.float64)).all(1)
    reason[bad_a & (reason == "")] = "non-finite action"
    return qpos, qvel, reason == "", reason, how


def _simulate(model, frame_skip: int, qpos0: np.ndarray, qvel0: np.ndarray, actions: np.ndarray,
              rows: np.ndarray, warmstart: np.ndarray | None = None, ant: bool = False,
              progress: Callable[[int], None] | None = None, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Step ``rows`` one environment step each; return the raw outcome arrays (NaN elsewhere)."""
    import mujoco

    n = len(qpos0)
    data = mujoco.MjData(model)
    out = {"qpos": np.full((n, model.nq), np.nan), "qvel": np.full((n, model.nv), np.nan)}
    if ant:
        out["xy_after"] = np.full((n, 2), np.nan)
        out["contact_sq"] = np.full(n, np.nan)
    lo, hi = REWARD_PARAMS["ant"]["contact_range"]
    for start in range(0, len(rows), chunk):
        for i in rows[start:start + chunk]:
            data.qpos[:] = qpos0[i]
            data.qvel[:] = qvel0[i]
            data.qacc_warmstart[:] = 0.0 if warmstart is None else warmstart[i]
            data.ctrl[:] = actions[i]
            mujoco.mj_step(model, data, nstep=frame_skip)
            out["qpos"][i] = data.qpos
            out["qvel"][i] = data.qvel
            if ant:
                mujoco.mj_rnePostConstraint(model, data)
                out["xy_after"][i] = data.xpos[_ANT_MAIN_BODY, :2]
                out["contact_sq"][i] = np.sum(np.square(np.clip(data.cfrc_ext, lo, hi)))
        if progress is not None:
            progress(min(start + chunk, len(rows)))
    return out


def _simulate_rollout(model, frame_skip: int, qpos0: np.ndarray, qvel0: np.ndarray, actions: np.ndarray,
                      rows: np.ndarray, warmstart: np.ndarray | None = None,
                      progress: Callable[[int], None] | None = None, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Same as :func:`_simulate` (without the Ant extras) with ``mujoco.rollout``: the loop runs in C."""
    import mujoco
    from mujoco import rollout

    n, nq, nv = len(qpos0), model.nq, model.nv
    data = mujoco.MjData(model)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    base = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, base, spec)  # layout: time, qpos, qvel, ... (act etc. empty here)
    out = {"qpos": np.full((n, nq), np.nan), "qvel": np.full((n, nv), np.nan)}
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        init = np.tile(base, (len(r), 1))
        init[:, 1:1 + nq] = qpos0[r]
        init[:, 1 + nq:1 + nq + nv] = qvel0[r]
        ctrl = np.repeat(actions[r][:, None, :], frame_skip, axis=1)
        ws = np.zeros((len(r), nv)) if warmstart is None else np.asarray(warmstart[r], dtype=np.float64)
        state, _ = rollout.rollout(model, data, init, ctrl, initial_warmstart=ws)
        out["qpos"][r] = state[:, -1, 1:1 + nq]
        out["qvel"][r] = state[:, -1, 1 + nq:1 + nq + nv]
        if progress is not None:
            progress(min(start + chunk, len(rows)))
    return out


def _warmstart_guess(model, qpos0: np.ndarray, qvel0: np.ndarray, actions: np.ndarray, prev: np.ndarray,
                     rows: np.ndarray) -> np.ndarray:
    """A guess of the solver warm start Gymnasium had at each row (when it was not stored).

    ``env.step`` starts MuJoCo's constraint solver from the accelerations of the previous step
    (zero right after a reset). Without the stored ``qacc_warmstart``, the accelerations at s under
    the previous row's action are a close guess; the solver then lands within ~1e-10 of the
    env.step result instead of ~1e-7 from a zero start (measured on Walker2d, 3000 rows).
    """
    import mujoco

    data = mujoco.MjData(model)
    ws = np.zeros((len(qpos0), model.nv))
    for i in rows:
        if prev[i] < 0:
            continue
        data.qpos[:] = qpos0[i]
        data.qvel[:] = qvel0[i]
        data.ctrl[:] = actions[prev[i]]
        data.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(model, data)
        ws[i] = data.qacc
    return ws


def _previous_rows(dataset: TransitionDataset) -> np.ndarray:
    """Index of the previous step of the same episode for each row (-1 where none is stored)."""
    n = len(dataset)
    prev = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return prev
    # rows need not be sorted: look (episode, step - 1) up among all (episode, step) pairs
    ep = np.asarray(dataset.episode_ids, dtype=np.int64)
    st = np.asarray(dataset.steps, dtype=np.int64)
    order = np.lexsort((st, ep))
    se, ss = ep[order], st[order]
    # binary search on the lexicographically sorted (episode, step) records
    keys = np.rec.fromarrays([se, ss], names="e,s")
    want = np.rec.fromarrays([ep, st - 1], names="e,s")
    idx = np.searchsorted(keys, want)
    idx_c = np.clip(idx, 0, n - 1)
    hit = (idx < n) & (se[idx_c] == ep) & (ss[idx_c] == st - 1)
    prev[hit] = order[idx_c[hit]]
    return prev


def _ant_x_before(dataset: TransitionDataset, target: Domain, qpos0: np.ndarray, qvel0: np.ndarray,
                  valid: np.ndarray, warmstart: np.ndarray | None,
                  source_domain: str | Domain | None,
                  target_out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str]:
    """Gymnasium Ant's lagging torso x before each step, and where it is exact."""
    x_before = qpos0[:, 0].copy()
    exact = dataset.steps == 0
    prev = _previous_rows(dataset)
    todo = np.flatnonzero((prev >= 0) & valid & ~exact)
    todo = todo[valid[prev[todo]]]
    cands: list[Domain] = []
    named = source_domain if source_domain is not None else dataset.metadata.get("domain")
    if named is not None:
        try:
            cands.append(get_domain(named))
        except ConfigError:
            if source_domain is not None:
                raise
    for d in (target.source, target):
        if d not in cands:
            cands.append(d)
    used = []
    actions = np.asarray(dataset.actions, dtype=np.float64)
    for dom in cands:
        if len(todo) == 0:
            break
        p = prev[todo]
        out = target_out if dom == target else _simulate(dom.make_model(), dom.frame_skip, qpos0, qvel0,
                                                         actions, p, warmstart, ant=True)
        err = np.maximum(np.abs(out["qpos"][p, 2:] - qpos0[todo, 2:]).max(1),
                         np.abs(out["qvel"][p] - qvel0[todo]).max(1))
        ok = err < _MATCH_TOL
        if ok.any():
            used.append(dom.name)
        rows, prows = todo[ok], p[ok]
        x_before[rows] = qpos0[rows, 0] + (out["xy_after"][prows, 0] - out["qpos"][prows, 0])
        exact[rows] = True
        todo = todo[~ok]
    return x_before, exact, ",".join(used)


# ----------------------------------------------------------------------------------------- replay
def replay(domain: str | Domain, dataset: TransitionDataset, chunk: int = 4096,
           source_domain: str | Domain | None = None,
           progress: Callable[[int, int], None] | None = None, use_rollout: bool = True) -> ReplayResult:
    """Replay every (s, a) of ``dataset`` in ``domain``'s simulator (one env step each).

    Args:
        domain: the target domain (name or :class:`Domain`).
        dataset: source transitions; raw ``qpos``/``qvel`` are used when present.
        chunk: rows per progress report.
        source_domain: the domain the data was collected in (Ant only: used to rebuild
            Gymnasium's lagging torso position; defaults to ``dataset.metadata["domain"]``).
        progress: optional callback ``progress(done, total)``.
        use_rollout: step with ``mujoco.rollout`` (C loop; HalfCheetah, Hopper, Walker2d) instead of
            an ``mj_step`` loop. Both give identical results; Ant always uses the loop because its
            reward needs ``cfrc_ext`` and the torso ``xpos`` after the step.

    Returns:
        A :class:`ReplayResult`.

    Raises:
        DataError: when the dataset's dimensions do not match the domain.
    """
    t0 = time.perf_counter()
    dom = get_domain(domain)
    if dataset.obs_dim != dom.obs_dim or dataset.act_dim != dom.act_dim:
        raise DataError(f"{dataset.source}: obs/act dims ({dataset.obs_dim}, {dataset.act_dim}) do not match "
                        f"domain {dom.name!r} ({dom.obs_dim}, {dom.act_dim})")
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    model = dom.make_model()
    qpos0, qvel0, valid, reason, how = initial_states(dom, dataset)
    ws = dataset.extras.get("qacc_warmstart") if dataset.has_state else None
    if ws is not None and np.shape(ws) != (len(dataset), model.nv):
        ws = None
    actions = np.asarray(dataset.actions, dtype=np.float64)
    rows = np.flatnonzero(valid)
    ws_how = "stored"
    if ws is None:
        ws = _warmstart_guess(model, qpos0, qvel0, actions, _previous_rows(dataset), rows)
        ws_how = "guessed (previous action)"
    cb = None if progress is None else (lambda done: progress(done, len(rows)))
    ant = dom.robot == "ant"
    if ant or not use_rollout:
        out = _simulate(model, dom.frame_skip, qpos0, qvel0, actions, rows, ws, ant=ant, progress=cb, chunk=chunk)
    else:
        out = _simulate_rollout(model, dom.frame_skip, qpos0, qvel0, actions, rows, ws, progress=cb, chunk=chunk)

    dt = float(model.opt.timestep) * dom.frame_skip
    p = REWARD_PARAMS[dom.robot]
    qpos1, qvel1 = out["qpos"], out["qvel"]
    ctrl_cost = p["ctrl"] * np.sum(np.square(actions), axis=1)
    reward_exact = valid.copy()
    info: dict[str, Any] = {"initial_state": how, "warmstart": ws_how}
    with np.errstate(invalid="ignore"):
        if ant:
            lag = dataset.extras.get("ant_x_lag")
            if lag is not None and np.shape(lag) == (len(dataset),):
                lag = np.asarray(lag, dtype=np.float64)
                x_before, exact, used = qpos0[:, 0] + np.nan_to_num(lag), np.isfinite(lag), "extras[ant_x_lag]"
            else:
                x_before, exact, used = _ant_x_before(dataset, dom, qpos0, qvel0, valid, ws, source_domain, out)
            reward_exact &= exact
            info["ant_before_from"] = used
            forward = p["forward"] * (out["xy_after"][:, 0] - x_before) / dt
            state = np.concatenate([qpos1, qvel1], axis=1)
            z = qpos1[:, 2]
            healthy = np.isfinite(state).all(1) & (p["z"][0] <= z) & (z <= p["z"][1])
            rewards = forward + p["healthy"] * healthy - ctrl_cost - p["contact"] * out["contact_sq"]
        else:
            forward = p["forward"] * (qpos1[:, 0] - qpos0[:, 0]) / dt
            if dom.robot == "halfcheetah":
                healthy = np.ones(len(dataset), bool)
                rewards = forward - ctrl_cost
            else:
                z, angle = qpos1[:, 1], qpos1[:, 2]
                healthy = (p["z"][0] < z) & (z < p["z"][1]) & (p["angle"][0] < angle) & (angle < p["angle"][1])
                if "state" in p:
                    st = np.concatenate([qpos1, qvel1], axis=1)[:, 2:]
                    healthy &= ((p["state"][0] < st) & (st < p["state"][1])).all(1)
                rewards = forward + p["healthy"] * healthy - ctrl_cost
    terminals = ~healthy & valid if dom.robot != "halfcheetah" else np.zeros(len(dataset), bool)
    rewards = np.where(valid, rewards, np.nan)
    next_obs = observation_from_state(dom.robot, qpos1, qvel1)
    return ReplayResult(domain=dom.name, rewards=rewards, next_observations=next_obs, terminals=terminals,
                        valid=valid, reason=reason, reward_exact=reward_exact, next_qpos=qpos1,
                        next_qvel=qvel1, seconds=time.perf_counter() - t0, info=info)


def ant_x_lag(dataset: TransitionDataset, source_domain: str | Domain | None = None) -> np.ndarray:
    """Gymnasium Ant's lagging torso x minus ``qpos[0]`` at each row's state s (NaN where unknown).

    It depends only on the source data, so it can be computed once and stored as
    ``dataset.extras["ant_x_lag"]``; :func:`replay` then skips re-simulating previous rows for
    every target domain (Ant replay about twice as fast).

    Args:
        dataset: Ant transitions.
        source_domain: the domain the data was collected in (default: ``metadata["domain"]``,
            else the unshifted Ant).
    """
    src = get_domain(source_domain if source_domain is not None else dataset.metadata.get("domain", "ant"))
    if src.robot != "ant":
        raise ConfigError(f"ant_x_lag needs an Ant domain, got {src.name!r}")
    qpos0, qvel0, valid, _, _ = initial_states(src, dataset)
    model = src.make_model()
    actions = np.asarray(dataset.actions, dtype=np.float64)
    prev = _previous_rows(dataset)
    ws = dataset.extras.get("qacc_warmstart") if dataset.has_state else None
    if ws is None or np.shape(ws) != (len(dataset), model.nv):
        ws = _warmstart_guess(model, qpos0, qvel0, actions, prev, np.flatnonzero(valid))
    out = _simulate(model, src.frame_skip, qpos0, qvel0, actions, np.flatnonzero(valid), ws, ant=True)
    x_before, exact, _ = _ant_x_before(dataset, src, qpos0, qvel0, valid, ws, src, out)
    return np.where(exact, x_before - qpos0[:, 0], np.nan)


# ------------------------------------------------------------------------------------------- gaps
def oracle_gap(domain: str | Domain, dataset: TransitionDataset, result: ReplayResult | None = None,
               **replay_kwargs: Any) -> np.ndarray:
    """Oracle dynamics gap ``||s' - s'_tar||_2`` per transition (NaN where not replayable).

    Lower = the source transition is closer to what the target would do (more useful).
    Observations are compared as stored (Hopper/Walker2d: clipped velocities on both sides).
    """
    res = result if result is not None else replay(domain, dataset, **replay_kwargs)
    gap = np.linalg.norm(np.asarray(dataset.next_observations, dtype=np.float64) - res.next_observations, axis=1)
    return np.where(res.valid, gap, np.nan)


def oracle_reward_gap(domain: str | Domain, dataset: TransitionDataset, result: ReplayResult | None = None,
                      **replay_kwargs: Any) -> np.ndarray:
    """``|r - r_tar|`` per transition (NaN where not replayable)."""
    res = result if result is not None else replay(domain, dataset, **replay_kwargs)
    return np.where(res.valid, np.abs(np.asarray(dataset.rewards, dtype=np.float64) - res.rewards), np.nan)


def oracle_bellman_error(domain: str | Domain, dataset: TransitionDataset,
                         value_fn: Callable[[np.ndarray], np.ndarray], gamma: float = 0.99,
                         result: ReplayResult | None = None, **replay_kwargs: Any) -> np.ndarray:
    """Oracle Bellman error ``|r + g(1-d) V(s') - (r_tar + g(1-d_tar) V(s'_tar))|`` for a fixed V.

    Args:
        value_fn: maps (B, obs_dim) observations to (B,) values (a fixed reference V).
        gamma: discount.

    Returns:
        (N,) errors, NaN where not replayable. Lower = more useful for the target.
    """
    res = result if result is not None else replay(domain, dataset, **replay_kwargs)
    ok = res.valid
    nxt_tar = np.where(ok[:, None], res.next_observations, 0.0)
    v_src = np.asarray(value_fn(np.asarray(dataset.next_observations)), dtype=np.float64).reshape(-1)
    v_tar = np.asarray(value_fn(nxt_tar), dtype=np.float64).reshape(-1)
    if v_src.shape != (len(dataset),) or v_tar.shape != (len(dataset),):
        raise ConfigError(f"value_fn must return one value per row, got shape {v_src.shape}")
    y_src = np.asarray(dataset.rewards, dtype=np.float64) + gamma * (1.0 - dataset.terminals) * v_src
    y_tar = res.rewards + gamma * (1.0 - res.terminals) * v_tar
    return np.where(ok, np.abs(y_src - y_tar), np.nan)
