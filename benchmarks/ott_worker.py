"""Runs the official OTDF solver (ott-jax) on chunks saved by verify_ot_official.py / bench_ot.py.

Runs in a SEPARATE virtual environment with jax + ott-jax (not an xcurate dependency)::

    python3 -m venv /work/venv-ott && /work/venv-ott/bin/pip install jax ott-jax scipy
    /work/venv-ott/bin/python benchmarks/ott_worker.py IN.npz OUT.npz

IN.npz holds ``target`` (m, d) and ``chunk_0``, ``chunk_1``, ... (n_k, d) float16 arrays; OUT.npz gets
``score_k`` (the official d_i = -sum_j P_ij C_ij with the unscaled cosine cost) and ``time_k``
(seconds per chunk, after compiling once per chunk shape).

The official recipe: PointCloud with the cosine cost scaled by its max, epsilon = 0.05 x the mean
of the scaled cost (relative_epsilon="mean"; ott-jax < 0.4 used that default), Sinkhorn with
threshold 1e-9 and at most 100 iterations (lse mode, ott's defaults otherwise).
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn


def official_scores(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    geom = pointcloud.PointCloud(x, y, cost_fn=costs.Cosine(), scale_cost="max_cost", epsilon=0.05,
                                 relative_epsilon="mean")
    out = sinkhorn.Sinkhorn(threshold=1e-9, max_iterations=100)(linear_problem.LinearProblem(geom))
    cost = pointcloud.PointCloud(x, y, cost_fn=costs.Cosine()).cost_matrix  # unscaled
    return -jnp.sum(out.matrix * cost, axis=1)


def main() -> None:
    data = np.load(sys.argv[1])
    y = jnp.asarray(data["target"].astype(np.float32))
    fn = jax.jit(official_scores)
    keys = sorted((k for k in data.files if k.startswith("chunk_")), key=lambda k: int(k.split("_")[1]))
    for shape in {data[k].shape for k in keys}:  # compile once per chunk shape (not timed)
        fn(jnp.zeros(shape, jnp.float32) + 1.0, y).block_until_ready()
    out = {}
    for k in keys:
        x = jnp.asarray(data[k].astype(np.float32))
        t0 = time.perf_counter()
        s = fn(x, y).block_until_ready()
        out[f"time_{k.split('_')[1]}"] = time.perf_counter() - t0
        out[f"score_{k.split('_')[1]}"] = np.asarray(s, np.float64)
    np.savez(sys.argv[2], **out)


if __name__ == "__main__":
    main()
