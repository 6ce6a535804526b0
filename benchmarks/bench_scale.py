"""Scoring at scale: wall time and peak RSS per scorer, local engine against Ray with 1 and 2 workers.

Usage (prints one JSON line per run and a summary; ``--out`` writes them all as JSON)::

    python benchmarks/bench_scale.py --rows 1000000 --target 5000 --scorers knn,ot \\
        --engines local,ray1,ray2 --out benchmarks/results/scale.json

Every (scorer, engine) runs in a fresh process (``child`` sub-command) against one store created
beforehand (the store's creation is not part of the figures), so that peak RSS is that run's own:
``driver_peak_mb`` is the scoring process's ``ru_maxrss``; ``worker_peak_mb`` is the largest RSS of
one Ray worker process (``ray::*``) and ``workers_total_peak_mb`` the largest sum over them, sampled
every 0.2 s with psutil. ``ray_start_s`` (starting a local Ray with ``--workers`` CPUs) is reported
apart from ``wall_s`` (the ``Store.run`` call). ``chunks_wall_s`` is the chunk phase alone (manifest
timings); the Ray overhead per chunk is ``(ray1.chunks_wall_s - local.chunks_wall_s) / n_chunks``
and the scaling is ``ray1.chunks_wall_s / ray2.chunks_wall_s``. ``equal_to_local`` compares the
score files bitwise. Data: :func:`bench_store.make_data` (Hopper-sized, float32).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class _RssSampler(threading.Thread):
    """Peak RSS of the Ray worker processes of this user (one and summed), sampled periodically."""

    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period, self.stop = period, threading.Event()
        self.worker_peak = self.total_peak = 0.0

    def run(self) -> None:
        import psutil

        me = os.getuid()
        while not self.stop.is_set():
            rss = []
            for p in psutil.process_iter(["name", "uids", "memory_info"]):
                try:
                    if p.info["uids"].real == me and (p.info["name"] or "").startswith("ray::"):
                        rss.append(p.info["memory_info"].rss / 2**20)
                except (psutil.Error, AttributeError, TypeError):
                    continue
            if rss:
                self.worker_peak = max(self.worker_peak, max(rss))
                self.total_peak = max(self.total_peak, sum(rss))
            self.stop.wait(self.period)


def _settings(items: list[str]) -> dict:
    from xcurate.scoring.store import parse_settings

    return parse_settings(items)


def child(args: argparse.Namespace) -> dict:
    import torch

    from xcurate.scoring import store as store_mod
    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.store import Store, score_parts

    torch.set_num_threads(1)
    if args.part_rows:
        store_mod.SCORE_PART_ROWS = args.part_rows
    st = Store(args.store)
    kw = _settings(args.set).get(args.scorer, {})
    scorer = make_scorer(args.scorer, device="cpu", **kw)
    rid = st.run_id(scorer)
    shutil.rmtree(st.dir / "runs" / rid, ignore_errors=True)
    engine, workers = ("local", None) if args.engine == "local" else ("ray", int(args.engine[3:]))
    ray_start = 0.0
    sampler = _RssSampler()
    if engine == "ray":
        from xcurate.scoring.engine import connect

        t0 = time.perf_counter()
        connect(None, workers)
        ray_start = time.perf_counter() - t0
        sampler.start()
    t0 = time.perf_counter()
    st.run(scorer, progress=False, engine=engine, workers=workers, score_files=args.score_files)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    t = m["timings"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the digest reads the scores
    h = hashlib.sha256()  # of the score table's contents (one file or part files: the same digest)
    import pyarrow.parquet as pq

    parts = score_parts(st.dir / "runs" / rid / "scores.parquet")
    for c in pq.read_schema(parts[0]).names:
        for part in parts:
            h.update(pq.read_table(part, columns=[c]).column(c).to_numpy(zero_copy_only=False).tobytes())
    digest = h.hexdigest()
    return {"scorer": args.scorer, "engine": args.engine, "rows": m["n_rows"], "n_chunks": m["n_chunks"],
            "score_files": m.get("score_files"),
            "wall_s": round(wall, 3), "ray_start_s": round(ray_start, 3), "fit_s": round(t["fit_s"], 3),
            "shuffle_s": round(t.get("shuffle_s", 0.0), 3), "chunks_wall_s": round(t["chunks_wall_s"], 3),
            "chunk_compute_s": round(t["score_s"], 3), "assemble_s": round(t["assemble_s"], 3),
            "driver_peak_mb": round(peak_mb, 1),
            "worker_peak_mb": round(sampler.worker_peak, 1),
            "workers_total_peak_mb": round(sampler.total_peak, 1), "scores_sha256": digest}


def summarise(runs: list[dict]) -> list[dict]:
    out = []
    for scorer in dict.fromkeys(r["scorer"] for r in runs):
        by = {r["engine"]: r for r in runs if r["scorer"] == scorer}
        s: dict = {"scorer": scorer}
        loc, r1, r2 = by.get("local"), by.get("ray1"), by.get("ray2")
        for r in by.values():
            if loc is not None:
                r["equal_to_local"] = r["scores_sha256"] == loc["scores_sha256"]
        if loc and r1:
            s["ray1_overhead_per_chunk_s"] = round((r1["chunks_wall_s"] - loc["chunks_wall_s"]) / r1["n_chunks"], 3)
            s["ray1_vs_local_wall"] = round(r1["wall_s"] / loc["wall_s"] - 1, 3)
        if r1 and r2:
            s["ray2_speedup_chunk_phase"] = round(r1["chunks_wall_s"] / r2["chunks_wall_s"], 3)
        out.append(s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("child")
    c.add_argument("--store", required=True)
    c.add_argument("--scorer", required=True)
    c.add_argument("--engine", required=True)
    c.add_argument("--set", action="append", default=[])
    c.add_argument("--score-files", default="auto")
    c.add_argument("--part-rows", type=int, default=None)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--target", type=int, default=5000)
    ap.add_argument("--scorers", default="knn,ot")
    ap.add_argument("--engines", default="local,ray1,ray2")
    ap.add_argument("--set", action="append", default=[], help="SCORER.SETTING=VALUE (e.g. tbm.steps=2000)")
    ap.add_argument("--score-files", default="auto", help="auto | one | parts: the layout of the score files")
    ap.add_argument("--part-rows", type=int, default=None,
                    help="source rows per part file with --score-files parts (default: SCORE_PART_ROWS)")
    ap.add_argument("--workdir", default=None, help="where the store is built (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="write all runs and the summary here (JSON)")
    args = ap.parse_args()
    if args.cmd == "child":
        print(json.dumps(child(args)), flush=True)
        return
    from bench_store import make_data

    from xcurate.scoring.store import Store

    work = Path(args.workdir or tempfile.mkdtemp(prefix="xc-bench-scale-"))
    t0 = time.perf_counter()
    st = Store.create(work / f"store-{args.rows}x{args.target}", make_data(args.rows, 0), make_data(args.target, 1))
    create_s = time.perf_counter() - t0
    print(json.dumps({"store": str(st.dir), "create_s": round(create_s, 2)}), flush=True)
    runs = []
    for scorer in args.scorers.split(","):
        for engine in args.engines.split(","):
            cmd = [sys.executable, __file__, "child", "--store", str(st.dir), "--scorer", scorer, "--engine", engine,
                   *[x for s in args.set for x in ("--set", s)], "--score-files", args.score_files,
                   *(["--part-rows", str(args.part_rows)] if args.part_rows else [])]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode:
                sys.exit(f"{scorer}/{engine} failed:\n{res.stderr[-3000:]}")
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    summary = summarise(runs)
    for s in summary:
        print(json.dumps(s), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": args.rows, "target": args.target, "create_s": create_s,
                                              "runs": runs, "summary": summary}, indent=1) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
