"""Collection rate of ``xcurate.datasets.collect`` vs raw Gymnasium stepping, per robot.

Usage:

    python benchmarks/bench_collect.py --steps 20000

For each robot: (1) raw ``env.step`` with uniform random actions (the wrapped Gymnasium v5 env,
resets included, nothing stored), (2) ``collect()`` with the random policy, (3) ``collect()`` with
the expert behaviour policy of the suite (zoo agent if ../shared exists, else builtin). Prints a
Markdown table (steps/s and the ratio to raw).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xcurate.datasets.collect import collect
from xcurate.datasets.domains import get_domain
from xcurate.datasets.suite import ROBOTS, policy_for


def raw_rate(robot: str, steps: int, seed: int = 0) -> float:
    """Steps/s of the plain Gymnasium env with uniform random actions."""
    env = get_domain(robot).make_env()
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(low, high))
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--robots", nargs="*", default=list(ROBOTS))
    args = ap.parse_args()
    rows = []
    for robot in args.robots:
        raw = raw_rate(robot, args.steps)
        rnd = collect(robot, "random", args.steps, progress=False).metadata["steps_per_second"]
        spec, origin, _ = policy_for(robot, "expert")
        exp = collect(robot, spec, args.steps, progress=False).metadata["steps_per_second"] if spec else float("nan")
        rows.append((robot, raw, rnd, exp, origin, spec))
        print(f"{robot}: raw {raw:.0f}/s, collect random {rnd:.0f}/s, collect expert ({origin}) {exp:.0f}/s",
              flush=True)
    print(f"\n| robot | raw env.step (random) | collect, random policy | collect, expert policy | "
          f"expert / raw |\n|---|---|---|---|---|  (steps={args.steps})")
    for robot, raw, rnd, exp, origin, spec in rows:
        name = spec.split("/")[-3] if spec and spec.startswith("sb3:") else spec
        print(f"| {robot} | {raw:,.0f}/s | {rnd:,.0f}/s ({rnd / raw:.0%}) | {exp:,.0f}/s ({origin} {name}) | "
              f"{exp / raw:.0%} |")


if __name__ == "__main__":
    main()
