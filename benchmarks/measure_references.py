"""Measure J_random and J_expert in every registered domain and write references.json.

J_random: mean undiscounted return of a uniform random policy (episode e: actions from
``np.random.default_rng(seed + e)``, env reset with ``seed + e``).
J_expert: mean return of the robot's best available behaviour policy (deterministic actions;
env reset with ``seed + 1000 + e``): HalfCheetah sb3-zoo TQC, Hopper TRPO, Walker2d TQC, Ant TRPO
(``xcurate.datasets.policies.load_policy``). Policies were trained in the unshifted robots, so in
strongly shifted domains J_expert can be low (``expert_below_random`` flags J_expert <= J_random).
Episodes end on termination or at the 1000-step time limit.

``--expert best`` measures J_expert in-domain instead: every sb3-zoo agent of the robot
(``../shared/policies/sb3-zoo/*/<Env>-v3_1/*.zip``: A2C, ARS, PPO, SAC, TQC, TRPO) and every
``--candidate`` spec (for example ``trained:DIR``, a policy trained *in* the domain by
``xcurate policies train``) runs its episodes in the domain, and the best mean return is J_expert.
The record names the winner (``expert_policy``) and every candidate's mean (``expert_candidates``).
This is the closest to the papers' in-domain experts that needs no training: the source-trained
default expert falls within ~80 steps in hopper-gravity-0.5 (J_expert 128.5), where another zoo
agent keeps walking.

Usage (from the repository root)::

    python benchmarks/measure_references.py                        # all domains, 5 random + 3 expert
    python benchmarks/measure_references.py --domains hopper hopper-friction-0.5 --merge
    python benchmarks/measure_references.py --expert best --merge --weak   # re-measure weak experts

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


#: sb3-zoo environment id per robot (the folder names under ``sb3-zoo/<algo>/``).
ZOO_ENV = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d", "ant": "Ant"}


def zoo_candidates(robot: str, policies_root: Path) -> list[str]:
    """Every sb3-zoo agent of ``robot`` under ``policies_root`` as ``sb3:`` specs, sorted."""
    env = ZOO_ENV[robot]
    return [f"sb3:{p}" for p in sorted(policies_root.glob(f"sb3-zoo/*/{env}-v3_1/{env}-v3.zip"))]


def expert_returns(env, pol, episodes: int, seed: int) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``episodes`` deterministic episodes (reset seeds ``seed + 1000 + e``)."""
    rets, lens = [], []
    for e in range(episodes):
        pol.reset()
        ret, n = run_episode(env, lambda obs, t: pol(obs[None])[0], seed + 1000 + e)
        rets.append(ret)
        lens.append(n)
    return rets, lens


def measure(name: str, random_episodes: int, expert_episodes: int, seed: int, policies_root: Path,
            expert: str = "default", candidates: list[str] | None = None) -> dict:
    """Measure one domain's references.

    ``expert="default"`` uses :data:`EXPERTS`; ``"best"`` the best of :func:`zoo_candidates` and
    ``candidates`` (policies whose dims do not fit the domain are skipped).
    """
    from xcurate.datasets.policies import load_policy
    from xcurate.errors import ConfigError

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
    means: dict[str, float] = {}
    if expert == "best":
        best = None
        for spec in [*zoo_candidates(dom.robot, policies_root), *(candidates or [])]:
            try:
                pol = load_policy(spec, dom)
            except ConfigError:  # another robot's trained policy, or a missing file
                continue
            rets, lens = expert_returns(env, pol, expert_episodes, seed)
            means[spec.replace(str(policies_root), "shared/policies")] = round(float(np.mean(rets)), 2)
            if best is None or np.mean(rets) > np.mean(best[1]):
                best = (spec, rets, lens)
        if best is None:
            raise SystemExit(f"error: no expert candidate fits {name}")
        spec, exp, exp_len = best
    else:
        spec = EXPERTS[dom.robot].format(root=policies_root)
        exp, exp_len = expert_returns(env, load_policy(spec, dom), expert_episodes, seed)
    env.close()
    rec = {"j_random": float(np.mean(rand)), "j_random_std": float(np.std(rand)),
           "j_expert": float(np.mean(exp)), "j_expert_std": float(np.std(exp)),
           "random_episodes": random_episodes, "expert_episodes": expert_episodes,
           "random_mean_length": float(np.mean(rand_len)), "expert_mean_length": float(np.mean(exp_len)),
           "random_policy": RANDOM_POLICY,
           "expert_policy": spec.replace(str(policies_root), "shared/policies"),
           "expert_below_random": bool(np.mean(exp) <= np.mean(rand)),
           "expert_choice": "best of candidates, in-domain" if expert == "best" else "default (source-trained)",
           "seconds": round(time.perf_counter() - t0, 2)}
    if means:
        rec["expert_candidates"] = means
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
    ap.add_argument("--expert", choices=["default", "best"], default="default",
                    help="default: the robot's source-trained expert; best: best of all zoo agents + --candidate")
    ap.add_argument("--candidate", action="append", default=[],
                    help="extra expert candidate policy spec for --expert best (repeatable), e.g. trained:DIR")
    ap.add_argument("--weak", action="store_true",
                    help="only domains whose recorded expert ends episodes early (mean length < 900) or is "
                         "below random")
    args = ap.parse_args(argv)
    sd = shared_dir()
    if sd is None:
        print("error: ../shared (behaviour policies) not found", file=sys.stderr)
        return 1
    root = Path(sd) / "policies"
    names = args.domains or [d.name for d in list_domains()]
    old = json.loads(args.out.read_text()).get("domains", {}) if (args.merge and args.out.exists()) else {}
    if args.weak:
        names = [n for n in names if n not in old or old[n]["expert_mean_length"] < 900
                 or old[n]["expert_below_random"]]
    records = dict(old)
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        records[name] = measure(name, args.random_episodes, args.expert_episodes, args.seed, root,
                                expert=args.expert, candidates=args.candidate)
        r = records[name]
        print(f"[{i + 1}/{len(names)}] {name:36s} J_random {r['j_random']:9.1f}  J_expert {r['j_expert']:9.1f} "
              f"({r['seconds']:.1f} s)", flush=True)
        out = {"domains": dict(sorted(records.items())),
               "manifest": make_manifest("references", config={
                   "random_episodes": args.random_episodes, "expert_episodes": args.expert_episodes,
                   "expert": args.expert, "candidates": args.candidate,
                   "deterministic_expert": True, "random_policy": RANDOM_POLICY, "experts": {k: v.format(root="shared/policies")
                                                             for k, v in EXPERTS.items()}},
                   seed=args.seed, timings={"seconds": round(time.perf_counter() - t0, 1)})}
        write_json_atomic(args.out, out)  # after every domain: partial progress survives
    print(f"wrote {args.out} ({len(records)} domains, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
