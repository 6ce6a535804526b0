"""Oracle benchmark: how well does each scorer agree with the ground-truth oracle?

For each robot and each target domain: a mixed-quality source dataset (random + medium +
expert, collected in the UNSHIFTED domain with raw qpos/qvel), a target dataset (medium +
expert policies acting in the target domain), a score store, every scorer and the ``oracle``
scorer. Then the Spearman rank correlation of each score column with the oracle Bellman error
and the oracle dynamics gap, over the source rows the oracle could replay exactly.

Sign convention: POSITIVE = the score agrees with the oracle. Columns whose direction is
``higher`` (higher = more useful) are expected to correlate NEGATIVELY with the oracle errors,
so -rho is reported for them; ``lower`` columns (errors, distances, penalties) report +rho.

Results are written incrementally (after each target domain) to a Markdown file and a JSON
file beside it, so a partial run still produces tables. Collected datasets and stores are kept
in ``--workdir`` so an interrupted run resumes (stores cache complete scorer runs).

Example (tiny)::

    python benchmarks/bench_oracle_spearman.py --robots hopper --source-size 2000 \
        --target-size 1000 --budget small --out /tmp/oracle.md --workdir /tmp/oracle-work
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

#: reduced training budgets of the learned scorers for ``--budget small`` (steps per setting).
SMALL_BUDGET: dict[str, dict[str, Any]] = {
    "contrastive": {"steps": 1000},
    "advantage": {"steps": 1000},
    "tbm": {"encoder_steps": 1000, "finetune_steps": 300, "value_steps": 500},
    "ensemble": {"steps": 1000, "value_steps": 500},
    "dara": {"steps": 1000},
}

ORACLE_QUANTITIES = ("oracle_bellman_error", "oracle_dynamics_gap")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--robots", nargs="+", default=["hopper", "halfcheetah", "walker2d", "ant"])
    p.add_argument("--domains", nargs="+", default=None,
                   help="target domain names (default per robot: one friction/gravity, one kinematic, one "
                        "morphology domain, xcurate.datasets.suite.DEFAULT_TARGETS)")
    p.add_argument("--source-size", type=int, default=10_000, help="source transitions (1/3 per quality)")
    p.add_argument("--target-size", type=int, default=5000, help="target transitions (1/2 medium, 1/2 expert)")
    p.add_argument("--scorers", nargs="+", default=None, help="default: every registered scorer except oracle")
    p.add_argument("--budget", choices=["full", "small"], default="small",
                   help="small: reduced training steps for the learned scorers; full: their defaults")
    p.add_argument("--noise", type=float, default=0.1, help="Gaussian action noise of the medium/expert collection")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default="benchmarks/results/oracle-spearman.md")
    p.add_argument("--workdir", default=None, help="datasets and stores (default $XCURATE_DATA/bench-oracle)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="only merge the JSON files of earlier (e.g. parallel, one per robot) runs into --out")
    p.add_argument("--note", action="append", default=[], help="a line added to the report's notes (repeatable)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def _cached(path: Path, make):
    """Load a dataset from ``path`` (parquet) or build it with ``make()`` and save it atomically."""
    import pyarrow.parquet as pq

    from xcurate.scoring.store import dataset_to_table, table_to_dataset
    from xcurate.utils import atomic_path

    if path.exists():
        return table_to_dataset(pq.read_table(path), source=str(path)), 0.0
    t0 = time.perf_counter()
    ds = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(dataset_to_table(ds), tmp)
    return ds, time.perf_counter() - t0


def _policy(robot: str, quality: str) -> tuple[str, str]:
    from xcurate.datasets.suite import policy_for

    spec, origin, note = policy_for(robot, quality)
    if spec is None:
        raise SystemExit(f"error: {note}")
    return spec, origin


def make_source(robot: str, n: int, noise: float, seed: int, workdir: Path, log) -> tuple[Any, dict]:
    """Mixed-quality source: random + medium + expert thirds in the unshifted domain."""
    from xcurate.datasets.collect import collect
    from xcurate.datasets.transitions import TransitionDataset

    parts, info = [], {}
    sizes = [n // 3, n // 3, n - 2 * (n // 3)]
    for i, (quality, size) in enumerate(zip(("random", "medium", "expert"), sizes, strict=True)):
        spec, origin = _policy(robot, quality)
        nz = 0.0 if quality == "random" else noise
        ds, secs = _cached(workdir / "data" / f"{robot}-source-{quality}-{size}-s{seed}.parquet",
                           partial(collect, robot, spec, size, noise=nz, seed=seed + i, progress=False,
                                   quality=quality))
        ret = ds.episode_returns()
        log(f"  source {robot} {quality}: {size} rows, policy {origin} ({Path(spec).name}), "
            f"collected in {secs:.1f}s, mean episode return {float(np.mean(ret)) if len(ret) else float('nan'):.0f}")
        info[quality] = {"policy": spec, "origin": origin, "n": size, "collect_s": secs}
        parts.append(ds)
    src = TransitionDataset.concat(parts)
    src.metadata = {**src.metadata, "quality": "mixed"}
    info["_row_quality"] = np.repeat(np.array(["random", "medium", "expert"]), sizes)
    return src, info


def make_target(domain: str, robot: str, n: int, noise: float, seed: int, workdir: Path, log) -> tuple[Any, dict]:
    """Target: medium + expert halves collected in the target domain."""
    from xcurate.datasets.collect import collect
    from xcurate.datasets.transitions import TransitionDataset

    parts, info = [], {}
    for i, (quality, size) in enumerate(zip(("medium", "expert"), (n // 2, n - n // 2), strict=True)):
        spec, origin = _policy(robot, quality)
        ds, secs = _cached(workdir / "data" / f"{domain}-target-{quality}-{size}-s{seed}.parquet",
                           partial(collect, domain, spec, size, noise=noise, seed=seed + 100 + i,
                                   progress=False, quality=quality))
        log(f"  target {domain} {quality}: {size} rows, policy {origin}, collected in {secs:.1f}s")
        info[quality] = {"policy": spec, "origin": origin, "n": size, "collect_s": secs}
        parts.append(ds)
    return TransitionDataset.concat(parts), info


# ---------------------------------------------------------------------------------------------
# Scoring and correlation
# ---------------------------------------------------------------------------------------------

def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties; scipy)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def run_domain(robot: str, domain: str, src, tgt, scorers: list[str], budget: str, seed: int,
               workdir: Path, log, row_quality: np.ndarray | None = None) -> dict[str, Any]:
    """Run every scorer and the oracle on one store; return correlations and timings."""
    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.store import Store

    store = Store.create(workdir / "stores" / f"{domain}-src{len(src)}-tgt{len(tgt)}-s{seed}", src, tgt,
                         domain=domain)
    wall: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in ["oracle", *scorers]:
        settings = dict(SMALL_BUDGET.get(name, {})) if budget == "small" else {}
        t0 = time.perf_counter()
        try:
            scorer = make_scorer(name, seed=seed, **settings)
            store.run(scorer, source=src, target=tgt, progress=False, domain=domain)
        except Exception as e:  # noqa: BLE001 - one broken scorer must not stop the benchmark
            errors[name] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            log(f"    {name}: FAILED {errors[name]}")
            continue
        wall[name] = time.perf_counter() - t0
        log(f"    {name}: {wall[name]:.1f}s")
    if "oracle" in errors:
        return {"robot": robot, "domain": domain, "errors": errors, "wall_s": wall, "rho": {}, "n_valid": 0}
    # manifest timings (fit + score) of the current runs: also right when a run was cached
    cur = store.current_runs()
    run_s = {n: float(m.get("timings", {}).get("wall_s", float("nan"))) for n, m in cur.items()}
    specs = store.score_columns()
    table = store.query("SELECT * FROM scores WHERE oracle_valid")
    n_valid = table.num_rows
    oracle = {q: table.column(q).to_numpy(zero_copy_only=False).astype(np.float64) for q in ORACLE_QUANTITIES}
    strata: dict[str, np.ndarray] = {}
    if row_quality is not None:
        pos = {int(t): i for i, t in enumerate(src.transition_ids)}
        qual = row_quality[[pos[int(t)] for t in table.column("transition_id").to_numpy()]]
        strata = {q: qual == q for q in dict.fromkeys(row_quality)}
    rho: dict[str, dict[str, dict[str, float]]] = {}
    rho_within: dict[str, dict[str, dict[str, float]]] = {}
    for name in scorers:
        if name not in cur:
            continue
        for col, spec in cur[name].get("columns", {}).items():
            if spec["direction"] not in ("higher", "lower"):
                continue
            v = table.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
            ok = np.isfinite(v)
            sign = -1.0 if spec["direction"] == "higher" else 1.0
            rho.setdefault(name, {})[col] = {
                q: sign * spearman(v[ok], oracle[q][ok]) for q in ORACLE_QUANTITIES}
            if strata:  # mean over the quality strata: removes the "far from the target data" confound
                rho_within.setdefault(name, {})[col] = {
                    q: float(np.nanmean([sign * spearman(v[ok & m], oracle[q][ok & m]) for m in strata.values()]))
                    for q in ORACLE_QUANTITIES}
    primaries = {n: cur[n].get("primary") for n in cur}
    gap = oracle["oracle_dynamics_gap"]
    return {"robot": robot, "domain": domain, "n_source": len(src), "n_target": len(tgt), "n_valid": n_valid,
            "oracle_gap_median": float(np.median(gap)) if n_valid else None,
            "oracle_bellman_median": float(np.median(oracle["oracle_bellman_error"])) if n_valid else None,
            "oracle_gap_median_by_quality": {k: float(np.median(gap[m])) for k, m in strata.items() if m.any()},
            "rho": rho, "rho_within_quality": rho_within, "primary": primaries, "wall_s": wall, "run_s": run_s, "errors": errors,
            "directions": {c: s.direction for c, s in specs.items()}}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3f}"


def write_report(path: Path, results: list[dict], meta: dict[str, Any]) -> None:
    """Markdown tables (one per oracle quantity) + timings; and the raw JSON beside it."""
    from xcurate.utils import atomic_path, write_json_atomic

    scorers = meta["scorers"]
    lines = [f"# Oracle benchmark: Spearman agreement of each scorer with the oracle ({meta['status']})", "",
             "Command:", "", "```", meta["command"], "```", "",
             f"- Source: {meta['source_size']} transitions per robot, collected in the unshifted domain: "
             "1/3 random, 1/3 medium, 1/3 expert (policies below; action noise "
             f"{meta['noise']} for medium/expert), raw qpos/qvel stored.",
             f"- Target: {meta['target_size']} transitions per target domain (1/2 medium, 1/2 expert policy "
             "acting in the target domain).",
             f"- Budget: `{meta['budget']}`" + (" (training steps: " + "; ".join(
                 f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in SMALL_BUDGET.items()) + "; "
                 "ot, knn have no training)" if meta["budget"] == "small" else " (scorer defaults)") + ".",
             f"- Seed {meta['seed']}; torch threads {meta['threads']}.",
             f"- Machine: {meta['machine']}. Load average at start {meta['load_start']}, now {meta['load_now']} "
             "(the CPU is shared with other processes: wall times are inflated and noisy).",
             f"- Started {meta['started']}, last update {meta['updated']}.",
             *(f"- Note: {n}" for n in meta.get("notes", [])), "",
             "**Sign convention: POSITIVE = the score agrees with the oracle.** For higher-is-better columns "
             "(`*_score`, `advantage_norm`, `dara_delta_r`) the table shows -rho (they should rank low-error "
             "transitions high); for lower-is-better columns (`tbm`, distances, penalties) it shows +rho. "
             "Spearman over the source rows the oracle replayed exactly (`oracle_valid`), with each scorer's "
             "primary column; all directional columns are in the per-column table further down.", ""]
    for q, title in (("oracle_bellman_error", "oracle Bellman error |r + g V(s') - (r_tar + g V(s'_tar))|"),
                     ("oracle_dynamics_gap", "oracle dynamics gap ||s' - s'_tar||")):
        lines += [f"## Agreement with the {title}", "",
                  "| robot / target domain | n valid | " + " | ".join(scorers) + " |",
                  "|---|---:|" + "---:|" * len(scorers)]
        for r in results:
            cells = []
            for s in scorers:
                col = (r.get("primary") or {}).get(s)
                val = r.get("rho", {}).get(s, {}).get(col, {}).get(q) if col else None
                cells.append("failed" if s in r.get("errors", {}) else _fmt(val))
            lines.append(f"| {r['domain']} | {r.get('n_valid', 0)} | " + " | ".join(cells) + " |")
        lines.append("")
    if any(r.get("rho_within_quality") for r in results):
        for q, title in (("oracle_bellman_error", "Bellman error"), ("oracle_dynamics_gap", "dynamics gap")):
            lines += [f"## Within-quality agreement with the oracle {title} (mean of the signed Spearman within the "
                      "random, medium and expert strata of the source)", "",
                      "| robot / target domain | " + " | ".join(scorers) + " |", "|---|" + "---:|" * len(scorers)]
            for r in results:
                cells = []
                for s in scorers:
                    col = (r.get("primary") or {}).get(s)
                    val = r.get("rho_within_quality", {}).get(s, {}).get(col, {}).get(q) if col else None
                    cells.append("failed" if s in r.get("errors", {}) else _fmt(val))
                lines.append(f"| {r['domain']} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["Primary columns: " + ", ".join(
        f"{s}: `{next((r['primary'][s] for r in results if r.get('primary', {}).get(s)), '?')}`"
        for s in scorers) + ".", ""]
    lines += ["## Wall time per scorer (s; fit + score from the run manifest)", "",
              "| robot / target domain | oracle | " + " | ".join(scorers) + " |",
              "|---|---:|" + "---:|" * len(scorers)]
    for r in results:
        rs = r.get("run_s", {})
        cells = [("failed" if s in r.get("errors", {}) else
                  (f"{rs[s]:.1f}" if s in rs and np.isfinite(rs[s]) else "n/a")) for s in ["oracle", *scorers]]
        lines.append(f"| {r['domain']} | " + " | ".join(cells) + " |")
    lines += ["", "## Every directional column (signed Spearman: Bellman error / dynamics gap)", "",
              "| robot / target domain | column | Bellman | gap | Bellman within quality | gap within quality |",
              "|---|---|---:|---:|---:|---:|"]
    for r in results:
        for s in scorers:
            for col, v in r.get("rho", {}).get(s, {}).items():
                w = r.get("rho_within_quality", {}).get(s, {}).get(col, {})
                lines.append(f"| {r['domain']} | `{col}` | {_fmt(v['oracle_bellman_error'])} | "
                             f"{_fmt(v['oracle_dynamics_gap'])} | {_fmt(w.get('oracle_bellman_error'))} | "
                             f"{_fmt(w.get('oracle_dynamics_gap'))} |")
    lines += ["", "## Oracle medians and failures", "",
              "| robot / target domain | median Bellman error | median dynamics gap | median gap random / medium / "
              "expert rows | failures |", "|---|---:|---:|---|---|"]
    for r in results:
        errs = "; ".join(f"{k}: {v}" for k, v in r.get("errors", {}).items()) or "-"
        mb, mg = r.get("oracle_bellman_median"), r.get("oracle_gap_median")
        mq = r.get("oracle_gap_median_by_quality", {})  # JSON round trips sort the keys: fix the order
        byq = " / ".join(f"{mq[k]:.3g}" if k in mq else "n/a" for k in ("random", "medium", "expert")) if mq else "-"
        lines.append(f"| {r['domain']} | {mb if mb is None else f'{mb:.4g}'} | "
                     f"{mg if mg is None else f'{mg:.4g}'} | {byq} | {errs} |")
    lines += ["", "## Behaviour policies", ""]
    for robot, info in meta.get("policies", {}).items():
        lines.append(f"- {robot}: " + "; ".join(f"{q}: {v['origin']} `{Path(v['policy']).parent.parent.name}/"
                                                f"{Path(v['policy']).name}`" if v['origin'] == "zoo" else
                                                f"{q}: {v['policy']}" for q, v in info.items()))
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines))
    write_json_atomic(path.with_suffix(".json"), {"meta": meta, "results": results})


def merge(paths: list[str], out: Path, notes: list[str] | None = None) -> int:
    """Combine the JSON results of several runs (same sizes and budget) into one report."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    meta = dict(parts[0]["meta"])
    for k in ("source_size", "target_size", "budget", "noise", "seed"):
        if any(p["meta"][k] != meta[k] for p in parts):
            raise SystemExit(f"error: cannot merge runs with different {k}")
    meta["command"] = "\n".join(p["meta"]["command"] for p in parts) + (
        "\n# (run in parallel; merged with: python benchmarks/bench_oracle_spearman.py --merge "
        + " ".join(paths) + f" --out {out})")
    meta["scorers"] = list(dict.fromkeys(s for p in parts for s in p["meta"]["scorers"]))
    meta["policies"] = {k: v for p in parts for k, v in p["meta"].get("policies", {}).items()}
    meta["status"] = "complete" if all(p["meta"]["status"] == "complete" for p in parts) else "partial"
    meta["started"] = min(p["meta"]["started"] for p in parts)
    meta["updated"] = max(p["meta"].get("updated", "") for p in parts)
    meta["load_start"] = ", ".join(p["meta"]["load_start"] for p in parts)
    meta["load_now"] = ", ".join(p["meta"].get("load_now", "?") for p in parts)
    meta["notes"] = [n for p in parts for n in p["meta"].get("notes", [])] + list(notes or [])
    write_report(out, [r for p in parts for r in p["results"]], meta)
    print(f"merged {len(paths)} run(s) -> {out}")
    return 0


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out), notes=args.note)
    import torch

    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.suite import default_targets
    from xcurate.scoring.base import available_scorers
    from xcurate.utils import data_root

    torch.set_num_threads(args.threads)
    scorers = args.scorers or [s for s in available_scorers() if s != "oracle"]
    workdir = Path(args.workdir) if args.workdir else data_root() / "bench-oracle"
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def load() -> str:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())

    meta: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None
                                                                                else sys.argv[1:])]),
        "source_size": args.source_size, "target_size": args.target_size, "budget": args.budget,
        "noise": args.noise, "seed": args.seed, "threads": args.threads, "scorers": scorers,
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, {platform.system()}, no GPU used"
                   if not torch.cuda.is_available() else f"{os.cpu_count()} CPUs + {torch.cuda.get_device_name()}",
        "load_start": load(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_start)),
        "policies": {}, "status": "running", "notes": list(args.note)}
    results: list[dict] = []
    for robot in args.robots:
        domains = ([d for d in args.domains if get_domain(d).robot == robot] if args.domains
                   else default_targets(robot))
        if not domains:
            continue
        log(f"{robot}: source {args.source_size}, targets {domains}")
        src, info = make_source(robot, args.source_size, args.noise, args.seed, workdir, log)
        row_quality = info.pop("_row_quality")
        meta["policies"][robot] = info
        for domain in domains:
            log(f" {domain}")
            tgt, _ = make_target(domain, robot, args.target_size, args.noise, args.seed, workdir, log)
            res = run_domain(robot, domain, src, tgt, scorers, args.budget, args.seed, workdir, log,
                             row_quality=row_quality)
            results.append(res)
            meta.update(load_now=load(), updated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                        elapsed_s=round(time.time() - t_start, 1))
            write_report(out, results, meta)
            log(f" wrote {out} ({len(results)} domain(s), {time.time() - t_start:.0f}s elapsed)")
    meta.update(status="complete", load_now=load(), updated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                elapsed_s=round(time.time() - t_start, 1))
    write_report(out, results, meta)
    log(f"done in {time.time() - t_start:.0f}s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
