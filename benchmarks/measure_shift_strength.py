"""How strongly does each target domain shift the dynamics of realistic source data?

For each robot: collect N transitions with the robot's expert behaviour policy plus Gaussian
action noise (``xcurate.datasets.collect.collect``, unshifted source domain), replay them in every
target domain of the robot and report the mean oracle dynamics gap ||s' - s'_tar|| and the
fraction of transitions whose next state changes by more than 1e-6. A fraction near 0 means the
shift does not bind on this data (e.g. a joint range the behaviour never reaches).

Usage::

    python benchmarks/measure_shift_strength.py --n 2000 --noise 0.1
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from xcurate.datasets.domains import ROBOTS, list_domains
from xcurate.datasets.oracle import oracle_gap, replay
from xcurate.utils import shared_dir

EXPERTS = {"halfcheetah": "sb3-zoo/tqc/HalfCheetah-v3_1/HalfCheetah-v3.zip",
           "hopper": "sb3-zoo/trpo/Hopper-v3_1/Hopper-v3.zip",
           "walker2d": "sb3-zoo/tqc/Walker2d-v3_1/Walker2d-v3.zip",
           "ant": "sb3-zoo/trpo/Ant-v3_1/Ant-v3.zip"}


def main(argv: list[str] | None = None) -> int:
    from xcurate.datasets.collect import collect

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.1)
    args = ap.parse_args(argv)
    root = shared_dir()
    if root is None:
        print("error: ../shared not found", file=sys.stderr)
        return 1
    print("| domain | mean gap | fraction changed (>1e-6) | replay rows/s |")
    print("|---|---|---|---|")
    for robot in ROBOTS:
        ds = collect(robot, f"sb3:{root}/policies/{EXPERTS[robot]}", args.n, noise=args.noise, seed=0,
                     progress=False)
        for d in list_domains(robot=robot):
            if not d.is_shifted:
                continue
            t0 = time.perf_counter()
            res = replay(d, ds)
            gap = oracle_gap(d, ds, result=res)
            rate = len(ds) / (time.perf_counter() - t0)
            print(f"| {d.name} | {np.nanmean(gap):.4f} | {np.nanmean(gap > 1e-6):.3f} | {rate:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
