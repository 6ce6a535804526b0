"""Measure J_random and J_expert in every registered domain and write references.json.

J_random: mean undiscounted return of a uniform random policy (episode e: actions from
``np.random.default_rng(seed + e)``, env reset with ``seed + e``).
J_expert: mean return of the robot's best available behaviour policy (deterministic actions;
env reset with ``seed + 1000 + e``): HalfCheetah sb3-zoo TQC, Hopper TRPO, Walker2d TQC, Ant TRPO
(``xcurate.datasets.policies.load_policy``). Policies were trained in the unshifted robots, so in
strongly shifted domains J_expert can be low (``expert_below_random`` flags J_expert <= J_random).
Episodes end on termination or at the 1000-step time limit.

Usage (from the repository root)::

    python benchmarks/measure_references.py                        # all domains, 5 random + 3 expert
    python benchmarks/measure_references.py --domains hopper hopper-friction-0.5 --merge

The output is written atomically with a manifest; with ``--merge`` existing records of other
domains are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from xcurate.datasets.domains import REFERENCES_FILE, get_domain, list_domains
from xcurate.utils import make_manifest, shared_dir, write_json_atomic

#: Expert behaviour policy per robot (relative to ../shared/policies).
EXPERTS = {
    "halfcheetah": "sb3:{root}/sb3-zoo/tqc/HalfCheetah-v3_1/HalfCheetah-v3.zip",
    "hopper": "sb3:{root}/sb3-zoo/trpo/Hopper-v3_1/Hopper-v3.zip",
    "walker2d": "sb3:{root}/sb3-zoo/tqc/Walker2d-v3_1/Walker2d-v3.zip",
    "ant": "sb3:{root}/sb3-zoo/trpo/Ant-v3_1/Ant-v3.zip",
}
#: How J_random is produced (recorded in every record, next to ``expert_policy``).
RANDOM_POLICY = "uniform random actions (episode e: np.random.default_rng(seed + e), reset seed seed + e)"
#: D4RL reference returns of the unshifted robots (REFERENCE §5), stored for comparison.
D4RL = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3),
        "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}


def run_episode(env, act, seed: int, max_steps: int = 1000) -> tuple[float, int]:
    """Return (undiscounted return, length) of one episode; ``act(obs, t) -> action``."""
    obs, _ = env.reset(seed=seed)
    total, t = 0.0, 0
    for t in range(max_steps):  # noqa: B007
        obs, r, term, trunc, _ = env.step(act(obs, t))
        total += float(r)
        if term or trunc:
            break
    return total, t + 1


def measure(name: str, random_episodes: int, expert_episodes: int, seed: int, policies_root: Path) -> dict:
    """Measure one domain's references."""
    from xcurate.datasets.policies import load_policy

    dom = get_domain(name)
    env = dom.make_env()
    t0 = time.perf_counter()
    rand, rand_len = [], []
    for e in range(random_episodes):
        rng = np.random.default_rng(seed + e)
        lo, hi = env.action_space.low, env.action_space.high
        ret, n = run_episode(env, lambda obs, t, rng=rng, lo=lo, hi=hi: rng.uniform(lo, hi), seed + e)
        rand.append(ret)
        rand_len.append(n)
    spec = EXPERTS[dom.robot].format(root=policies_root)
    pol = load_policy(spec, dom)
    exp, exp_len = [], []
    for e in range(expert_episodes):
        pol.reset()
        ret, n = run_episode(env, lambda obs, t: pol(obs[None])[0], seed + 1000 + e)
        exp.append(ret)
        exp_len.append(n)
    env.close()
    rec = {"j_random": float(np.mean(rand)), "j_random_std": float(np.std(rand)),
           "j_expert": float(np.mean(exp)), "j_expert_std": float(np.std(exp)),
           "random_episodes": random_episodes, "expert_episodes": expert_episodes,
           "random_mean_length": float(np.mean(rand_len)), "expert_mean_length": float(np.mean(exp_len)),
           "random_policy": RANDOM_POLICY,
           "expert_policy": spec.replace(str(policies_root), "shared/policies"),
           "expert_below_random": bool(np.mean(exp) <= np.mean(rand)),
           "seconds": round(time.perf_counter() - t0, 2)}
    if not dom.is_shifted:
        rec["d4rl"] = list(D4RL[dom.robot])
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", nargs="*", default=None, help="domain names (default: all)")
    ap.add_argument("--random-episodes", type=int, default=5)
    ap.add_argument("--expert-episodes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REFERENCES_FILE)
    ap.add_argument("--merge", action="store_true", help="keep existing records of other domains")
    args = ap.parse_args(argv)
    sd = shared_dir()
    if sd is None:
        print("error: ../shared (behaviour policies) not found", file=sys.stderr)
        return 1
    root = Path(sd) / "policies"
    names = args.domains or [d.name for d in list_domains()]
    old = json.loads(args.out.read_text()).get("domains", {}) if (args.merge and args.out.exists()) else {}
    records = dict(old)
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        records[name] = measure(name, args.random_episodes, args.expert_episodes, args.seed, root)
        r = records[name]
        print(f"[{i + 1}/{len(names)}] {name:36s} J_random {r['j_random']:9.1f}  J_expert {r['j_expert']:9.1f} "
              f"({r['seconds']:.1f} s)", flush=True)
        out = {"domains": dict(sorted(records.items())),
               "manifest": make_manifest("references", config={
                   "random_episodes": args.random_episodes, "expert_episodes": args.expert_episodes,
                   "deterministic_expert": True, "random_policy": RANDOM_POLICY, "experts": {k: v.format(root="shared/policies")
                                                             for k, v in EXPERTS.items()}},
                   seed=args.seed, timings={"seconds": round(time.perf_counter() - t0, 1)})}
        write_json_atomic(args.out, out)  # after every domain: partial progress survives
    print(f"wrote {args.out} ({len(records)} domains, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
