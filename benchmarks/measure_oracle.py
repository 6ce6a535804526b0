"""Oracle replay: speed vs env.step, exactness, and what friction < 1 does.

For each robot: collect N random-action transitions with ``env.step`` (qpos/qvel stored, episodes
cut at 200 steps), then

1. time ``env.step`` on the same actions vs :func:`xcurate.datasets.oracle.replay` (raw mj_step
   loop over one MjData), and check that same-domain replay reproduces next observations and
   rewards (max abs error);
2. mean oracle dynamics gap ||s' - s'_tar|| of this data in ``friction-0.1`` / ``friction-0.5``,
   both as registered (every geom incl. the floor scaled) and with the floor left unscaled
   (ODRL's robot-only scaling, where MuJoCo's max() contact rule can hide the shift);
3. the gap for one domain of every other family.

Usage::

    python benchmarks/measure_oracle.py --n 3000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import mujoco
import numpy as np

from xcurate.datasets.domains import ROBOTS, Domain, get_domain
from xcurate.datasets.oracle import oracle_gap, replay
from xcurate.datasets.transitions import TransitionDataset


def collect(name: str, n: int, seed: int = 0, max_ep: int = 200) -> tuple[TransitionDataset, float]:
    """Random-action data with env.step (qpos/qvel of s per row); returns (data, env.step seconds)."""
    d = get_domain(name)
    env = d.make_env()
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1, 1, (n, d.act_dim))
    cols: dict[str, list] = {k: [] for k in ("o", "r", "o2", "term", "tout", "ep", "t", "qpos", "qvel")}
    obs, _ = env.reset(seed=seed)
    ep = t = 0
    step_s = 0.0
    for i in range(n):
        cols["qpos"].append(u.data.qpos.copy())
        cols["qvel"].append(u.data.qvel.copy())
        t0 = time.perf_counter()
        nxt, r, term, trunc, _ = env.step(acts[i])
        step_s += time.perf_counter() - t0
        trunc = trunc or t + 1 >= max_ep
        for k, v in zip(("o", "r", "o2", "term", "tout", "ep", "t"), (obs, r, nxt, term, trunc and not term, ep, t),
                        strict=True):
            cols[k].append(v)
        obs, t = nxt, t + 1
        if term or trunc:
            obs, _ = env.reset()
            ep, t = ep + 1, 0
    A = {k: np.array(v) for k, v in cols.items()}
    ds = TransitionDataset.from_arrays(A["o"], acts, A["r"], A["o2"], A["term"], A["tout"], A["ep"], A["t"],
                                       qpos=A["qpos"], qvel=A["qvel"], metadata={"domain": name})
    return ds, step_s


def robot_only_friction(robot: str, f: float) -> Domain:
    """Friction x f on the robot only (the floor keeps its source friction): ODRL's variant."""
    src = get_domain(robot).make_model()
    floor = mujoco.mj_name2id(src, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    keep = float(src.geom_friction[floor, 0])
    return Domain(name=f"{robot}-robotonly-friction-{f}", robot=robot, family="friction", level=str(f),
                  edits=(("friction", f), ("set_vec", "geom", "floor", "friction", 0, keep)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args(argv)
    print("| robot | env.step rows/s | replay rows/s | speed-up | max err s' | max err r | "
          "gap fr-0.1 all | gap fr-0.1 robot-only | gap fr-0.5 all | gap fr-0.5 robot-only |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    others = {}
    for robot in ROBOTS:
        ds, step_s = collect(robot, args.n)
        res = replay(robot, ds)
        es = np.abs(res.next_observations - ds.next_observations).max()
        er = np.abs(res.rewards - ds.rewards).max()
        gaps = []
        for f in (0.1, 0.5):
            gaps.append(np.nanmean(oracle_gap(f"{robot}-friction-{f}", ds)))
            gaps.append(np.nanmean(oracle_gap(robot_only_friction(robot, f), ds)))
        print(f"| {robot} | {len(ds) / step_s:,.0f} | {len(ds) / res.seconds:,.0f} | {step_s / res.seconds:.2f}x "
              f"| {es:.1e} | {er:.1e} | " + " | ".join(f"{g:.4f}" for g in gaps) + " |", flush=True)
        others[robot] = {name: float(np.nanmean(oracle_gap(name, ds))) for name in (
            f"{robot}-gravity-0.5", f"{robot}-gravity-2.0", f"{robot}-kinematic-otdf", f"{robot}-morph-otdf",
            next(d for d in (f"{robot}-kinematic-footjnt-hard", f"{robot}-kinematic-anklejnt-hard")
                 if _exists(d)))}
        bare = dataclasses.replace(ds, qpos=None, qvel=None)
        rb = replay(robot, bare)
        others[robot]["obs-only replay valid fraction"] = float(rb.valid.mean())
    print()
    for robot, g in others.items():
        print(f"- {robot}: " + ", ".join(f"{k} {v:.4f}" for k, v in g.items()))
    return 0


def _exists(name: str) -> bool:
    try:
        get_domain(name)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
