"""Write/read speed and file size of each dataset format at D4RL scale.

Usage::

    python benchmarks/datasets_io_bench.py --n 1000000 --obs-dim 17 --act-dim 6

Builds a synthetic dataset of ``n`` transitions in 1000-step episodes (float32, with qpos/qvel
and two extra columns), then times ``save_dataset`` and ``load_dataset`` for every format.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from xcurate.datasets.io import load_dataset, save_dataset
from xcurate.datasets.transitions import TransitionDataset


def build(n: int, obs_dim: int, act_dim: int, episode_len: int = 1000) -> TransitionDataset:
    """A dataset of ``n`` transitions with continuous episodes of ``episode_len`` steps."""
    rng = np.random.default_rng(0)
    n_eps = n // episode_len
    states = rng.normal(size=(n_eps, episode_len + 1, obs_dim)).astype(np.float32)
    obs = states[:, :-1].reshape(-1, obs_dim)
    nxt = states[:, 1:].reshape(-1, obs_dim)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1::episode_len] = True
    return TransitionDataset.from_arrays(
        obs, rng.uniform(-1, 1, (n, act_dim)).astype(np.float32), rng.normal(size=n).astype(np.float32), nxt,
        timeouts=timeouts, episode_ids=np.repeat(np.arange(n_eps), episode_len),
        qpos=rng.normal(size=(n, obs_dim // 2 + 1)), qvel=rng.normal(size=(n, obs_dim // 2 + 1)),
        extras={"weight": rng.random(n).astype(np.float32), "keep": rng.random(n) > 0.5},
        metadata={"domain": "bench"})


def main() -> None:
    """Time every format and print a Markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--obs-dim", type=int, default=17)
    ap.add_argument("--act-dim", type=int, default=6)
    args = ap.parse_args()
    ds = build(args.n, args.obs_dim, args.act_dim)
    print(f"n={len(ds):,} obs_dim={ds.obs_dim} act_dim={ds.act_dim} episodes={ds.n_episodes}")
    print("| format | write s | read s | size MB |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for name, fmt in (("d.hdf5", None), ("d.parquet", None), ("m", "minari")):
            p = Path(d) / name
            t0 = time.perf_counter()
            out = save_dataset(ds, p, fmt)
            t1 = time.perf_counter()
            back = load_dataset(out)
            t2 = time.perf_counter()
            assert back.fingerprint() == ds.fingerprint()
            size = sum(f.stat().st_size for f in out.rglob("*")) if out.is_dir() else out.stat().st_size
            print(f"| {fmt or out.suffix[1:]} | {t1 - t0:.2f} | {t2 - t1:.2f} | {size / 1e6:.0f} |")


if __name__ == "__main__":
    main()
