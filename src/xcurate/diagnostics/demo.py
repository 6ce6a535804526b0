"""``xcurate demo``: the whole pipeline end to end on a small task, offline, in minutes.

Stages (each timed; the timings go into ``demo.json``):

1. **collect**: a planted SOURCE dataset (:func:`xcurate.datasets.planted.planted_mujoco`, builtin
   policies): the builtin medium and expert policies, each half in the unshifted robot and half in
   the target domain itself (the ``planted`` column says which), and a small TARGET dataset in
   the shifted domain (the builtin expert, noisier), with raw qpos/qvel so the oracle can replay them.
2. **score**: every registered scorer (ot, knn, contrastive, advantage, tbm, ensemble, dara,
   oracle) with small budgets, into a score store.
3. **query**: a DuckDB query over the store (deciles of ``ot_score`` vs the oracle dynamics gap).
4. **curate**: a few recipes, the unfiltered ``none`` baseline and the two controls: ``oracle``
   (exact mode: keeps the rows the target's own dynamics produced, the ceiling) and ``random`` (a
   seeded uniform keep of the same fraction, the floor), exported as Parquet.
5. **train**: weighted IQL on each curated dataset, the unfiltered source and target only, K
   seeds per arm in one process.
6. **evaluate**: deterministic episodes in the target domain (part of training).
7. **diagnose**: the diagnostics report (``report/report.md``).

The summary says what to conclude (:func:`conclusion`): whether the oracle arm beats both
baselines beyond the seed spread (so curation can pay on this task at this budget), whether the
random arm does (so a gain would come from the amount of data, not from which rows), and how much
of the oracle's gain each recipe recovers.

Everything is local: builtin policies ship with the package, nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xcurate.errors import ConfigError

DEMO_MARKER = "demo.json"
#: default output directory, relative to the working directory (``-fast`` appended with --fast).
DEFAULT_OUT = "xcurate-demo"
#: folders and files the demo writes inside its output directory (removed by --force).
DEMO_ENTRIES = ("data", "store", "curated", "runs", "report", "query_ot_deciles.csv", DEMO_MARKER)


@dataclass
class DemoConfig:
    """Sizes and budgets of the demo (``fast()`` gives the CI-sized variant)."""

    target_domain: str = "hopper-gravity-0.5"  # shifted target domain (its robot is the source domain)
    n_part: int = 1_500  # source rows per (policy, dynamics) part: 4 parts (medium/expert x source/target dynamics)
    n_target: int = 1_500  # target transitions (builtin expert, action noise 0.3, in the target domain)
    scorers: tuple[str, ...] = ("ot", "knn", "contrastive", "advantage", "tbm", "ensemble", "dara", "oracle")
    scorer_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-scorer settings
    recipes: tuple[str, ...] = ("otdf", "igdf", "tabb")  # curation recipes trained besides the baselines
    controls: bool = True  # also train the oracle (exact: the planted rows) and random (same fraction) arms
    source_variant: str = "iql-actor"  # variant of the source arms: the curated source trains Q, V and the actor ("iql": Q and V only)
    train_steps: int = 2_000  # IQL updates per training run
    n_seeds: int = 3  # training seeds per arm (one process, batched); the summary reports mean +- std
    iql_overrides: dict[str, str] = field(default_factory=dict)  # IQLConfig key=value overrides
    eval_episodes: int = 5  # deterministic evaluation episodes in the target domain
    eval_max_steps: int | None = None  # cap on evaluation episode length (None: the env's 1000)
    bins: int = 10  # percentile groups of the diagnostics report
    torch_threads: int = 1  # torch CPU threads (1: small nets gain little from more, and busy CPUs lose a lot)
    seed: int = 0  # seed of collection, scorers and training

    @classmethod
    def default(cls, seed: int = 0) -> DemoConfig:
        """The default demo (about 12-15 minutes on a 2-core CPU: 656 s measured quietly with `iql` source arms; 1339 s under load with `iql-actor`)."""
        h = [128, 128]
        return cls(seed=seed, scorer_settings={
            "contrastive": {"steps": 1000, "hidden": h},
            "advantage": {"steps": 1000, "hidden": h},
            "tbm": {"encoder_steps": 1000, "finetune_steps": 300, "value_steps": 1000, "hidden": h,
                    "zs_dim": 32, "zsa_dim": 32},
            "ensemble": {"n_models": 5, "hidden": h, "steps": 1000, "value_steps": 1000,
                         "value_hidden": h},
            "dara": {"steps": 1000, "hidden": h},
        }, iql_overrides={"hidden_dim": "256"})

    @classmethod
    def fast(cls, seed: int = 0) -> DemoConfig:
        """The CI-sized demo (< 2 minutes on a 2-core CPU): tiny data and budgets."""
        h = [32, 32]
        return cls(seed=seed, n_part=300, n_target=400, train_steps=200, n_seeds=2, eval_episodes=1,
                   eval_max_steps=200, bins=5, recipes=("otdf", "tabb"), torch_threads=1,
                   scorer_settings={
                       "contrastive": {"steps": 60, "hidden": h, "embed_dim": 16},
                       "advantage": {"steps": 60, "hidden": h},
                       "tbm": {"encoder_steps": 60, "finetune_steps": 20, "value_steps": 60, "hidden": h,
                               "zs_dim": 8, "zsa_dim": 8},
                       "ensemble": {"n_models": 2, "hidden": h, "steps": 60, "value_steps": 60,
                                    "value_hidden": h},
                       "dara": {"steps": 60, "hidden": h},
                   },
                   iql_overrides={"hidden_dim": "32", "batch_source": "64", "batch_target": "64"})


def conclusion(results: list[dict[str, Any]], steps: int) -> str:
    """One paragraph: what the demo's scores say about curation on this task, at this budget.

    An arm "beats" another when its mean over seeds is higher by more than the two seed standard
    deviations added together (a rough check for 2-5 seeds; the experiment in ``benchmarks/`` uses
    bootstrap CIs). Each recipe's share of the oracle's gain is (recipe - unfiltered) / (oracle -
    unfiltered).
    """
    by = {r["name"]: r for r in results if r.get("last_mean") is not None}
    need = ("target-only", "unfiltered", "oracle", "random")
    if any(n not in by for n in need):
        return "The controls (oracle, random) were not trained, so the demo cannot say whether curation pays here."

    def beats(a: str, b: str) -> bool:
        ra, rb = by[a], by[b]
        return ra["last_mean"] - rb["last_mean"] > (ra.get("last_std") or 0.0) + (rb.get("last_std") or 0.0)

    o, u, t = by["oracle"]["last_mean"], by["unfiltered"]["last_mean"], by["target-only"]["last_mean"]
    base = max(u, t)
    if beats("oracle", "unfiltered") and beats("oracle", "target-only"):
        gain = 100.0 * (o - base) / abs(base) if base else float("inf")
        msg = (f"Curation can pay on this task: keeping only the source rows of the target's own dynamics "
               f"(oracle, {o:.1f}) beats both the unfiltered source ({u:.1f}) and the target alone ({t:.1f}) "
               f"by more than the seed spread ({gain:+.0f}% over the better baseline).")
        if beats("random", "unfiltered"):
            msg += " But the random keep of the same fraction also beats the unfiltered source: part of the gain is the amount of data, not which rows."
        else:
            msg += f" The random keep of the same fraction ({by['random']['last_mean']:.1f}) does not: which rows are kept matters."
        recs = [n for n in by if n not in need]
        if recs:
            parts = [f"{n} {100.0 * (by[n]['last_mean'] - u) / (o - u):.0f}%" for n in recs]
            msg += (" Share of the oracle's gain over unfiltered each recipe recovers: " + ", ".join(parts)
                    + " (100% = as good as the oracle, <= 0% = no better than not curating).")
        return msg
    return (f"At {steps} updates the oracle arm ({o:.1f}) does not beat both baselines (unfiltered {u:.1f}, "
            f"target-only {t:.1f}) beyond the seed spread, so this run cannot tell whether curation pays: "
            "the budget is too small or the task does not reward it. benchmarks/RESULTS.md "
            "(\"Does curation pay?\") has the 5-seed experiment with bootstrap CIs.")


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    out: Path  # the demo directory
    timings: dict[str, float]  # wall seconds per stage
    results: list[dict[str, Any]]  # one row per training run: name, source rows, score (last/best)
    report: Path  # the diagnostics report.md
    store: Path  # the score store directory


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    from xcurate.utils import check_output

    check_output(out, kind="dir", exist_ok=True)
    if out.exists() and any(out.iterdir()):
        if not (out / DEMO_MARKER).exists() and not (out / "store" / "store.json").exists():
            raise ConfigError(f"{out}: exists and holds other files (not a demo); choose an empty or new --out")
        if not force:
            raise ConfigError(f"{out}: already holds a demo; pass --force to replace it or choose another --out")
        for name in DEMO_ENTRIES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _fit_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings for scorer ``name`` with list values turned into tuples where the field is a tuple."""
    import dataclasses

    from xcurate.scoring.base import get_scorer_class

    cls = get_scorer_class(name)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    out = {}
    for k, v in settings.items():
        if isinstance(v, list) and isinstance(defaults.get(k), tuple):
            v = tuple(v)
        out[k] = v
    return out


def run_demo(out: str | Path | None = None, fast: bool = False, force: bool = False, seed: int = 0,
             config: DemoConfig | None = None, console: Any = None) -> DemoResult:
    """Run the demo pipeline into ``out`` and print a Rich summary.

    Args:
        out: output directory (default ``./xcurate-demo`` in the working directory, or
            ``./xcurate-demo-fast`` with ``fast``). The default directory's earlier demo is
            replaced automatically (so the README's first command runs again and again); an
            explicit ``out`` holding a demo needs ``force``. Either way a directory holding
            anything but a demo's own entries is refused, and only those entries are removed.
        fast: use :meth:`DemoConfig.fast` (CI-sized).
        force: replace a previous demo in ``out``.
        seed: random seed.
        config: a full :class:`DemoConfig` (overrides ``fast``/``seed``).
        console: a Rich console (default: stdout).

    Returns:
        The :class:`DemoResult`.
    """
    import torch

    from xcurate.console import make_console

    console = console or make_console()
    cfg = config or (DemoConfig.fast(seed) if fast else DemoConfig.default(seed))
    if out is None:  # under the working directory: a fresh clone never depends on state in ~
        out, force = Path(DEFAULT_OUT + ("-fast" if fast else "")), True
    _prepare_out(Path(out), force)
    out = Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.torch_threads))
    if config is None:  # the measured wall time of the two built-in sizes, so nobody waits blind
        console.print("[dim]expected time on a 2-core CPU: "
                      + ("under 2 minutes" if fast else "about 12-15 minutes, most of them training 21 policies "
                         "(xcurate demo --fast: under 2 minutes)") + "[/]", markup=True)
    try:
        return _run(cfg, out, fast, console)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: DemoConfig, out: Path, fast: bool, console: Any) -> DemoResult:
    import numpy as np
    import pyarrow.csv as pacsv
    import torch
    from rich.table import Table
    from rich.text import Text

    from xcurate.console import esc
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.io import save_dataset
    from xcurate.diagnostics.report import diagnose
    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.store import Store
    from xcurate.utils import atomic_path, make_manifest, write_json_atomic

    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    tgt_dom = get_domain(cfg.target_domain)
    src_dom = get_domain(tgt_dom.robot)
    console.rule(Text.from_markup(f"[bold]xcurate demo[/] ({'fast' if fast else 'default'}): source "
                                  f"{esc(src_dom.name)} -> target {esc(tgt_dom.name)}"))

    # 1. collect ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    from xcurate.datasets.planted import planted_case, planted_mujoco

    case = planted_case(tgt_dom.name, prefer="builtin")
    console.print("[bold cyan]1/7 collect[/]: planted source (medium + expert, half of each in the target's "
                  "own dynamics), shifted target (builtin policies)", markup=True)
    target, source = planted_mujoco(case, n_part=cfg.n_part, n_target=cfg.n_target, seed=cfg.seed)
    source.source = f"demo source ({src_dom.name} + {tgt_dom.name}, planted)"
    target.source = f"demo target ({tgt_dom.name})"
    data_dir = out / "data"
    src_path = save_dataset(source, data_dir / "source.hdf5", config={"demo": "source"})
    tgt_path = save_dataset(target, data_dir / "target.hdf5", config={"demo": "target"})
    planted = np.asarray(source.extras["planted"], bool)
    console.print(f"  source: {len(source)} transitions ({', '.join(p.quality for p in case.source_policies)}; "
                  f"{int(planted.sum())} collected in {tgt_dom.name}, {int((~planted).sum())} in {src_dom.name}) "
                  f"-> {src_path}")
    console.print(f"  target: {len(target)} transitions in {tgt_dom.name} ({case.target_policy.spec}, noise "
                  f"{case.target_policy.noise}; mean return {target.metadata.get('return_mean', float('nan')):.0f}) "
                  f"-> {tgt_path}")
    timings["collect"] = time.perf_counter() - t0

    # 2. score -----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    console.print(f"[bold cyan]2/7 score[/]: {esc(', '.join(cfg.scorers))}", markup=True)
    store = Store.create(out / "store", source, target, domain=tgt_dom.name)
    score_times: dict[str, float] = {}
    for name in cfg.scorers:
        ts = time.perf_counter()
        scorer = make_scorer(name, seed=cfg.seed, **_fit_settings(name, cfg.scorer_settings.get(name, {})))
        store.run(scorer, progress=False, domain=tgt_dom.name)
        score_times[name] = time.perf_counter() - ts
        console.print(f"  {name:<12} {score_times[name]:6.1f} s")
    timings["score"] = time.perf_counter() - t0

    # 3. query -----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sql = ("SELECT ntile(10) OVER (ORDER BY ot_score DESC) AS decile, ot_score, oracle_dynamics_gap, "
           "oracle_bellman_error, episode_return FROM scores WHERE oracle_valid")
    sql = (f"WITH d AS ({sql}) SELECT decile, count(*) AS n, round(min(ot_score), 4) AS ot_min, "
           "round(max(ot_score), 4) AS ot_max, round(avg(oracle_dynamics_gap), 4) AS mean_gap, "
           "round(avg(oracle_bellman_error), 4) AS mean_bellman_error, round(avg(episode_return), 1) AS "
           "mean_episode_return FROM d GROUP BY decile ORDER BY decile")
    console.print("[bold cyan]3/7 query[/]: deciles of ot_score (1 = closest to the target) vs the oracle",
                  markup=True)
    console.print(f"  [dim]xcurate query \"{esc(sql)}\" --store {esc(out / 'store')}[/]", soft_wrap=True,
                  markup=True)
    qt = store.query(sql)
    with atomic_path(out / "query_ot_deciles.csv") as tmp:
        pacsv.write_csv(qt, tmp)
    table = Table(show_header=True, header_style="bold")
    for c in qt.column_names:
        table.add_column(c, justify="right")
    for row in qt.to_pylist():
        table.add_row(*[str(v) for v in row.values()])
    console.print(table)
    timings["query"] = time.perf_counter() - t0

    # 4. curate ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    from xcurate.curate.recipes import curate_to_file

    console.print(f"[bold cyan]4/7 curate[/]: recipes {esc(', '.join(cfg.recipes))} (+ unfiltered 'none')",
                  markup=True)
    curated: dict[str, Path] = {}
    n_kept: dict[str, int] = {}
    todo: list[tuple[str, dict[str, Any]]] = [("none", {}), *((r, {}) for r in cfg.recipes)]
    if cfg.controls:
        todo.append(("oracle", {"mode": "exact"}))
    for recipe, opts in todo:
        ds, path = curate_to_file(store, recipe, out / "curated" / f"{recipe}.parquet", **opts)
        curated[recipe] = path
        keep = ds.extras.get("keep")
        n_kept[recipe] = int(np.asarray(keep, bool).sum()) if keep is not None else len(ds)
        console.print(f"  {recipe:<8} keeps {n_kept[recipe]} / {len(ds)} source rows -> {path}")
    if cfg.controls:
        frac = n_kept["oracle"] / len(source)
        ds, path = curate_to_file(store, "random", out / "curated" / "random.parquet", fraction=frac,
                                  seed=cfg.seed)
        curated["random"] = path
        n_kept["random"] = int(np.asarray(ds.extras["keep"], bool).sum())
        console.print(f"  {'random':<8} keeps {n_kept['random']} / {len(ds)} source rows (the oracle's fraction, "
                      f"uniform) -> {path}")
    timings["curate"] = time.perf_counter() - t0

    # 5 + 6. train and evaluate --------------------------------------------------------------------
    t0 = time.perf_counter()
    from xcurate.policy.runs import RunSpec, train

    console.print(f"[bold cyan]5/7 train[/] IQL for {cfg.train_steps} updates per dataset, then "
                  f"[bold cyan]6/7 evaluate[/] ({cfg.eval_episodes} episodes in {esc(tgt_dom.name)})", markup=True)
    jobs: list[tuple[str, str | None]] = [("target-only", None), ("unfiltered", str(curated["none"]))]
    jobs += [(r, str(curated[r])) for r in cfg.recipes]
    if cfg.controls:
        jobs += [("oracle", str(curated["oracle"])), ("random", str(curated["random"]))]
    results: list[dict[str, Any]] = []
    train_times: dict[str, float] = {}
    for name, src in jobs:
        ts = time.perf_counter()
        spec = RunSpec(target=str(tgt_path), domain=tgt_dom.name, steps=cfg.train_steps, source=src,
                       variant="iql" if src is None else cfg.source_variant, overrides=dict(cfg.iql_overrides),
                       seed=cfg.seed, n_seeds=cfg.n_seeds,
                       eval_every=0, eval_episodes=cfg.eval_episodes, eval_max_steps=cfg.eval_max_steps,
                       log_every=max(1, cfg.train_steps // 10), checkpoint_every=cfg.train_steps)
        summ = train(spec, out / "runs" / name, progress=False)
        train_times[name] = time.perf_counter() - ts
        results.append({"name": name, "source_rows": 0 if src is None else n_kept[name if name != "unfiltered"
                                                                                   else "none"],
                        "metric": summ.get("metric"), "last_mean": summ.get("last_mean"),
                        "last_std": summ.get("last_std"), "last_per_seed": summ.get("last_per_seed"),
                        "run": str(out / "runs" / name),
                        "train_s": train_times[name]})
        console.print(f"  {name:<12} score {summ.get('last_mean', float('nan')):8.1f} ± "
                      f"{summ.get('last_std', float('nan')):.1f}  ({train_times[name]:.1f} s)")
    timings["train_and_evaluate"] = time.perf_counter() - t0

    # 7. diagnose ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    console.print("[bold cyan]7/7 diagnose[/]: every score vs the oracle Bellman error", markup=True)
    rep = diagnose(store, against="oracle_bellman_error", bins=cfg.bins, out=out / "report", force=True)
    timings["diagnose"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    # summary --------------------------------------------------------------------------------------
    metric = next((r["metric"] for r in results if r.get("metric")), "score")
    table = Table(title=f"Policies trained on {tgt_dom.name} data ({metric}, {cfg.n_seeds} seeds x "
                        f"{cfg.eval_episodes} episodes)")
    for c in ("training data", "source rows", "score (mean ± std over seeds)"):
        table.add_column(c, justify="left" if c == "training data" else "right")
    for r in results:
        sc = r.get("last_mean")
        table.add_row(r["name"], str(r["source_rows"]),
                      "n/a" if sc is None else f"{sc:.1f} ± {r.get('last_std') or 0.0:.1f}")
    console.print(table)
    verdict = conclusion(results, cfg.train_steps)
    console.print(Text.from_markup("[bold]What to conclude[/]: ") + Text(verdict))
    st = Table(title=f"Scorers vs oracle Bellman error ({rep.n_rows} source rows)")
    for c in ("score", "Spearman (aligned)", "verdict"):
        st.add_column(c, justify="right" if c.startswith("Spearman") else "left")
    for r in rep.summary.to_pylist():
        st.add_row(r["score"], f"{r['spearman_aligned']:+.3f}", r["verdict"])
    console.print(st)
    where = Table(title="Where everything is", show_header=False)
    where.add_column("what")
    where.add_column("path")
    for k, v in (("datasets", data_dir), ("score store", out / "store"), ("query result", out /
                 "query_ot_deciles.csv"), ("curated datasets", out / "curated"), ("training runs", out / "runs"),
                 ("diagnostics report", rep.markdown), ("manifest + timings", out / DEMO_MARKER)):
        where.add_row(k, str(v))
    console.print(where)
    console.print("Stage timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    console.print(f"Try: [bold]xcurate query \"SELECT * FROM runs\" --store {esc(out / 'store')}[/]", soft_wrap=True,
                  markup=True)

    manifest = make_manifest("demo", inputs={"source": str(src_path), "target": str(tgt_path)},
                             config=json.loads(json.dumps(asdict(cfg), default=list)), seed=cfg.seed,
                             timings={**timings, **{f"score.{k}": v for k, v in score_times.items()},
                                      **{f"train.{k}": v for k, v in train_times.items()}},
                             fast=fast, results=results, conclusion=verdict,
                             diagnostics=rep.summary.to_pylist(), curated={k: str(v) for k, v in curated.items()},
                             report=str(rep.markdown), store=str(out / "store"))
    write_json_atomic(out / DEMO_MARKER, manifest)
    return DemoResult(out=out, timings=timings, results=results, report=rep.markdown, store=out / "store")
