"""Curation at scale: peak RSS and wall time of the in-memory export against streaming curation.

Usage::

    python benchmarks/bench_curate_stream.py --rows 1000000 --target 5000 \\
        --out benchmarks/results/curate_stream_1m.json

One store (Hopper-sized float32 rows of :func:`bench_store.make_data`) is built and scored with
``knn`` once; then each way of curating runs in a fresh process (``child`` sub-command), so that
peak RSS (``ru_maxrss``) is its own: ``memory`` is ``curate_to_file(..., format="parquet")``
(loads the source), ``stream`` is :func:`xcurate.curate.stream.curate_stream`. Both write
``otdf`` (``column=knn_score``, ``proportion=0.8``) with ``--drop-unkept``, and the two files'
manifest fingerprints are compared (``equal``).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(store: str, how: str, out: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from xcurate.scoring.store import Store

    st = Store(store)
    t0 = time.perf_counter()
    if how == "memory":
        from xcurate.curate.recipes import curate_to_file

        curate_to_file(st, "otdf", out, format="parquet", drop_unkept=True, column="knn_score")
    else:
        from xcurate.curate.stream import curate_stream

        curate_stream(st, "otdf", out, drop_unkept=True, column="knn_score")
    wall = time.perf_counter() - t0
    from xcurate.datasets.io import manifest_path

    man = json.loads(manifest_path(out).read_text())
    return {"how": how, "wall_s": round(wall, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rows_written": man["transitions"], "fingerprint": man["fingerprint"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("child")
    c.add_argument("--store", required=True)
    c.add_argument("--how", required=True, choices=["memory", "stream"])
    c.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--target", type=int, default=5000)
    ap.add_argument("--workdir", default=None, help="where the store is built (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="write the runs as JSON here")
    args = ap.parse_args()
    if args.cmd == "child":
        print(json.dumps(child(args.store, args.how, args.out)), flush=True)
        return
    from bench_store import make_data

    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.store import Store

    work = Path(args.workdir or tempfile.mkdtemp(prefix="xc-bench-curate-"))
    t0 = time.perf_counter()
    st = Store.create(work / f"store-{args.rows}x{args.target}", make_data(args.rows, 0), make_data(args.target, 1))
    st.run(make_scorer("knn", device="cpu"), progress=False)
    print(json.dumps({"store": str(st.dir), "create_and_score_s": round(time.perf_counter() - t0, 2)}), flush=True)
    runs = []
    for how in ("memory", "stream"):
        out = str(work / f"curated-{how}.parquet")
        res = subprocess.run([sys.executable, __file__, "child", "--store", str(st.dir), "--how", how, "--out", out],
                             capture_output=True, text=True, check=False)
        if res.returncode:
            sys.exit(f"{how} failed:\n{res.stderr[-3000:]}")
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    result = {"rows": args.rows, "target": args.target, "runs": runs,
              "equal": runs[0]["fingerprint"] == runs[1]["fingerprint"],
              "rss_ratio_memory_over_stream": round(runs[0]["peak_rss_mb"] / runs[1]["peak_rss_mb"], 2)}
    print(json.dumps(result), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
