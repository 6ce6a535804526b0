"""The suite experiment: tasks x curation recipes x seeds, end to end.

For every task (a shifted target domain of one robot):

1. build the datasets if missing (``xcurate.datasets.suite``): source ``<robot>/source/<q>-v0``
   and target ``<task>/target/<tq>-v0``;
2. create a score store and run the scorers the recipes need (cached: re-runs are no-ops);
3. curate the source with each recipe (``xcurate.curate.recipes``) and export it as Parquet;
4. train weighted IQL with K seeds in one process (``--mode paper``: the recipe's paper variant,
   per-batch normalisation; ``--mode static``: the curated weight/keep columns), plus two
   baselines: ``target-only`` and ``none`` (all source rows, weight 1);
5. write ``results.md`` / ``results.json`` (last and best score, mean +/- std over seeds).

Every stage is resumable (datasets, score runs and training runs are cached / checkpointed).

Smoke test (minutes on 2 CPU cores)::

    python benchmarks/run_experiment.py --out /tmp/xexp --tasks hopper-friction-0.5 \\
        --recipes none,otdf --source-size 3000 --target-size 500 --steps 200 --eval-every 100 \\
        --eval-episodes 1 --seeds 2 --scorer-set ot.chunk_rows=3000

Two processes on a 2-core machine, then one table::

    python benchmarks/run_experiment.py --out /tmp/x/p1 --tasks hopper-friction-0.5,... &
    python benchmarks/run_experiment.py --out /tmp/x/p2 --tasks walker2d-...,ant-gravity-0.5 &
    wait; python benchmarks/run_experiment.py --out /tmp/x/all --merge /tmp/x/p1 /tmp/x/p2

Full experiment (hours; GPU recommended)::

    python benchmarks/run_experiment.py --out runs/suite --steps 1000000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_TASKS = ["hopper-friction-0.5", "walker2d-kinematic-footjnt-medium", "halfcheetah-morph-torso-medium",
                 "ant-gravity-0.5"]
DEFAULT_RECIPES = ["otdf", "igdf", "dvdf", "tabb", "droco", "dara"]
RECIPE_SCORERS = {"none": [], "otdf": ["ot"], "igdf": ["contrastive"], "dvdf": ["contrastive", "advantage"],
                  "tabb": ["tbm"], "droco": ["ensemble"], "dara": ["dara"], "sql": []}


def log(msg: str) -> None:
    """Timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_datasets(task: str, source_q: str, target_q: str, source_size: int, target_size: int) -> tuple[str, str]:
    """Build the task's source and target datasets if they are missing; return their ids."""
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.suite import SuiteConfig, build_suite

    robot = get_domain(task).robot
    cfg = SuiteConfig(robots=[robot], shifts=[task], source_size=source_size, target_size=target_size,
                      source_qualities=[source_q], target_qualities=[target_q])
    build_suite(cfg, progress=False, log=log)
    return f"{robot}/source/{source_q}-v0", f"{task}/target/{target_q}-v0"


def parse_scorer_sets(items: list[str]) -> dict[str, dict]:
    """``["ot.chunk_rows=3000"]`` -> ``{"ot": {"chunk_rows": 3000}}``."""
    from xcurate.scoring.store import parse_settings

    return parse_settings(items)


def run_task(task: str, args: argparse.Namespace, results: list[dict]) -> None:
    """Score, curate and train every recipe of one task."""
    from xcurate.curate.recipes import PAPER_VARIANT, curate_to_file
    from xcurate.policy.runs import RunSpec, train
    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.store import Store

    out = Path(args.out)
    src_id, tgt_id = ensure_datasets(task, args.source_quality, args.target_quality, args.source_size,
                                     args.target_size)
    store = Store.create(out / "stores" / task, src_id, tgt_id, domain=task)
    settings = parse_scorer_sets(args.scorer_set)
    recipes = [r for r in args.recipes.split(",") if r]
    for scorer in sorted({s for r in recipes for s in RECIPE_SCORERS[r]}):
        t0 = time.time()
        store.run(make_scorer(scorer, seed=0, **settings.get(scorer, {})), progress=False, domain=task)
        log(f"{task}: scorer {scorer} done ({time.time() - t0:.0f} s)")
    from xcurate.datasets.domains import get_domain

    common = {"domain": task, "steps": args.steps, "n_seeds": args.seeds, "eval_every": args.eval_every,
              "eval_source_domain": get_domain(task).source.name if args.eval_source else None,
              "eval_episodes": args.eval_episodes, "log_every": max(1, min(1000, args.steps)),
              "checkpoint_every": max(1, min(10_000, args.steps)),
              "overrides": dict(kv.split("=", 1) for kv in args.set)}
    arms: list[tuple[str, str | None, str]] = [("target-only", None, "iql")]
    for recipe in dict.fromkeys(["none", *recipes]):  # the unfiltered baseline once, then each recipe
        path = out / "curated" / task / f"{recipe}.parquet"
        if not path.exists():
            curate_to_file(store, recipe, path)
        variant = PAPER_VARIANT[recipe] if args.mode == "paper" else "iql"
        arms.append((recipe, str(path), variant))
    for name, source, variant in arms:
        run_dir = out / "runs" / task / name
        t0 = time.time()
        spec = RunSpec(target=tgt_id, source=source, variant=variant, **common)
        summary = train(spec, run_dir, progress=args.progress)
        log(f"{task} / {name} ({variant}): last {summary.get('last_mean', float('nan')):.1f} ± "
            f"{summary.get('last_std', float('nan')):.1f} ({time.time() - t0:.0f} s)")
        results.append({"task": task, "arm": name, "variant": variant, **summary})


BASELINES = ("target-only", "none")


def claim_lines(results: list[dict]) -> list[str]:
    """Markdown: does each curated arm beat both baselines (target-only, unfiltered) on each task?

    An arm "beats" a baseline when its last mean score is higher; "clearly" when the gap is also
    larger than the two standard deviations (over seeds) added together.
    """
    by_task: dict[str, dict[str, dict]] = {}
    for r in results:
        by_task.setdefault(r["task"], {})[r["arm"]] = r
    arms = sorted({r["arm"] for r in results if r["arm"] not in BASELINES})
    if not arms:
        return ["(no curated arm: only the baselines were trained)"]
    lines = ["| task | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    wins = dict.fromkeys(arms, 0)
    clear = dict.fromkeys(arms, 0)
    for task, rows in by_task.items():
        base = [rows[b] for b in BASELINES if b in rows]
        cells = []
        for arm in arms:
            r = rows.get(arm)
            if r is None or not base or "last_mean" not in r:
                cells.append("-")
                continue
            gaps = [r["last_mean"] - b["last_mean"] for b in base]
            is_win = all(g > 0 for g in gaps)
            is_clear = is_win and all(g > r["last_std"] + b["last_std"] for g, b in zip(gaps, base, strict=True))
            wins[arm] += is_win
            clear[arm] += is_clear
            cells.append(("**clearly**" if is_clear else "yes" if is_win else "no") + f" ({min(gaps):+.1f})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    n = len(by_task)
    lines.append("| **tasks won (clearly)** | " + " | ".join(f"{wins[a]}/{n} ({clear[a]})" for a in arms) + " |")
    return lines


def write_results(out: Path, results: list[dict]) -> None:
    """results.json and a Markdown table (scores, then the claim check)."""
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| task | arm | variant | metric | last (mean ± std) | best (mean ± std) | seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['arm']} | {r['variant']} | {r.get('metric', '-')} | "
                     f"{r.get('last_mean', float('nan')):.1f} ± {r.get('last_std', float('nan')):.1f} | "
                     f"{r.get('best_mean', float('nan')):.1f} ± {r.get('best_std', float('nan')):.1f} | "
                     f"{len(r.get('seeds', []))} |")
    lines += ["", "Curated arm beats both target-only and unfiltered IQL (last score; in brackets the smaller "
              "of the two gaps; **clearly**: the gap exceeds the two seed standard deviations added):", ""]
    lines += claim_lines(results)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Experiment folder (stores, curated data, runs, results).")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    p.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    p.add_argument("--mode", choices=["paper", "static"], default="paper",
                   help="paper: per-batch normalisation variants; static: curated weight/keep columns.")
    p.add_argument("--source-quality", default="medium")
    p.add_argument("--target-quality", default="medium")
    p.add_argument("--source-size", type=int, default=1_000_000)
    p.add_argument("--target-size", type=int, default=5_000)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--set", action="append", default=[], help="IQLConfig override key=value (repeatable).")
    p.add_argument("--scorer-set", action="append", default=[], help="SCORER.SETTING=VALUE (repeatable).")
    p.add_argument("--progress", action="store_true", help="Show training progress bars.")
    p.add_argument("--eval-source", action="store_true",
                   help="Also evaluate every policy in the unshifted source domain (eval_source.csv).")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="Only merge the results.json of these experiment folders into --out (no training).")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        write_results(out, [r for d in args.merge for r in json.loads((Path(d) / "results.json").read_text())])
        return
    results: list[dict] = []
    for task in [t for t in args.tasks.split(",") if t]:
        run_task(task, args, results)
        write_results(out, results)


if __name__ == "__main__":
    main()
