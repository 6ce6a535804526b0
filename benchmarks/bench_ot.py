"""Our OT solver (POT Sinkhorn, torch CPU) vs the official solver (ott-jax) on the same chunks.

    python benchmarks/bench_ot.py [--chunks 2] [--chunk 10000] [--target 5000] [--threads 2]
        [--ott-python /work/venv-ott/bin/python]

Both run the official recipe (float16 inputs, cosine cost scaled by its max, eps 0.05 x mean,
100 iterations); reports seconds per chunk for each (ott-jax after jit compilation), the time
ratio, and the Spearman agreement of the scores (plus the default fixed-mode and float32 timings
of our scorer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--target", type=int, default=5_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ott-python", default="/work/venv-ott/bin/python")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_store import make_data

    from xcurate.scoring import make_scorer

    torch.set_num_threads(args.threads)
    src, tgt = make_data(args.chunks * args.chunk, 0), make_data(args.target, 1)
    chunks = [src.select(slice(i, i + args.chunk)) for i in range(0, len(src), args.chunk)]
    res: dict = {"chunk": args.chunk, "target": args.target, "chunks": len(chunks), "threads": args.threads}
    scores = {}
    for label, kw in [("official_f64", {"official": True}), ("official_f32", {"official": True, "float64": False}),
                      ("fixed_f64", {}), ("fixed_f32", {"float64": False})]:
        sc = make_scorer("ot", chunk=args.chunk, device="cpu", **kw).fit(tgt, src)
        times, out = [], []
        for c in chunks:
            t0 = time.perf_counter()
            out.append(sc.score(c)["ot_score"])
            times.append(time.perf_counter() - t0)
        res[f"ours_{label}_s_per_chunk"] = round(float(np.mean(times)), 3)
        scores[label] = np.concatenate(out)
    with tempfile.TemporaryDirectory() as d:
        sc = make_scorer("ot", official=True).fit(tgt, src)
        feats = {f"chunk_{k}": sc._features(c).astype(np.float16) for k, c in enumerate(chunks)}
        np.savez(Path(d) / "in.npz", target=sc._features(tgt).astype(np.float16), **feats)
        subprocess.run([args.ott_python, str(HERE / "ott_worker.py"), str(Path(d) / "in.npz"),
                        str(Path(d) / "out.npz")], check=True)
        ref = np.load(Path(d) / "out.npz")
        ott_scores = np.concatenate([ref[f"score_{k}"] for k in range(len(chunks))])
        res["ott_s_per_chunk"] = round(float(np.mean([ref[f"time_{k}"] for k in range(len(chunks))])), 3)
    for label in ("official_f64", "official_f32"):
        res[f"spearman_{label}_vs_ott"] = round(float(spearmanr(scores[label], ott_scores)[0]), 6)
        res[f"max_rel_err_{label}_vs_ott"] = float(np.abs(scores[label] - ott_scores).max()
                                                   / np.abs(ott_scores).max())
        res[f"time_ratio_{label}_over_ott"] = round(res[f"ours_{label}_s_per_chunk"] / res["ott_s_per_chunk"], 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
