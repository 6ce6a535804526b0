"""Training runs on disk: configuration, manifest, CSV logs, checkpoints, evaluations, summaries.

A run directory holds::

    config.json        run spec + IQLConfig + format version (checked on resume / evaluate)
    manifest.json      make_manifest("policy_run", ...): inputs with sha256, seeds, timings, device
    progress.csv       step, seed, losses and statistics every ``log_every`` updates
    eval.csv           step, seed, mean return, score (normalised where the domain has references)
    eval_source.csv    the same in ``eval_source_domain`` (optional, e.g. the unshifted source domain)
    checkpoints/last.pt  full trainer state (torch.save of state dicts; torch.load(weights_only=True))
    summary.json       last and best score, mean +/- std over seeds

Training resumes from ``checkpoints/last.pt`` when the directory already holds the same
configuration; the result equals an uninterrupted run (same random streams, same optimiser state).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError, StoreError
from xcurate.policy.evaluate import EvalScores, check_layout, run_episodes, score_returns
from xcurate.policy.iql import FORMAT_VERSION, IQLConfig, IQLTrainer, make_config
from xcurate.utils import atomic_path, make_manifest, write_json_atomic


@dataclass
class RunSpec:
    """What to train and how to log it."""

    target: str  # target dataset path or id (xcurate.datasets.io.load_dataset)
    domain: str  # target domain used for evaluation (xcurate.datasets.domains.get_domain)
    steps: int  # gradient updates
    source: str | None = None  # curated source dataset path or id; None trains on target only
    variant: str | None = None  # method preset (xcurate.policy.iql.VARIANTS); None: the curated file's
    #   recorded paper_variant (metadata["curation"]), or "iql-actor" for an uncurated source, "iql" without one
    overrides: dict[str, str] = field(default_factory=dict)  # IQLConfig key=value overrides
    seed: int = 0  # first seed
    n_seeds: int = 1  # seeds trained together in one process
    eval_every: int = 10_000  # evaluate every N updates (0: only at the end)
    eval_episodes: int = 10  # deterministic episodes per evaluation and seed
    eval_max_steps: int | None = None  # optional cap on evaluation episode length (tests)
    eval_source_domain: str | None = None  # also evaluate in this domain (eval_source.csv, summary["source"])
    log_every: int = 1_000  # write progress.csv every N updates
    checkpoint_every: int = 10_000  # save checkpoints/last.pt every N updates
    reference: str = "measured"  # normalisation reference set (xcurate.datasets.reference_sets)
    force_variant: bool = False  # train even where the variant ignores everything the curation wrote


def _load(spec: str | TransitionDataset, what: str) -> TransitionDataset:
    if isinstance(spec, TransitionDataset):
        return spec
    try:
        from xcurate.datasets.io import load_dataset
    except ImportError as e:  # pragma: no cover - io.py is part of the package
        raise ConfigError(f"cannot load {what} {spec!r}: xcurate.datasets.io is unavailable ({e})") from None
    return load_dataset(spec)


def _check_weights_sane(source: TransitionDataset) -> None:
    for col in ("weight",):
        if col in source.extras:
            w = np.asarray(source.extras[col], dtype=np.float64)
            if not np.isfinite(w).all():
                raise DataError(f"{source.source}: column 'weight' contains NaN/Inf")
            if not (w != 0).any():
                raise DataError(f"{source.source}: column 'weight' is all zero: nothing to train on")


def curation_of(source: TransitionDataset | None) -> dict[str, Any]:
    """The ``metadata["curation"]`` record of a curated dataset ({} when absent)."""
    cur = source.metadata.get("curation") if source is not None else None
    return cur if isinstance(cur, dict) else {}


#: recipes whose only output is a column that a config must read, else the file trains as plain IQL:
#: recipe -> (what reads it, predicate on the IQLConfig)
_INERT_UNLESS: dict[str, tuple[str, Any]] = {
    "droco": ("the 'penalty' column (source_target=droco)", lambda c: c.source_target == "droco"),
    "dara": ("the 'delta_r'/'corrected_reward' columns (reward_correction=delta_r|corrected_reward)",
             lambda c: c.reward_correction != "none"),
}


def resolve_variant(variant: str | None, source: TransitionDataset | None) -> str:
    """The variant to train: ``variant``, else the curated file's ``paper_variant``, else ``"iql-actor"``
    for a source without one (the source reaches the actor, as in the curated files' default) and
    ``"iql"`` without a source."""
    if variant is not None:
        return variant
    return str(curation_of(source).get("paper_variant") or ("iql" if source is None else "iql-actor"))


def check_curation_effect(cfg: IQLConfig, variant: str, source: TransitionDataset | None, force: bool) -> None:
    """Refuse (one-line :class:`ConfigError`) a variant under which the file's curation has no effect.

    The ``droco`` and ``dara`` recipes keep every row with weight 1 and write one column; a
    config that does not read it trains plain IQL on the unfiltered source. ``force`` allows it.
    """
    recipe = curation_of(source).get("recipe")
    if force or recipe not in _INERT_UNLESS:
        return
    what, used = _INERT_UNLESS[recipe]
    if not used(cfg):
        paper = curation_of(source).get("paper_variant", recipe)
        raise ConfigError(f"{source.source}: curated with recipe {recipe!r}, whose only effect is {what}, which "
                          f"variant {variant!r} ignores (it would train plain IQL on the unfiltered source); "
                          f"train with --variant {paper} (the file's paper_variant) or pass --force-variant")


def build_trainer(spec: RunSpec, target: TransitionDataset | str,
                  source: TransitionDataset | str | None) -> tuple[IQLTrainer, IQLConfig, TransitionDataset,
                                                                   TransitionDataset | None]:
    """Load data, validate everything that can be checked before training, build the trainer.

    ``spec.variant`` None resolves to the source's recorded ``paper_variant`` (see
    :func:`resolve_variant`); read the resolved name from ``spec.variant`` of :func:`train`'s config.
    """
    src = _load(source, "source") if source is not None else None
    variant = resolve_variant(spec.variant, src)
    cfg = make_config(variant, seed=spec.seed, n_seeds=spec.n_seeds, max_steps=max(1, spec.steps))
    cfg = cfg.with_overrides({k: str(v) for k, v in spec.overrides.items()})
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.reference_sets import check_reference_set, require_references

    if check_reference_set(spec.reference) != "measured":
        require_references(get_domain(spec.domain), spec.reference)  # before any training
    check_curation_effect(cfg, variant, src, spec.force_variant)
    tgt = _load(target, "target")
    tgt.validate()
    check_layout(spec.domain, tgt, "target dataset")
    if spec.eval_source_domain is not None:
        check_layout(spec.eval_source_domain, tgt, "target dataset (for --eval-source-domain)")
    if src is not None:
        src.validate()
        src.check_dims(tgt.obs_dim, tgt.act_dim, what=f"target dataset ({tgt.source})")
        check_layout(spec.domain, src, "source dataset")
        _check_weights_sane(src)
    elif cfg.required_columns():
        raise ConfigError(f"variant {variant!r} needs a source dataset with columns {cfg.required_columns()}")
    return IQLTrainer(cfg, tgt, src), cfg, tgt, src


class _CSVLog:
    """Append-only CSV with a fixed header; on resume rows beyond ``max_step`` are dropped."""

    def __init__(self, path: Path, max_step: int | None = None) -> None:
        self.path = path
        self.header: list[str] | None = None
        if path.exists():
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            if rows:
                self.header = rows[0]
                keep = [r for r in rows[1:] if max_step is None or int(r[0]) <= max_step]
                with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(self.header)
                    w.writerows(keep)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.header is None:
            self.header = list(rows[0])
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.header, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)


def _run_config(spec: RunSpec, cfg: IQLConfig) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "spec": asdict(spec), "iql": cfg.to_dict()}


#: RunSpec fields that guard how a run starts but do not change what it trains: a finished or
#: checkpointed run resumes whatever they are (e.g. the same control arm, trained once, shared by
#: an experiment's static and paper modes).
GUARD_FIELDS = ("force_variant",)


def _identity(spec: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stored spec that decide what a run trains (``spec`` less :data:`GUARD_FIELDS`)."""
    return {k: v for k, v in spec.items() if k not in GUARD_FIELDS}


def _with_defaults(conf: dict[str, Any], run: Path) -> dict[str, Any]:
    """A stored config with the defaults of fields added since it was written (so such runs still resume)."""
    try:
        spec = asdict(RunSpec(**conf["spec"]))
        iql = IQLConfig.from_dict(conf["iql"]).to_dict()
    except (TypeError, ConfigError) as e:
        raise StoreError(f"{run}: config.json does not match this xcurate's run settings ({e})") from None
    return {**conf, "spec": json.loads(json.dumps(spec)), "iql": iql}


def read_config(run: str | os.PathLike) -> dict[str, Any]:
    """The run's config.json, checked for a compatible format version."""
    p = Path(run) / "config.json"
    if not p.exists():
        raise StoreError(f"{run}: not a training run (no config.json)")
    try:
        conf = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise StoreError(f"{p}: corrupt JSON ({e})") from None
    if conf.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{run}: run format {conf.get('format_version')!r} is not supported by this xcurate "
                         f"(expects {FORMAT_VERSION}); train into a new --out directory")
    return conf


def train(spec: RunSpec, out: str | os.PathLike, target: TransitionDataset | None = None,
          source: TransitionDataset | None = None, progress: bool = True,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) a run into ``out``; returns the summary.

    Args:
        spec: the run specification (datasets are loaded from ``spec.target``/``spec.source``
            unless given as objects).
        out: run directory.
        target: optional in-memory target dataset (overrides ``spec.target``).
        source: optional in-memory source dataset (overrides ``spec.source``).
        progress: show a Rich progress bar.
        stop_after: stop (after checkpointing) once this many updates are done (tests resume).
    """
    out = Path(out)
    t0 = time.time()
    src_in = source if source is not None else spec.source
    if spec.variant is None:  # resolve before anything is stored: config.json records the variant trained
        src_in = _load(src_in, "source") if src_in is not None else None
        spec = dataclasses.replace(spec, variant=resolve_variant(None, src_in))
    trainer, cfg, tgt, src = build_trainer(spec, target if target is not None else spec.target, src_in)
    conf = _run_config(spec, cfg)
    ckpt = out / "checkpoints" / "last.pt"
    if (out / "config.json").exists():
        old = _with_defaults(read_config(out), out)
        if old["iql"] != conf["iql"] or _identity(old["spec"]) != _identity(json.loads(json.dumps(conf["spec"]))):
            raise StoreError(f"{out}: holds a run with a different configuration (spec or IQL settings); "
                             "use a new --out or the same options")
        if ckpt.exists():
            trainer.load_state_dict(torch.load(ckpt, map_location=trainer.device, weights_only=True))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", conf)
    start = trainer.step
    plog = _CSVLog(out / "progress.csv", max_step=start)
    elog = _CSVLog(out / "eval.csv", max_step=start)
    slog = _CSVLog(out / "eval_source.csv", max_step=start) if spec.eval_source_domain else None
    t_setup = time.time() - t0
    t_eval = 0.0
    t_train0 = time.time()
    end = spec.steps if stop_after is None else min(spec.steps, stop_after)

    def do_eval() -> None:
        nonlocal t_eval
        te = time.time()
        for domain, log, tag, strict in ((spec.domain, elog, "eval_score", True),
                                         (spec.eval_source_domain, slog, "eval_source_score", False)):
            if domain is None:
                continue
            sc = score_returns(domain, run_episodes(trainer.act, domain, cfg.n_seeds, spec.eval_episodes,
                                                    max_steps=spec.eval_max_steps), spec.reference, strict=strict)
            log.write([{"step": trainer.step, "seed": s, "return_mean": float(sc.returns[i].mean()),
                        "score": float(sc.scores[i]), "normalized": int(sc.normalized),
                        "reference": sc.reference or "-"}
                       for i, s in enumerate(trainer.seeds)])
            if tb is not None:
                for i, s in enumerate(trainer.seeds):
                    tb.add_scalar(f"seed{s}/{tag}", float(sc.scores[i]), trainer.step)
        t_eval += time.time() - te

    def save() -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(ckpt) as tmp:
            torch.save(trainer.state_dict(), tmp)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[ups]:.0f} steps/s"), TimeRemainingColumn(), disable=not progress)
    pending: list[tuple[int, dict[str, torch.Tensor]]] = []
    tb = _tensorboard(out)
    with bar:
        task = bar.add_task("train", total=spec.steps, completed=start, ups=0.0)
        tick, tick_step = time.time(), trainer.step
        while trainer.step < end:
            m = trainer.train_step()
            s = trainer.step
            if s % spec.log_every == 0 or s == spec.steps:
                pending.append((s, m))
                rows = []
                for step_, met in pending:
                    arr = {k: v.cpu().numpy() for k, v in met.items()}
                    for i, seed in enumerate(trainer.seeds):
                        rows.append({"step": step_, "seed": seed, **{k: float(a[i]) for k, a in arr.items()}})
                plog.write(rows)
                if tb is not None:
                    for r in rows:
                        for key, val in r.items():
                            if key not in ("step", "seed"):
                                tb.add_scalar(f"seed{r['seed']}/{key}", val, r["step"])
                pending.clear()
            if spec.eval_every and spec.eval_episodes > 0 and s % spec.eval_every == 0:
                do_eval()
            if s % spec.checkpoint_every == 0 or s == end:
                save()
            if time.time() - tick > 0.5 or s == end:
                bar.update(task, completed=s, ups=(s - tick_step) / max(time.time() - tick, 1e-9))
                tick, tick_step = time.time(), s
    done = trainer.step >= spec.steps
    if done and (not spec.eval_every or spec.steps % spec.eval_every != 0) and spec.eval_episodes > 0:
        if not _has_eval_at(out / "eval.csv", trainer.step):
            do_eval()
    if tb is not None:
        tb.close()
    t_train = time.time() - t_train0 - t_eval
    summary = summarize(out) if (out / "eval.csv").exists() else {}
    if (out / "eval_source.csv").exists():
        summary["source"] = {"domain": spec.eval_source_domain, **summarize(out, "eval_source.csv")}
    summary.update({"steps_done": trainer.step, "complete": done})
    timings = _accumulate_timings(out / "manifest.json" if start > 0 else None, t_setup, t_train, t_eval,
                                  trainer.step - start)
    inputs = {}
    for name, p in (("target", spec.target), ("source", spec.source)):
        if isinstance(p, str) and Path(p).exists():
            inputs[name] = p
    manifest = make_manifest("policy_run", inputs=inputs, config=conf, seed=cfg.seed, timings=timings,
                             seeds=trainer.seeds, device=trainer.device,
                             target_fingerprint=tgt.fingerprint(),
                             source_fingerprint=src.fingerprint() if src is not None else None,
                             results=summary)
    write_json_atomic(out / "manifest.json", manifest)
    write_json_atomic(out / "summary.json", summary)
    return summary


def _accumulate_timings(previous: Path | None, setup_s: float, train_s: float, eval_s: float,
                        updates: int) -> dict[str, Any]:
    """This session's timings added to those of earlier sessions of a resumed run.

    ``updates_per_s`` is over every timed update (updates of a session killed before it wrote its
    manifest are not timed), so re-running a finished run leaves its throughput unchanged.
    """
    t = {"setup_s": setup_s, "train_s": train_s, "eval_s": eval_s, "updates_timed": updates, "sessions": 1}
    if previous is not None and previous.exists():
        try:
            old = json.loads(previous.read_text()).get("timings", {})
        except (OSError, ValueError):
            old = {}
        if old and "updates_timed" not in old:    # manifests written before these fields existed
            old = {**old, "updates_timed": round((old.get("updates_per_s") or 0) * old.get("train_s", 0)),
                   "sessions": 1}
        for key in t:
            t[key] += type(t[key])(old.get(key, 0))
    t["updates_per_s"] = t["updates_timed"] / t["train_s"] if t["updates_timed"] and t["train_s"] > 0 else None
    return t


def _tensorboard(out: Path):
    """A TensorBoard SummaryWriter under ``out/tensorboard`` when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _has_eval_at(path: Path, step: int) -> bool:
    if not path.exists():
        return False
    with open(path, newline="") as fh:
        return any(int(r["step"]) == step for r in csv.DictReader(fh))


def read_evals(run: str | os.PathLike, file: str = "eval.csv") -> dict[int, dict[int, float]]:
    """eval.csv (or ``file``, e.g. eval_source.csv) as {step: {seed: score}}."""
    p = Path(run) / file
    out: dict[int, dict[int, float]] = {}
    if p.exists():
        with open(p, newline="") as fh:
            for r in csv.DictReader(fh):
                out.setdefault(int(r["step"]), {})[int(r["seed"])] = float(r["score"])
    return out


def summarize(run: str | os.PathLike, file: str = "eval.csv") -> dict[str, Any]:
    """Last and best score (mean +/- std over seeds) from eval.csv (or ``file``).

    ``best`` takes each seed's best evaluation, then the mean/std over seeds.
    """
    ev = read_evals(run, file)
    if not ev:
        return {"evaluations": 0}
    steps = sorted(ev)
    seeds = sorted(ev[steps[-1]])
    last = np.array([ev[steps[-1]][s] for s in seeds])
    best = np.array([max(ev[t][s] for t in steps if s in ev[t]) for s in seeds])
    normalized = True
    with open(Path(run) / file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    normalized = all(r.get("normalized", "1") == "1" for r in rows)
    # eval.csv files written before reference sets existed were normalised with the measured set
    refs = sorted({r.get("reference") or "measured" for r in rows}) if normalized else []
    reference = ", ".join(refs) if refs else None
    return {"evaluations": len(steps), "last_step": steps[-1], "seeds": seeds,
            "metric": (f"normalized score (reference: {reference})" if normalized
                       else "raw return (domain has no reference returns)"),
            "normalized": normalized, "reference": reference,
            "last_mean": float(last.mean()), "last_std": float(last.std()),
            "best_mean": float(best.mean()), "best_std": float(best.std()),
            "last_per_seed": last.tolist(), "best_per_seed": best.tolist()}


def evaluate_run(run: str | os.PathLike, episodes: int = 10, max_steps: int | None = None,
                 domain: str | None = None, reference: str | None = None) -> EvalScores:
    """Evaluate the last checkpoint of a run on its domain, or on ``domain`` (on demand, not logged).

    ``reference``: the normalisation reference set (default: the run's, else ``measured``).
    """
    from xcurate.policy.iql import GaussianActor

    conf = read_config(run)
    ckpt = Path(run) / "checkpoints" / "last.pt"
    if not ckpt.exists():
        raise StoreError(f"{run}: no checkpoint (checkpoints/last.pt) to evaluate")
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    cfg = IQLConfig.from_dict(sd["config"])
    mean, std = sd["obs_mean"].numpy(), sd["obs_std"].numpy()
    obs_dim, act_dim = mean.shape[0], sd["actor"]["log_std"].shape[-1]
    actor = GaussianActor(cfg.n_seeds, obs_dim, act_dim, cfg.hidden_dim, cfg.n_hidden)
    actor.load_state_dict(sd["actor"])
    domain = domain or conf["spec"]["domain"]
    from xcurate.datasets.domains import get_domain

    dom = get_domain(domain)
    if (dom.obs_dim, dom.act_dim) != (obs_dim, act_dim):
        raise DataError(f"{run}: policy dims ({obs_dim}, {act_dim}) do not match domain {domain!r}")

    @torch.no_grad()
    def act(o: np.ndarray) -> np.ndarray:
        x = torch.as_tensor((np.asarray(o, np.float32) - mean) / std).view(cfg.n_seeds, 1, obs_dim)
        return actor.mean(x).view(cfg.n_seeds, act_dim).numpy()

    reference = reference or conf["spec"].get("reference") or "measured"
    return score_returns(domain, run_episodes(act, domain, cfg.n_seeds, episodes, max_steps=max_steps), reference)


def list_runs(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run directory below ``root`` (recursively) with its spec and summary."""
    root = Path(root)
    if not root.exists():
        raise StoreError(f"{root}: directory not found")
    out = []
    for conf_path in sorted(root.rglob("config.json")):
        run = conf_path.parent
        try:
            conf = read_config(run)
        except StoreError:
            continue
        summ = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        out.append({"run": str(run), "spec": conf["spec"], "summary": summ})
    return out
