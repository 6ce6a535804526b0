"""Time ``diagnose`` on a large store (default 1M source rows x 5k target, knn scores).

Usage:
    python benchmarks/bench_diagnose.py --rows 1000000 --out /tmp/bench_diag

Builds a store from random linear-dynamics data (``planted_shift``), runs the ``knn`` scorer,
then times ``diagnose(..., against="episode_return")`` with and without figures. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--target", type=int, default=5_000)
    ap.add_argument("--out", default="/tmp/bench_diag")
    args = ap.parse_args()
    from xcurate.datasets.synthetic import planted_shift
    from xcurate.diagnostics.report import diagnose
    from xcurate.scoring.store import score_datasets

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    target, source = planted_shift(n_target=args.target, n_source=args.rows, seed=0)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = score_datasets(source, target, ["knn"], out / "store")
    t_store = time.perf_counter() - t0
    res = {"rows": args.rows, "target": args.target, "data_s": t_data, "store_and_knn_s": t_store}
    for figs in (False, True):
        t0 = time.perf_counter()
        rep = diagnose(store, against="episode_return", bins=10, out=out / f"report_{figs}", figures=figs)
        res[f"diagnose_figures_{figs}_s"] = time.perf_counter() - t0
        res[f"timings_figures_{figs}"] = rep.timings
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
