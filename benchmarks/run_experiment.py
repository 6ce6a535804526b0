"""The suite experiment: tasks x curation recipes x seeds, end to end.

For every task (a shifted target domain of one robot):

1. build the datasets if missing (``xcurate.datasets.suite``): source ``<robot>/source/<q>-v0``
   and target ``<task>/target/<tq>-v0``;
2. create a score store and run the scorers the recipes need (cached: re-runs are no-ops);
3. curate the source with each recipe (``xcurate.curate.recipes``) and export it as Parquet;
4. train weighted IQL with K seeds in one process (``--mode paper``: the recipe's paper variant,
   per-batch normalisation; ``--mode static``: the curated weight/keep columns), plus two
   baselines: ``target-only`` and ``none`` (all source rows, weight 1), and two controls (unless
   ``--no-controls``): ``oracle`` (curated with the true target dynamics: the ``oracle`` scorer's
   ``oracle_dynamics_gap``, ``--oracle-mode``/``--oracle-fraction``; the ceiling) and ``random``
   (a uniform seeded keep at the oracle arm's kept fraction; the floor);
5. write ``results.md`` / ``results.json`` (last and best score, mean +/- std over seeds) and the
   statistics (:mod:`xcurate.diagnostics.stats`, rliable): IQM with stratified-bootstrap 95% CIs
   over tasks x seeds, probability of improvement over each baseline, the claim check (does an arm
   beat both baselines beyond the CIs?) overall and per task, each recipe's regret
   (recipe - unfiltered) / (oracle - unfiltered) with its CI, and a CI plot ``ci.png``.

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

    python benchmarks/run_experiment.py --out runs/suite --steps 1000000 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

DEFAULT_TASKS = ["hopper-friction-0.5", "walker2d-kinematic-footjnt-medium", "halfcheetah-morph-torso-medium",
                 "ant-gravity-0.5"]
DEFAULT_RECIPES = ["otdf", "igdf", "dvdf", "tabb", "droco", "dara"]
RECIPE_SCORERS = {"none": [], "otdf": ["ot"], "igdf": ["contrastive"], "dvdf": ["contrastive", "advantage"],
                  "tabb": ["tbm"], "droco": ["ensemble"], "dara": ["dara"], "sql": [], "oracle": ["oracle"],
                  "random": []}
#: The control arms (trained unless --no-controls): the ceiling and the floor of curation.
CONTROLS = ("oracle", "random")


def log(msg: str) -> None:
    """Timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_planted(task: str, out: Path, source_size: int, target_size: int, seed: int = 0,
                   lake: bool = False) -> tuple[str, str]:
    """The planted MuJoCo task of ``task`` (:func:`xcurate.datasets.planted.planted_mujoco`), cached.

    With ``lake``: the planted lake (:func:`xcurate.datasets.planted.planted_lake`): 3/4 of the
    source from the robot's expert in the unshifted robot, 1/4 from the best zoo agent in ``task``
    (``planted`` = 1), the target from the agent closest to a quarter of that agent's return.

    The source has ``source_size`` rows: the case's medium and expert policies (the zoo agents where
    ``../shared`` is present, else the builtin ones), each half in the
    unshifted robot and half in ``task`` itself (column ``planted`` = 1); the target has
    ``target_size`` rows from a different agent in ``task``. Written once under ``out/data``.
    """
    from xcurate.datasets.io import save_dataset
    from xcurate.datasets.planted import lake_case, planted_case, planted_lake, planted_mujoco

    d = out / ("data-lake" if lake else "data") / task
    src, tgt = d / "source.parquet", d / "target.parquet"
    if not (src.exists() and tgt.exists()):
        t0 = time.time()
        if lake:  # 3/4 source expert in the unshifted robot, 1/4 the best in-domain agent
            n_in = max(1, source_size // 4)
            target, source = planted_lake(lake_case(task), n_source=max(1, source_size - n_in), n_indomain=n_in,
                                          n_target=target_size, seed=seed)
        else:
            case = planted_case(task)
            n_part = max(1, source_size // (2 * len(case.source_policies)))
            target, source = planted_mujoco(case, n_part=n_part, n_target=target_size, seed=seed)
        d.mkdir(parents=True, exist_ok=True)
        save_dataset(target, tgt)
        save_dataset(source, src)
        log(f"{task}: planted source {len(source)} rows ({int(source.extras['planted'].sum())} planted), "
            f"target {len(target)} rows ({time.time() - t0:.0f} s)")
    return str(src), str(tgt)


def ensure_datasets(task: str, source_q: str, target_q: str, source_size: int, target_size: int,
                    out: Path) -> tuple[str, str]:
    """Build the task's source and target datasets if they are missing; return their ids (planted: paths)."""
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.suite import SuiteConfig, build_suite

    if source_q in ("planted", "lake"):
        return ensure_planted(task, out, source_size, target_size, lake=source_q == "lake")
    robot = get_domain(task).robot
    if source_q == "mixed":  # the data-lake case: unshifted robot + the robot's shifted domains, 3 policies
        from xcurate.datasets.io import read_manifest
        from xcurate.datasets.suite import default_targets

        cfg = SuiteConfig(robots=[robot], shifts=[task], source_size=source_size, target_size=target_size,
                          source_qualities=[], target_qualities=[target_q], mixed=True,
                          mixed_domains=list(dict.fromkeys([*default_targets(robot), task])))
        build_suite(cfg, progress=False, log=log)
        src = f"{robot}/source/mixed-v0"
        doms = (read_manifest(cfg_path(src)) or {}).get("metadata", {}).get("domains", [])
        if task not in doms:
            raise SystemExit(f"error: {src} was built without {task} (it mixes {', '.join(doms)}); "
                             "use another XCURATE_DATA for this task")
        return src, f"{task}/target/{target_q}-v0"
    cfg = SuiteConfig(robots=[robot], shifts=[task], source_size=source_size, target_size=target_size,
                      source_qualities=[source_q], target_qualities=[target_q])
    build_suite(cfg, progress=False, log=log)
    return f"{robot}/source/{source_q}-v0", f"{task}/target/{target_q}-v0"


def cfg_path(dataset_id: str) -> Path:
    """The data file of a dataset id under $XCURATE_DATA."""
    from xcurate.datasets import ids

    return ids.dataset_path(dataset_id)


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
    if args.source_file:  # bring your own lake: the files are used as they are (no building, no sizes)
        src_id, tgt_id = args.source_file, args.target_file
    else:
        src_id, tgt_id = ensure_datasets(task, args.source_quality, args.target_quality, args.source_size,
                                         args.target_size, out)
    store = Store.create(out / "stores" / task, src_id, tgt_id, domain=task)
    settings = parse_scorer_sets(args.scorer_set)
    recipes = [r for r in args.recipes.split(",") if r and r not in CONTROLS]
    controls = [] if args.no_controls else list(CONTROLS)
    for scorer in sorted({s for r in [*recipes, *controls] for s in RECIPE_SCORERS[r]}):
        t0 = time.time()
        store.run(make_scorer(scorer, seed=0, **settings.get(scorer, {})), progress=False, domain=task)
        log(f"{task}: scorer {scorer} done ({time.time() - t0:.0f} s)")
    from xcurate.datasets.domains import get_domain

    common = {"domain": task, "steps": args.steps, "n_seeds": args.seeds, "eval_every": args.eval_every,
              "eval_source_domain": get_domain(task).source.name if args.eval_source else None,
              "eval_episodes": args.eval_episodes, "log_every": max(1, min(1000, args.steps)),
              "reference": args.reference,
              "checkpoint_every": max(1, min(10_000, args.steps)),
              "overrides": dict(kv.split("=", 1) for kv in args.set),
              # static mode trains plain IQL on every curated file, also where the recipe wrote columns
              # (penalty, delta_r) that only its paper variant reads
              "force_variant": args.mode == "static"}
    # static source arms (and the controls): the curated source reaches Q and V only (iql) or also the
    # actor (iql-actor); without the actor, curation can only change the critic
    static = "iql-actor" if args.source_in == "critic_actor" else "iql"
    arms: list[tuple[str, str | None, str]] = [("target-only", None, "iql")]
    for recipe in dict.fromkeys(["none", *recipes]):  # the unfiltered baseline once, then each recipe
        path = out / "curated" / task / f"{recipe}.parquet"
        if not path.exists():
            curate_to_file(store, recipe, path)
        variant = PAPER_VARIANT[recipe] if args.mode == "paper" else static
        variant = static if variant in ("iql", "iql-actor") else variant  # plain IQL arms follow --source-in
        arms.append((recipe, str(path), variant))
    if controls:
        cur = out / "curated" / task
        opath, rpath = cur / "oracle.parquet", cur / "random.parquet"
        if not opath.exists():
            opts = {"mode": args.oracle_mode, "column": args.oracle_column}
            if args.oracle_mode in ("keep", "both"):
                opts["fraction"] = args.oracle_fraction
            if args.oracle_mode == "exact":
                opts["tolerance"] = args.oracle_tolerance
            curate_to_file(store, "oracle", opath, **opts)
        frac = kept_fraction(opath)
        if not rpath.exists():
            curate_to_file(store, "random", rpath, fraction=frac, seed=args.random_seed)
        log(f"{task}: oracle keeps {100 * frac:.1f}% of the source; random keeps the same fraction")
        arms += [("oracle", str(opath), static), ("random", str(rpath), static)]
    for name, source, variant in arms:
        run_dir = out / "runs" / task / name
        t0 = time.time()
        spec = RunSpec(target=tgt_id, source=source, variant=variant, **common)
        summary = train(spec, run_dir, progress=args.progress)
        log(f"{task} / {name} ({variant}): last {summary.get('last_mean', float('nan')):.1f} ± "
            f"{summary.get('last_std', float('nan')):.1f} ({time.time() - t0:.0f} s)")
        results.append({"task": task, "arm": name, "variant": variant, "run": str(run_dir), **summary,
                        **last_returns(run_dir)})


BASELINES = ("target-only", "none")


def last_returns(run_dir: Path) -> dict[str, Any]:
    """Raw mean returns per seed at the run's last evaluation and the best one (eval.csv ``return_mean``)."""
    import csv

    p = Path(run_dir) / "eval.csv"
    if not p.exists():
        return {}
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    last = max(int(r["step"]) for r in rows)
    per = {int(r["seed"]): float(r["return_mean"]) for r in rows if int(r["step"]) == last}
    best: dict[int, float] = {}
    for r in rows:
        k, v = int(r["seed"]), float(r["return_mean"])
        best[k] = max(best.get(k, v), v)
    return {"last_return_per_seed": [per[k] for k in sorted(per)],
            "best_return_per_seed": [best[k] for k in sorted(per)]}


def renormalize(results: list[dict], reference: str, folders: list[Path]) -> list[dict]:
    """The rows with their last scores re-normalised in another reference set, from the raw returns.

    Normalisation is affine, ``100 (J - J_min) / (J_max - J_min)``, so the scores of finished runs
    can be re-expressed in any reference set without re-training. A row's raw returns come from its
    ``last_return_per_seed`` or, for rows written before that field existed, from the eval.csv of
    ``<folder>/runs/<task>/<arm>`` in one of ``folders``; the best score (each seed's best evaluation)
    is re-normalised the same way.
    """
    import numpy as np

    from xcurate.datasets.domains import get_domain

    out = []
    for r in results:
        raw = {k: r.get(k) for k in ("last_return_per_seed", "best_return_per_seed")}
        if raw["last_return_per_seed"] is None or raw["best_return_per_seed"] is None:
            for d in folders:
                got = last_returns(Path(d) / "runs" / r["task"] / r["arm"])
                if got:
                    raw = got
                    break
        if raw.get("last_return_per_seed") is None:
            raise SystemExit(f"error: {r['task']} / {r['arm']}: no eval.csv with raw returns to re-normalise")
        dom = get_domain(r["task"])

        def norm(returns: list[float], dom=dom) -> np.ndarray:
            return np.asarray(dom.normalize(np.asarray(returns, float), reference=reference), float)

        last = norm(raw["last_return_per_seed"])
        row = {**r, "last_return_per_seed": list(raw["last_return_per_seed"]), "last_per_seed": last.tolist(),
               "last_mean": float(last.mean()), "last_std": float(last.std()), "reference": reference,
               "metric": f"normalized score (reference: {reference})"}
        if raw.get("best_return_per_seed") is not None:  # the best evaluation of each seed, same affine map
            best = norm(raw["best_return_per_seed"])
            row.update(best_return_per_seed=list(raw["best_return_per_seed"]), best_mean=float(best.mean()),
                       best_std=float(best.std()))
        else:  # a row with stored last returns only: its best is not re-normalised
            row.update(best_mean=float("nan"), best_std=float("nan"))
        out.append(row)
    return out


def kept_fraction(path: Path) -> float:
    """Kept fraction of a curated file, from its manifest (``config.kept / config.total``)."""
    from xcurate.datasets.io import read_manifest

    cfg = (read_manifest(path) or {}).get("config", {})
    return float(cfg["kept"]) / float(cfg["total"])


def score_arrays(results: list[dict], key: str = "last_per_seed") -> tuple[list[str], dict[str, Any]]:
    """(tasks, arm -> (seeds, tasks) array) over the tasks that every arm has, with the common seeds."""
    import numpy as np

    by: dict[str, dict[str, dict]] = {}
    for r in results:
        if key in r and r.get("seeds"):
            by.setdefault(r["arm"], {})[r["task"]] = r
    if not by:
        return [], {}
    tasks = sorted(set.intersection(*(set(v) for v in by.values())))
    out = {}
    for arm, rows in by.items():
        cols = []
        for t in tasks:
            seeds = set.intersection(*(set(by[a][t]["seeds"]) for a in by))
            per = dict(zip(rows[t]["seeds"], rows[t][key], strict=True))
            cols.append([per[s] for s in sorted(seeds)])
        n = min(len(c) for c in cols) if cols else 0
        out[arm] = np.array([c[:n] for c in cols], dtype=float).T
    return tasks, out


def stats_lines(results: list[dict], out: Path | None = None, reps: int = 2000, seed: int = 0) -> list[str]:
    """Markdown: IQM [95% CI] per arm, claim check, probability of improvement and regret (rliable)."""
    from xcurate.diagnostics import stats
    from xcurate.errors import ConfigError

    tasks, arrays = score_arrays(results)
    if not tasks or len(arrays) < 2:
        return ["(statistics need at least two arms on a common task)"]
    try:
        est = stats.interval_estimates(arrays, reps=reps, seed=seed)
    except ConfigError as e:
        return [f"(statistics skipped: {e})"]
    n_seeds = next(iter(arrays.values())).shape[0]
    metric = ", ".join(sorted({str(r.get("metric", "score")) for r in results}))
    lines = [f"IQM over {len(tasks)} task(s) x {n_seeds} seed(s) (last score; {metric}), stratified-bootstrap 95% CIs "
             f"({reps} resamples), probability of improvement P(arm > baseline):", ""]
    base = [b for b in BASELINES if b in arrays]
    has_reg = "oracle" in arrays and "none" in arrays
    head = "| arm | IQM [95% CI] | " + " | ".join(f"P(> {b})" for b in base)
    head += " | beats both beyond CI |" + (" regret [95% CI] |" if has_reg else "")
    lines += [head, "|---" * (3 + len(base) + has_reg) + "|"]
    for arm in sorted(arrays, key=lambda a: (a in BASELINES, a)):
        cells = [f"{est[arm]}"]
        for b in base:
            cells.append("-" if arm == b else str(stats.probability_of_improvement(arrays[arm], arrays[b], reps=reps,
                                                                                   seed=seed)))
        if arm in BASELINES or len(base) < len(BASELINES):
            cells.append("-")
        else:
            cells.append("**yes**" if all(est[arm].low > est[b].high for b in base) else "no")
        if has_reg:
            cells.append("-" if arm in ("none", "oracle", "target-only") else
                         str(stats.regret(arrays[arm], arrays["none"], arrays["oracle"], reps=reps, seed=seed)))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Per task (IQM over seeds [95% CI]; **bold**: above both baselines beyond the CIs):", ""]
    arms = sorted(arrays, key=lambda a: (a in BASELINES, a))
    lines += ["| task | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for j, t in enumerate(tasks):
        e = stats.interval_estimates({a: arrays[a][:, [j]] for a in arms}, reps=reps, seed=seed)
        cells = []
        for a in arms:
            win = a not in BASELINES and len(base) == len(BASELINES) and all(e[a].low > e[b].high for b in base)
            cells.append(f"**{e[a]}**" if win else str(e[a]))
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    if n_seeds < 5:
        lines += ["", f"Only {n_seeds} seed(s) per task: the intervals are wide (use --seeds 5 or more)."]
    if out is not None:
        stats.plot_intervals(est, out / "ci.png", title=f"IQM over {len(tasks)} task(s) x {n_seeds} seeds (95% CI)")
        lines += ["", "![IQM with 95% CIs](ci.png)"]
    return lines


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


BOOTSTRAP_REPS = 2000


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
    lines += ["", "## Interval estimates (rliable)", ""]
    lines += stats_lines(results, out, reps=BOOTSTRAP_REPS)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Experiment folder (stores, curated data, runs, results).")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    p.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    p.add_argument("--mode", choices=["paper", "static"], default="paper",
                   help="paper: per-batch normalisation variants; static: curated weight/keep columns.")
    p.add_argument("--source-quality", default="medium",
                   help="random | medium | expert | medium-expert, or mixed: <robot>/source/mixed-v0 (the unshifted "
                        "robot + its default shifted domains and the task's own dynamics, 10%% each, random/medium/"
                        "expert policies; provenance per row), or planted: the MuJoCo planted task "
                        "(xcurate.datasets.planted: medium+expert zoo agents, half of the source collected in the "
                        "task's own dynamics, target from another agent; the oracle's exact mode keeps the planted "
                        "rows), or lake: the planted lake (xcurate.datasets.planted.planted_lake: 3/4 from the "
                        "robot's expert in the unshifted robot, 1/4 from the best zoo agent in the task's own "
                        "dynamics, target from the zoo agent closest to a quarter of that agent's return; needs "
                        "../shared)")
    p.add_argument("--target-quality", default="medium")
    p.add_argument("--source-file", help="A source dataset file or id used as it is (one task only; with "
                                         "--target-file): e.g. a data lake built with `xcurate collect` and "
                                         "`xcurate datasets combine`. Overrides --source-quality/--source-size.")
    p.add_argument("--target-file", help="The target dataset file or id for --source-file.")
    p.add_argument("--source-size", type=int, default=1_000_000)
    p.add_argument("--target-size", type=int, default=5_000)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--source-in", choices=["critic", "critic_actor"], default="critic_actor",
                   help="Static mode and the controls: the source rows train Q and V only (variant iql) or also "
                        "the actor (variant iql-actor, the default; what the unfiltered IQL baselines of ODRL "
                        "and OTDF do). Results before 2026-12-03 used critic.")
    p.add_argument("--set", action="append", default=[], help="IQLConfig override key=value (repeatable).")
    p.add_argument("--scorer-set", action="append", default=[], help="SCORER.SETTING=VALUE (repeatable).")
    p.add_argument("--progress", action="store_true", help="Show training progress bars.")
    p.add_argument("--eval-source", action="store_true",
                   help="Also evaluate every policy in the unshifted source domain (eval_source.csv).")
    p.add_argument("--no-controls", action="store_true",
                   help="Do not train the oracle and random control arms.")
    p.add_argument("--oracle-mode", default="keep", choices=["keep", "weight", "both", "exact"],
                   help="oracle arm: keep the lowest-gap fraction, weight by exp(-gap/T), both, or exact (gap ~0).")
    p.add_argument("--oracle-fraction", type=float, default=0.5, help="oracle arm (keep/both): kept fraction.")
    p.add_argument("--oracle-column", default="oracle_dynamics_gap",
                   choices=["oracle_dynamics_gap", "oracle_bellman_error"])
    p.add_argument("--oracle-tolerance", type=float, default=1e-6, help="oracle arm (exact): largest gap ~0.")
    p.add_argument("--random-seed", type=int, default=0, help="Seed of the random arm's keep.")
    p.add_argument("--reference", default="measured", choices=["measured", "odrl", "otdf", "d4rl"],
                   help="Normalisation reference set of the scores (xcurate.datasets.reference_sets).")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="Only merge the results.json of these experiment folders into --out (no training); "
                        "with --renormalize, re-express every score in another reference set.")
    p.add_argument("--renormalize", action="store_true",
                   help="With --merge: re-normalise the last scores in --reference from the runs' raw returns.")
    args = p.parse_args()
    if bool(args.source_file) != bool(args.target_file):
        p.exit(1, "error: --source-file and --target-file go together\n")
    tasks = [t for t in args.tasks.split(",") if t]
    if args.source_file and len(tasks) != 1:
        p.exit(1, f"error: --source-file needs exactly one task in --tasks (got {args.tasks!r})\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        rows = [r for d in args.merge for r in json.loads((Path(d) / "results.json").read_text())]
        if args.renormalize:
            rows = renormalize(rows, args.reference, [Path(d) for d in args.merge])
        write_results(out, rows)
        return
    results: list[dict] = []
    for task in tasks:
        run_task(task, args, results)
        write_results(out, results)


if __name__ == "__main__":
    main()
