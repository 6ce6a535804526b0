"""Benchmarks of the score store: OT scoring time/memory, DuckDB queries, resumable-run overhead.

Usage (each prints one JSON line; results go to benchmarks/results/store.md by hand)::

    python benchmarks/bench_store.py ot --rows 100000 --target 5000 [--float32] [--threads 2]
    python benchmarks/bench_store.py query --rows 1000000
    python benchmarks/bench_store.py resume --rows 1000000

Data: Hopper-sized random transitions (obs 11, act 3) with a smooth dynamics s' = 0.9 s + 0.1 B a
+ noise, float32. Timings depend on the data only through its size (Sinkhorn runs a fixed 100
iterations). Peak memory is the process's peak RSS (``ru_maxrss``), measured in a fresh process
per sub-command.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(n: int, seed: int, obs_dim: int = 11, act_dim: int = 3):
    """Random Hopper-sized transitions (float32) with 1000-step episodes."""
    from xcurate.datasets.transitions import TransitionDataset

    rng = np.random.default_rng(seed)
    b = rng.normal(size=(act_dim, obs_dim)).astype(np.float32)
    s = rng.normal(size=(n, obs_dim)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
    s2 = (0.9 * s + 0.1 * a @ b + 0.01 * rng.normal(size=(n, obs_dim))).astype(np.float32)
    r = rng.normal(size=n).astype(np.float32)
    ep = np.arange(n) // 1000
    steps = np.arange(n) % 1000
    return TransitionDataset.from_arrays(s, a, r, s2, timeouts=steps == 999, episode_ids=ep, steps=steps,
                                         source=f"<bench n={n}>", metadata={"quality": "medium"})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ot(args: argparse.Namespace) -> dict:
    import torch

    from xcurate.scoring import make_scorer
    from xcurate.scoring.store import Store

    torch.set_num_threads(args.threads)
    src, tgt = make_data(args.rows, 0), make_data(args.target, 1)
    with tempfile.TemporaryDirectory() as d:
        st = Store.create(Path(d) / "s", src, tgt)
        rss0 = peak_rss_mb()
        sc = make_scorer("ot", float64=not args.float32, device="cpu")
        t0 = time.perf_counter()
        rid = st.run(sc, progress=False)
        wall = time.perf_counter() - t0
        m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    per_chunk = m["timings"]["score_s"] / m["n_chunks"]
    return {"bench": "ot", "rows": args.rows, "target": args.target, "chunk": sc.chunk_size,
            "dtype": "float32" if args.float32 else "float64", "threads": args.threads,
            "wall_s": round(wall, 2), "score_s": round(m["timings"]["score_s"], 2),
            "per_chunk_s": round(per_chunk, 3),
            "extrapolated_1M_s": round(per_chunk * 100 + m["timings"]["fit_s"], 1),
            "peak_rss_mb_before": round(rss0), "peak_rss_mb": round(peak_rss_mb())}


def bench_query(args: argparse.Namespace) -> dict:
    import torch

    from xcurate.scoring import make_scorer
    from xcurate.scoring.store import Store

    torch.set_num_threads(args.threads)
    src, tgt = make_data(args.rows, 0), make_data(5000, 1)
    out = {"bench": "query", "rows": args.rows}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        st = Store.create(Path(d) / "s", src, tgt)
        out["create_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        st.run(make_scorer("knn", k=1), progress=False)
        out["knn_run_s"] = round(time.perf_counter() - t0, 2)
        queries = {
            "deciles": "SELECT decile, avg(knn_score) AS mean, count(*) AS n FROM (SELECT ntile(10) OVER "
                       "(ORDER BY knn_score) AS decile, knn_score FROM scores) GROUP BY decile ORDER BY decile",
            "quantiles": "SELECT quantile_cont(knn_score, [0.1, 0.5, 0.9]) FROM scores",
            "filter_count": "SELECT count(*) FROM scores WHERE knn_score > -1.0 AND episode_return > 0",
            "top_20pct_ids": "SELECT transition_id FROM scores WHERE knn_score >= "
                             "(SELECT quantile_cont(knn_score, 0.8) FROM scores)",
        }
        for name, q in queries.items():
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                res = st.query(q)
                times.append(time.perf_counter() - t0)
            out[f"{name}_s"] = round(statistics.median(times), 3)
            out[f"{name}_rows"] = res.num_rows
    return out


def bench_resume(args: argparse.Namespace) -> dict:
    """Store run (chunked, checkpointed, assembled, manifest) vs the bare scorer in memory."""
    import torch

    from xcurate.scoring import make_scorer
    from xcurate.scoring.scorer_knn import KNNScorer
    from xcurate.scoring.store import Store

    torch.set_num_threads(args.threads)
    src, tgt = make_data(args.rows, 0), make_data(5000, 1)
    t0 = time.perf_counter()
    sc = make_scorer("knn", k=1).fit(tgt, src)
    for i in range(0, len(src), 100_000):
        sc.score(src.select(slice(i, i + 100_000)))
    bare = time.perf_counter() - t0
    out = {"bench": "resume", "rows": args.rows, "bare_knn_s": round(bare, 2)}
    for chunk in (100_000, 10_000):
        cls = type(f"KNN{chunk}", (KNNScorer,), {"chunk_size": chunk, "__annotations__": {}})
        with tempfile.TemporaryDirectory() as d:
            st = Store.create(Path(d) / "s", src, tgt)
            t0 = time.perf_counter()
            rid = st.run(cls(k=1), progress=False)
            out[f"store_chunk{chunk}_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            st.run(cls(k=1), progress=False)
            out["cached_rerun_s"] = round(time.perf_counter() - t0, 4)
            m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
            out[f"assemble_chunk{chunk}_s"] = round(m["timings"]["assemble_s"], 2)
            out[f"fit_plus_score_chunk{chunk}_s"] = round(m["timings"]["fit_s"] + m["timings"]["score_s"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["ot", "query", "resume"])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--target", type=int, default=5000)
    p.add_argument("--float32", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    fn = {"ot": bench_ot, "query": bench_query, "resume": bench_resume}[args.what]
    print(json.dumps(fn(args)))


if __name__ == "__main__":
    main()
