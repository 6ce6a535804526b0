"""MuJoCo planted benchmark: do the scorers find the source rows that follow the target dynamics?

For each case (a target domain), :func:`xcurate.datasets.planted.planted_mujoco` collects a
source made of rows from the unshifted robot and rows collected in the target domain itself
(label ``planted``), by the robot's medium and expert policies, and a small target from a
*different* policy in the target domain. Every scorer variant is run through a score store with
``holdout`` (20% of the target kept out of every fit) and, per column (in its declared
direction), the benchmark reports:

* ``auc``: ROC AUC of the column against the planted label (1 = every planted row ranked first);
* ``rho``: aligned Spearman against the oracle dynamics gap (+1 = ranks exactly like the oracle);
* ``holdout_auc``: the label-free signal (held-out target rows vs source rows);
* ``matched_win``: the behaviour-matched label-free signal (held-out rows vs their nearest source
  rows in (s, a); :mod:`xcurate.diagnostics.holdout`);
* ``cpu_s``: CPU seconds of fit + score (process time, 1 thread);

plus the best trivial baseline per case (reward, ||s||, ||s'||, ||s' - s||, either sign): a
scorer that does not beat it may only be detecting the state distribution, not the dynamics.
At the end: the Spearman across (case x column) between each label-free signal and the planted
AUC / oracle rho, and how close ``curate --recipe auto``'s choice (by either signal) comes to the
best fixed column.

Resumable: datasets and stores live in ``--workdir`` (complete scorer runs are cached) and the
JSON results are rewritten after each (case, variant).

Examples::

    python benchmarks/planted_mujoco.py --budget test --cases hopper-gravity-0.5 --out /tmp/pm.md
    OMP_NUM_THREADS=1 python benchmarks/planted_mujoco.py --budget test     # every default case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: training budgets of the learned scorers; "default" = each scorer's own defaults.
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "test": {"contrastive": {"steps": 1000}, "advantage": {"steps": 1000},
             "tbm": {"encoder_steps": 1000, "finetune_steps": 300, "value_steps": 500},
             "ensemble": {"steps": 1000, "value_steps": 500}, "dara": {"steps": 1000},
             "transfer": {"pretrain_steps": 1500, "finetune_steps": 500},
             "selftrain": {"steps": 1500, "rounds": 4}},
    "default": {},
}

#: scorer variants: name -> (scorer, settings on top of the budget)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "knn": ("knn", {}),
    "ot": ("ot", {}),
    "ot:official": ("ot", {"official": True}),
    "ot:delta-sqeuclidean": ("ot", {"features": "delta", "normalize": "target", "cost": "sqeuclidean"}),
    "contrastive": ("contrastive", {}),
    "dara": ("dara", {}),
    "dara:noise0.01": ("dara", {"input_noise": 0.01}),
    "ensemble": ("ensemble", {}),
    "tbm": ("tbm", {}),
    "tbm:target-norm": ("tbm", {"normalize": "target"}),
    "transfer": ("transfer", {}),
    "transfer:residual": ("transfer", {"mode": "residual"}),
    "selftrain": ("selftrain", {}),
    "contrastive:delta": ("contrastive", {"next_input": "delta"}),
    "dara:delta": ("dara", {"next_input": "delta"}),
}
DEFAULT_VARIANTS = ["knn", "ot", "ot:delta-sqeuclidean", "contrastive", "dara", "dara:noise0.01", "ensemble",
                    "tbm", "transfer"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    from xcurate.datasets.planted import DEFAULT_CASES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="target domains")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=sorted(VARIANTS))
    p.add_argument("--budget", choices=sorted(BUDGETS), default="test")
    p.add_argument("--n-part", type=int, default=1500, help="source rows per (policy, dynamics) part")
    p.add_argument("--n-target", type=int, default=1500, help="target rows")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--holdout-block", type=int, default=None,
                   help="rows per held-out target segment (default: xcurate.scoring.store.HOLDOUT_BLOCK)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="benchmarks/results/planted-mujoco.md")
    p.add_argument("--workdir", default=None, help="datasets and stores (default $XCURATE_DATA/bench-planted)")
    return p.parse_args(argv)


def variant_settings(name: str, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(scorer, settings) of a variant at the benchmark's budget and seed."""
    scorer_name, extra = VARIANTS[name]
    return scorer_name, {**BUDGETS[args.budget].get(scorer_name, {}), **extra, "seed": args.seed, "device": "cpu"}


def trivial_baselines(src: Any) -> dict[str, float]:
    """AUC of reward, ||s||, ||s'||, ||s' - s|| against the planted label, best sign."""
    from xcurate.datasets.synthetic import auc

    lab = src.extras["planted"]
    cols = {"reward": src.rewards, "|s|": np.linalg.norm(src.observations, axis=1),
            "|s'|": np.linalg.norm(src.next_observations, axis=1),
            "|s'-s|": np.linalg.norm(src.next_observations - src.observations, axis=1)}
    return {k: max(auc(v, lab), 1 - auc(v, lab)) for k, v in cols.items()}


def column_metrics(values: np.ndarray, direction: str, planted: np.ndarray, gap: np.ndarray) -> dict[str, float]:
    """AUC vs the planted label and aligned Spearman vs the oracle gap, for one column."""
    from scipy.stats import spearmanr

    from xcurate.datasets.synthetic import auc
    from xcurate.diagnostics.holdout import oriented

    v = oriented(values, direction)
    m = np.isfinite(v)
    g = m & np.isfinite(gap)
    rho = float(spearmanr(v[g], -gap[g]).statistic) if g.sum() > 2 else float("nan")
    return {"auc": auc(v[m], planted[m]) if m.any() else float("nan"), "rho": rho}


def run_case(case: str, args: argparse.Namespace, workdir: Path, results: dict[str, Any], save) -> None:
    """Collect (cached), score every variant (cached in the store) and record the metrics."""
    import pyarrow.parquet as pq

    from xcurate.datasets.io import load_dataset, save_dataset
    from xcurate.datasets.planted import planted_mujoco
    from xcurate.diagnostics.holdout import _store_matches, holdout_stats, matched_stats, oriented
    from xcurate.scoring import make_scorer
    from xcurate.scoring.store import Store

    cdir = workdir / case
    sp, tp = cdir / "source.hdf5", cdir / "target.hdf5"
    if not sp.exists():
        t0 = time.perf_counter()
        tg, src = planted_mujoco(case, n_part=args.n_part, n_target=args.n_target, seed=args.seed)
        cdir.mkdir(parents=True, exist_ok=True)
        save_dataset(tg, tp)
        save_dataset(src, sp)
        print(f"[{case}] collected {len(src)} source / {len(tg)} target rows in {time.perf_counter() - t0:.0f}s",
              flush=True)
    src, tg = load_dataset(sp), load_dataset(tp)
    store = Store.create(cdir / "store", src, tg, domain=case)
    rid = store.run(make_scorer("oracle", domain=case), source=src, target=tg, progress=False)
    gap = pq.read_table(store.dir / "runs" / rid / "scores.parquet").column(
        "oracle_dynamics_gap").to_numpy(zero_copy_only=False).astype(np.float64)
    planted = src.extras["planted"].astype(np.int8)
    entry = results["cases"].setdefault(case, {"variants": {}})
    entry.update({"n_source": len(src), "n_target": len(tg), "baselines": trivial_baselines(src),
                  "unplanted_gap_median": float(np.nanmedian(gap[planted == 0])),
                  "unplanted_gap_below_1e-3": float(np.nanmean(gap[planted == 0] < 1e-3)),
                  "target_policy": src.metadata["planted_case"]["target_policy"]["spec"].split("/")[-3:]})
    matches: dict[bytes, Any] = {}
    for name in args.variants:
        if name in entry["variants"] and "matched_win" in next(iter(entry["variants"][name]["columns"].values()), {}):
            continue
        scorer_name, settings = variant_settings(name, args)
        sc = make_scorer(scorer_name, **settings)
        t0, c0 = time.perf_counter(), time.process_time()
        rid = store.run(sc, source=src, target=tg, progress=False, holdout=args.holdout,
                        holdout_block=args.holdout_block)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        m = json.loads((store.dir / "runs" / rid / "manifest.json").read_text())
        scored = pq.read_table(store.dir / "runs" / rid / "scores.parquet")
        held = pq.read_table(store.dir / "runs" / rid / "holdout.parquet")
        hid = held.column("transition_id").to_numpy()
        if hid.tobytes() not in matches:
            matches[hid.tobytes()] = _store_matches(store, hid)
        rows_m, idx_m, dist_m = matches[hid.tobytes()]
        cols = {}
        for col, spec in m["columns"].items():
            if spec["direction"] not in ("higher", "lower"):
                continue
            vals = scored.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
            hv = held.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
            ov, oh = oriented(vals, spec["direction"]), oriented(hv, spec["direction"])
            hs = holdout_stats(ov, oh)
            ms = matched_stats(ov[rows_m], oh, idx_m, dist_m)
            cols[col] = {**column_metrics(vals, spec["direction"], planted, gap), "direction": spec["direction"],
                         "holdout_auc": hs["holdout_auc"], "keep_share": hs["source_above_holdout_q10"],
                         "matched_win": ms["matched_win"], "match_distance": ms["match_distance"]}
        entry["variants"][name] = {"scorer": scorer_name, "settings": settings, "primary": m.get("primary"),
                                   "cpu_s": cpu, "wall_s": wall, "cached": cpu < 1.0 and wall < 2.0,
                                   "columns": cols}
        best = max(cols.items(), key=lambda kv: kv[1]["auc"])
        print(f"[{case}] {name}: primary {m.get('primary')} AUC {cols[m['primary']]['auc']:.3f} "
              f"(best column {best[0]} {best[1]['auc']:.3f}), cpu {cpu:.0f}s", flush=True)
        save()


def consensus_pass(case: str, args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    """Add each column's ``consensus`` (agreement with the other scorers' columns) to the results."""
    import pyarrow.parquet as pq

    from xcurate.diagnostics.holdout import consensus, oriented
    from xcurate.scoring import make_scorer
    from xcurate.scoring.store import Store

    entry = results["cases"][case]
    store = Store(workdir / case / "store")
    values, groups = {}, {}
    for name in args.variants:
        scorer_name, settings = variant_settings(name, args)
        rid = store.run(make_scorer(scorer_name, **settings), progress=False, holdout=args.holdout,
                        holdout_block=args.holdout_block)  # cached
        scored = pq.read_table(store.dir / "runs" / rid / "scores.parquet")
        for col, c in entry["variants"][name]["columns"].items():
            values[f"{name}/{col}"] = oriented(scored.column(col).to_numpy(zero_copy_only=False).astype(np.float64),
                                               c["direction"])
            groups[f"{name}/{col}"] = scorer_name
    for key, val in consensus(values, groups).items():
        name, col = key.split("/", 1)
        entry["variants"][name]["columns"][col]["consensus"] = val


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per (variant, column): mean / min AUC and rho over cases; holdout-signal Spearman; auto regret."""
    from scipy.stats import spearmanr

    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    pairs = []
    auto: dict[str, list[dict[str, Any]]] = {"holdout_auc": [], "matched_win": [], "consensus": []}
    for case, e in results["cases"].items():
        cand = []
        for vname, v in e["variants"].items():
            for col, c in v["columns"].items():
                r = rows.setdefault((vname, col), {"auc": [], "rho": [], "holdout_auc": [], "matched_win": [],
                                                   "consensus": [], "cases": []})
                for k in ("auc", "rho", "holdout_auc", "matched_win", "consensus"):
                    r[k].append(c.get(k, float("nan")))
                r["cases"].append(case)
                mw, co = c.get("matched_win", float("nan")), c.get("consensus", float("nan"))
                if np.isfinite(c["holdout_auc"]) and np.isfinite(c["auc"]):
                    pairs.append((c["holdout_auc"], c["auc"], c["rho"], mw, co))
                    cand.append({"holdout_auc": c["holdout_auc"], "matched_win": mw if np.isfinite(mw) else -1.0,
                                 "consensus": co if np.isfinite(co) else -1.0, "auc": c["auc"],
                                 "name": f"{vname}/{col}"})
        if cand:
            best = max(cand, key=lambda t: t["auc"])
            for sig_name, lst in auto.items():
                chosen = max(cand, key=lambda t: (t[sig_name], t["name"]))
                lst.append({"case": case, "chosen": chosen["name"], "chosen_auc": chosen["auc"], "best": best["name"],
                            "best_auc": best["auc"], "within_5pct": chosen["auc"] >= 0.95 * best["auc"]})
    table = []
    for (vname, col), r in sorted(rows.items()):
        a = np.array(r["auc"], float)
        rho = np.array(r["rho"], float)
        table.append({"variant": vname, "column": col, "mean_auc": float(np.nanmean(a)), "min_auc": float(np.nanmin(a)),
                      "mean_rho": float(np.nanmean(rho)), "mean_holdout_auc": float(np.nanmean(r["holdout_auc"])),
                      "mean_matched_win": _nanmean(r["matched_win"]), "mean_consensus": _nanmean(r["consensus"]),
                      "n_cases": len(a)})
    pa_ = np.array(pairs, float) if pairs else np.zeros((0, 5))
    sig: dict[str, Any] = {}
    if len(pa_) > 3:
        sig["n_pairs"] = len(pa_)
        for j, name in ((0, "holdout"), (3, "matched"), (4, "consensus")):
            ok = np.isfinite(pa_[:, j])
            for k, what in ((1, "auc"), (2, "rho")):
                sig[f"spearman_{name}_vs_{what}"] = (float(spearmanr(pa_[ok, j], pa_[ok, k]).statistic)
                                                    if ok.sum() > 3 else float("nan"))
    within = {k: float(np.mean([a["within_5pct"] for a in v])) if v else float("nan") for k, v in auto.items()}
    return {"columns": table, "holdout_signal": sig, "auto": auto["holdout_auc"], "auto_matched": auto["matched_win"],
            "auto_consensus": auto["consensus"], "auto_within_5pct": within["holdout_auc"],
            "auto_matched_within_5pct": within["matched_win"], "auto_consensus_within_5pct": within["consensus"]}


def _nanmean(x: list[float]) -> float:
    a = np.asarray(x, float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def render(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """Markdown report."""
    cases = list(results["cases"])
    lines = ["# MuJoCo planted benchmark", "", f"Command: `{results['command']}`", "",
             f"Budget `{results['budget']}`, {results['n_part']} rows per (policy, dynamics) source part, "
             f"{results['n_target']} target rows, holdout {results['holdout']} (blocks of "
             f"{results.get('holdout_block', 1)} rows), seed {results['seed']}; "
             f"{results['host']}. AUC: planted (target-dynamics) rows vs the rest, each column in its declared "
             "direction. rho: aligned Spearman with the oracle dynamics gap (+1 = ranks like the oracle).", "",
             "## Cases", "", "| case | source / target rows | target policy | unplanted median gap | best trivial "
             "baseline (AUC) |", "|---|---|---|---|---|"]
    for c in cases:
        e = results["cases"][c]
        b = max(e["baselines"].items(), key=lambda kv: kv[1])
        lines.append(f"| {c} | {e['n_source']} / {e['n_target']} | {'/'.join(e['target_policy'][:2])} | "
                     f"{e['unplanted_gap_median']:.3g} | {b[0]} {b[1]:.3f} |")
    lines += ["", "## AUC per column (mean, min over cases) and oracle Spearman", "",
              "| variant | column | " + " | ".join(cases) + " | mean AUC | min AUC | mean rho | mean holdout AUC | "
              "mean matched win | mean consensus |", "|---|---|" + "---|" * (len(cases) + 6)]
    for r in summary["columns"]:
        per = []
        for c in cases:
            v = results["cases"][c]["variants"].get(r["variant"], {}).get("columns", {}).get(r["column"])
            per.append(f"{v['auc']:.2f}" if v else "–")
        lines.append(f"| {r['variant']} | `{r['column']}` | " + " | ".join(per) +
                     f" | **{r['mean_auc']:.3f}** | {r['min_auc']:.3f} | {r['mean_rho']:+.3f} | "
                     f"{r['mean_holdout_auc']:.3f} | {r['mean_matched_win']:.3f} | {r['mean_consensus']:+.3f} |")
    lines += ["", "## Cost (CPU seconds of fit + score, 1 thread; loaded machine)", "",
              "| variant | " + " | ".join(cases) + " |", "|---|" + "---|" * len(cases)]
    for vname in results["variants"]:
        per = []
        for c in cases:
            v = results["cases"][c]["variants"].get(vname)
            per.append(f"{v['cpu_s']:.0f}" if v else "–")
        lines.append(f"| {vname} | " + " | ".join(per) + " |")
    sig = summary["holdout_signal"]
    lines += ["", "## Label-free validation", ""]
    if sig:
        lines += [f"Spearman across {sig['n_pairs']} (case x column) pairs between each label-free signal and the "
                  "planted AUC / the oracle rho:", "", "| signal | vs planted AUC | vs oracle rho |", "|---|---|---|"]
        for name, label in (("holdout", "holdout AUC"), ("matched", "matched win"), ("consensus", "consensus")):
            lines.append(f"| {label} | **{sig[f'spearman_{name}_vs_auc']:+.3f}** | "
                         f"**{sig[f'spearman_{name}_vs_rho']:+.3f}** |")
    for key, label in (("auto", "highest holdout AUC"), ("auto_matched", "highest matched win"),
                       ("auto_consensus", "highest consensus")):
        lines += ["", f"`auto` ({label}) against the best fixed column per case:", "",
                  "| case | auto's column | its AUC | best column | best AUC | within 5% |", "|---|---|---|---|---|---|"]
        for a in summary[key]:
            lines.append(f"| {a['case']} | `{a['chosen']}` | {a['chosen_auc']:.3f} | `{a['best']}` | "
                         f"{a['best_auc']:.3f} | {'yes' if a['within_5pct'] else 'no'} |")
        lines.append(f"\nauto ({label}) within 5% of the best fixed column on "
                     f"{100 * summary[key + '_within_5pct']:.0f}% of the cases.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    import xcurate.scoring.store as store_mod

    args.holdout_block = store_mod.check_holdout_block(args.holdout_block)
    from xcurate.utils import data_root, write_json_atomic

    workdir = Path(args.workdir) if args.workdir else data_root() / "bench-planted" / args.budget
    out = Path(args.out)
    jpath = out.with_suffix(".json")
    results: dict[str, Any] = json.loads(jpath.read_text()) if jpath.exists() else {}
    results.update({"budget": args.budget, "n_part": args.n_part, "n_target": args.n_target, "holdout": args.holdout,
                    "holdout_block": args.holdout_block, "seed": args.seed, "variants": args.variants,
                    "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                    "host": f"{platform.node() and 'CPU'} {os.cpu_count()} cores, torch threads {args.threads}"})
    results.setdefault("cases", {})
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        summary = summarize(results)
        write_json_atomic(jpath, {**results, "summary": summary})
        out.write_text(render(results, summary))

    for case in args.cases:
        run_case(case, args, workdir, results, save)
        consensus_pass(case, args, workdir, results)
        save()
    print(f"wrote {out} and {jpath}")


if __name__ == "__main__":
    main()
