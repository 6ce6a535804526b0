"""Timing and peak memory of the learned scorers (contrastive, advantage, tbm, ensemble, dara).

Each scorer runs in its own subprocess (clean peak-RSS measurement) on random linear-dynamics
data with MuJoCo-like sizes (obs 17, act 6; content does not change the cost). ``fit`` is timed
with all step budgets set to 0 (overhead: normalisers, encoding the data, proportional to the
data size) and at ``--frac`` of the default budgets; the difference, divided by ``frac``, is the
time of the full default training (which does not depend on the source size). Times are process
CPU seconds (the machine is shared; wall time is also recorded in the JSON lines). ``score`` is timed over the whole source in the scorer's
chunk size. Results for ``--n-source`` below 1M are extrapolated linearly to 1M and labelled so.

Usage:
    python benchmarks/bench_scorers.py --n-source 100000 --n-target 5000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

#: step settings of each scorer (scaled together by the benchmark)
STEP_FIELDS = {
    "contrastive": ["steps"],
    "advantage": ["steps"],
    "tbm": ["encoder_steps", "finetune_steps", "value_steps"],
    "ensemble": ["steps", "value_steps"],
    "dara": ["steps"],
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(name: str, n_source: int, n_target: int, frac: float, threads: int) -> dict:
    """Fit at ``frac`` and ``2 frac`` of the default budgets, score the source; return numbers."""
    import dataclasses

    import torch

    torch.set_num_threads(threads)
    import numpy as np

    from xcurate.datasets.transitions import TransitionDataset
    from xcurate.scoring import get_scorer_class, make_scorer

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    a_mat, b_mat = 0.3 * rng.normal(size=(17, 17)), rng.normal(size=(6, 17))

    def make(n: int, shift: float) -> TransitionDataset:
        s = rng.normal(size=(n, 17)).astype(np.float32)
        a = rng.uniform(-1, 1, size=(n, 6)).astype(np.float32)
        s2 = s @ (a_mat + shift) + a @ b_mat + 0.01 * rng.normal(size=(n, 17)).astype(np.float32)
        r = -(s ** 2).mean(1)
        return TransitionDataset.from_arrays(s, a, r, s2, timeouts=np.arange(n) % 1000 == 999)

    target, source = make(n_target, 0.0), make(n_source, 0.05)
    t_data = time.perf_counter() - t0
    rss_data = _rss_mb()
    cls = get_scorer_class(name)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    budgets = {k: defaults[k] for k in STEP_FIELDS[name]}
    times, walls = [], []
    make_scorer(name, device="cpu", **{k: 2 for k in budgets}).fit(target, source)  # warm-up (lazy init)
    for f in (0.0, frac):
        settings = {k: int(round(v * f)) for k, v in budgets.items()}
        t, w = time.process_time(), time.perf_counter()
        scorer = make_scorer(name, device="cpu", **settings).fit(target, source)
        times.append(time.process_time() - t)
        walls.append(time.perf_counter() - w)
    overhead = times[0]
    slope = max(times[1] - times[0], 0.0) / frac  # CPU seconds per full default budget
    t, w = time.process_time(), time.perf_counter()
    n_scored = 0
    for i in range(0, len(source), cls.chunk_size):
        chunk: TransitionDataset = source.select(slice(i, i + cls.chunk_size))
        out = scorer.score(chunk)
        n_scored += len(next(iter(out.values())))
    t_score = time.process_time() - t
    w_score = time.perf_counter() - w
    assert n_scored == len(source)
    scale = 1_000_000 / n_source
    return {"scorer": name, "n_source": n_source, "n_target": n_target, "threads": threads,
            "default_budgets": budgets, "fit_cpu_s_at_0_and_frac": times, "fit_wall_s_at_0_and_frac": walls,
            "frac": frac, "score_wall_s": w_score,
            "train_s_full_budget": slope, "fit_overhead_s": overhead, "score_s": t_score,
            "score_rows_per_s": n_source / t_score, "fit_s_1m_est": slope + overhead * scale,
            "score_s_1m_est": t_score * scale, "peak_rss_mb": _rss_mb(), "data_rss_mb": rss_data,
            "data_gen_s": t_data}


def main() -> None:
    """Run every requested scorer in a subprocess and print a Markdown table plus JSON lines."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-source", type=int, default=100_000)
    p.add_argument("--n-target", type=int, default=5_000)
    p.add_argument("--frac", type=float, default=0.02, help="fraction of the default step budgets to time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scorers", default=",".join(STEP_FIELDS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.n_source, a.n_target, a.frac, a.threads)))
        return
    rows = []
    for name in a.scorers.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--n-source", str(a.n_source), "--n-target",
               str(a.n_target), "--frac", str(a.frac), "--threads", str(a.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"{name}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    est = "" if a.n_source == 1_000_000 else f" (extrapolated from {a.n_source:,})"
    print(f"| scorer | default budget | train (full budget) CPU s | score {a.n_source:,} rows CPU s | rows/CPU s | "
          f"fit 1M CPU s{est} | score 1M CPU s{est} | peak RSS MB (data alone) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        budget = ", ".join(f"{k}={v}" for k, v in r["default_budgets"].items())
        print(f"| {r['scorer']} | {budget} | {r['train_s_full_budget']:.0f} | {r['score_s']:.1f} | "
              f"{r['score_rows_per_s']:,.0f} | {r['fit_s_1m_est']:.0f} | {r['score_s_1m_est']:.0f} | "
              f"{r['peak_rss_mb']:.0f} ({r['data_rss_mb']:.0f}) |")


if __name__ == "__main__":
    main()
