"""Check that xcurate's ``ot`` scorer in ``official=True`` mode reproduces the official OTDF numbers.

The official OTDF code solves each 10,000-row source chunk against all target rows with ott-jax.
This script scores a fixed input (12,000 Hopper-sized source rows = one full chunk + a short last
chunk of 2,000, against 2,000 target rows; seed 0) with xcurate (POT, torch) and with ott-jax
(``benchmarks/ott_worker.py`` in a separate venv), and reports the agreement.

    python benchmarks/verify_ot_official.py [--ott-python /work/venv-ott/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ott-python", default="/work/venv-ott/bin/python")
    p.add_argument("--source", type=int, default=12_000)
    p.add_argument("--target", type=int, default=2_000)
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_store import make_data

    from xcurate.scoring import make_scorer

    torch.set_num_threads(2)
    src, tgt = make_data(args.source, 0), make_data(args.target, 1)
    sc = make_scorer("ot", official=True, device="cpu").fit(tgt, src)
    chunks = [src.select(slice(i, i + sc.chunk_size)) for i in range(0, len(src), sc.chunk_size)]
    ours = [sc.score(c)["ot_score"] for c in chunks]
    with tempfile.TemporaryDirectory() as d:
        feats = {f"chunk_{k}": sc._features(c).astype(np.float16) for k, c in enumerate(chunks)}
        np.savez(Path(d) / "in.npz", target=sc._features(tgt).astype(np.float16), **feats)
        subprocess.run([args.ott_python, str(HERE / "ott_worker.py"), str(Path(d) / "in.npz"),
                        str(Path(d) / "out.npz")], check=True)
        ref = np.load(Path(d) / "out.npz")
        theirs = [ref[f"score_{k}"] for k in range(len(chunks))]
    a, b = np.concatenate(ours), np.concatenate(theirs)
    res = {"source": args.source, "target": args.target, "chunks": [len(c) for c in chunks],
           "max_rel_err": float(np.abs(a - b).max() / np.abs(b).max()),
           "max_abs_err": float(np.abs(a - b).max()), "spearman": float(spearmanr(a, b)[0]),
           "per_chunk_mean_ours": [float(x.mean()) for x in ours],
           "per_chunk_mean_ott": [float(x.mean()) for x in theirs]}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
