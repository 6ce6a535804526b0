"""Collection rate of ``xcurate.datasets.collect`` vs raw Gymnasium stepping, per robot.

Usage:

    python benchmarks/bench_collect.py --steps 20000

For each robot: (1) raw ``env.step`` with uniform random actions (the wrapped Gymnasium v5 env,
resets included, nothing stored), (2) ``collect()`` with the random policy, (3) ``collect()`` with
the expert behaviour policy of the suite (zoo agent if ../shared exists, else builtin). Prints a
Markdown table (steps/s and the ratio to raw). Rates are per second of *process CPU time*
(``time.process_time``) as well as wall time: on a shared, oversubscribed machine the wall-clock
rate mostly measures the other processes, the CPU-time rate measures our code.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xcurate.datasets.collect import collect
from xcurate.datasets.domains import get_domain
from xcurate.datasets.suite import ROBOTS, policy_for


def raw_rate(robot: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """(CPU, wall) steps/s of the plain Gymnasium env with uniform random actions."""
    env = get_domain(robot).make_env()
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(low, high))
        if term or trunc:
            env.reset()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    env.close()
    return steps / dc, steps / dt


def collect_rate(robot: str, spec: str, steps: int) -> tuple[float, float]:
    """(CPU, wall) steps/s of ``collect()`` (environment creation included; the policy is loaded
    beforehand, since loading a zoo agent imports torch once: ~2 s, reported separately)."""
    from xcurate.datasets.policies import load_policy

    policy = load_policy(spec, robot)
    t0, c0 = time.perf_counter(), time.process_time()
    collect(robot, policy, steps, progress=False)
    return steps / (time.process_time() - c0), steps / (time.perf_counter() - t0)


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--robots", nargs="*", default=list(ROBOTS))
    args = ap.parse_args()
    rows = []
    for robot in args.robots:
        raw, raw_w = raw_rate(robot, args.steps)
        rnd, rnd_w = collect_rate(robot, "random", args.steps)
        spec, origin, _ = policy_for(robot, "expert")
        exp, exp_w = collect_rate(robot, spec, args.steps) if spec else (float("nan"), float("nan"))
        rows.append((robot, raw, rnd, exp, origin, spec, raw_w, rnd_w, exp_w))
        print(f"{robot}: CPU-time rates raw {raw:.0f}/s, collect random {rnd:.0f}/s, collect expert ({origin}) "
              f"{exp:.0f}/s; wall {raw_w:.0f} / {rnd_w:.0f} / {exp_w:.0f}", flush=True)
    print(f"\nsteps per CPU-second (steps={args.steps} per measurement)\n\n| robot | raw env.step (random) | "
          "collect, random policy | collect, expert policy | expert / raw | wall raw / random / expert |\n"
          "|---|---|---|---|---|---|")
    for robot, raw, rnd, exp, origin, spec, raw_w, rnd_w, exp_w in rows:
        name = spec.split("/")[-3] if spec and spec.startswith("sb3:") else spec
        print(f"| {robot} | {raw:,.0f} | {rnd:,.0f} ({rnd / raw:.0%}) | {exp:,.0f} ({origin} {name}) | "
              f"{exp / raw:.0%} | {raw_w:,.0f} / {rnd_w:,.0f} / {exp_w:,.0f} |")


if __name__ == "__main__":
    main()
