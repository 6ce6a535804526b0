"""Train the builtin linear ARS policies shipped in ``src/xcurate/datasets/builtin_policies``.

Usage (one robot per run; each run is bounded by --seconds):

    python benchmarks/train_builtin_policies.py --robot hopper --seconds 600
    python benchmarks/train_builtin_policies.py --robot halfcheetah --seconds 600

Levels: ``medium`` is the evaluated checkpoint whose return is closest to MEDIUM_FRACTION x the
D4RL expert reference (at least MEDIUM_MIN_FRACTION x, below EXPERT_FRACTION x), ``expert`` the best checkpoint when it
reaches EXPERT_FRACTION x the reference. Each saved policy is re-evaluated on 5 fresh episodes
(seeds 0..4) through ``load_policy`` and the measured return goes into its metadata and into
benchmarks/results/collect_train_<robot>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from xcurate.datasets.ars import ARSConfig, config_dict, train_ars
from xcurate.datasets.collect import evaluate
from xcurate.datasets.policies import builtin_dir, load_policy, save_linear_policy
from xcurate.utils import library_versions, write_json_atomic

#: D4RL expert reference returns (REFERENCE.md section 5).
EXPERT_REF = {"halfcheetah": 12135.0, "hopper": 3234.3, "walker2d": 4592.3, "ant": 3879.7}
MEDIUM_FRACTION = 0.4
MEDIUM_MIN_FRACTION = 0.25  # below this no checkpoint is called "medium" (nothing is saved; use --resume)
EXPERT_FRACTION = 0.75

#: Per-robot ARS V2-t hyper-parameters: step size / noise from the ARS paper (Table 9) with fewer directions
#: than the paper for halfcheetah/walker2d/ant (more, cheaper iterations within a ~10 min budget on a shared
#: 2-core CPU); the survival bonus is removed from the training reward (alive_bonus_offset) as in the paper.
CONFIGS = {
    "hopper": dict(n_directions=8, top_directions=4, step_size=0.01, noise=0.025, alive_bonus_offset=1.0),
    "halfcheetah": dict(n_directions=8, top_directions=4, step_size=0.02, noise=0.03),
    "walker2d": dict(n_directions=8, top_directions=4, step_size=0.025, noise=0.02, alive_bonus_offset=1.0),
    "ant": dict(n_directions=16, top_directions=8, step_size=0.015, noise=0.025, alive_bonus_offset=1.0),
}


def main() -> None:
    """Train one robot and write its builtin policies."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--out", type=Path, default=builtin_dir())
    ap.add_argument("--resume", action="store_true",
                    help="continue from benchmarks/results/ars_state_<robot>.npz (written by every run)")
    args = ap.parse_args()
    results = Path(__file__).resolve().parent / "results"
    state_file = results / f"ars_state_{args.robot}.npz"
    init, prior = None, {"env_steps": 0, "train_seconds": 0.0, "runs": 0}
    if args.resume:
        with np.load(state_file, allow_pickle=False) as z:
            init = {k: z[k] for k in ("W", "mean", "m2", "n")}
            prior = json.loads(str(z["totals"]))

    cfg = ARSConfig(**CONFIGS[args.robot], max_seconds=args.seconds,
                    seed=args.seed + 1000 * prior["runs"], eval_every=args.eval_every,
                    target_return=1.05 * EXPERT_REF[args.robot])
    t0 = time.time()

    def log(ck):
        print(f"[{args.robot}] it {ck.iteration:4d} steps {ck.env_steps:8d} {ck.seconds:6.0f}s "
              f"return {ck.eval_return:8.1f}", flush=True)

    res = train_ars(args.robot, cfg, callback=log, init=init)
    totals = {"env_steps": prior["env_steps"] + res.env_steps,
              "train_seconds": round(prior["train_seconds"] + res.seconds, 1), "runs": prior["runs"] + 1}
    results.mkdir(parents=True, exist_ok=True)
    np.savez(state_file, **res.final_state, totals=np.array(json.dumps(totals)))
    ref = EXPERT_REF[args.robot]
    chosen = {}
    below = [c for c in res.checkpoints if MEDIUM_MIN_FRACTION * ref <= c.eval_return < EXPERT_FRACTION * ref]
    if below:
        chosen["medium"] = min(below, key=lambda c: abs(c.eval_return - MEDIUM_FRACTION * ref))
    if res.best.eval_return >= EXPERT_FRACTION * ref:
        chosen["expert"] = res.best
    report = {"robot": args.robot, "train_seconds": round(res.seconds, 1), "env_steps": res.env_steps,
              "totals_over_runs": totals, "resumed": args.resume,
              "config": config_dict(cfg), "history": res.history(), "policies": {}}
    for level, ck in chosen.items():
        meta = {"robot": args.robot, "level": level, "trainer": "xcurate.datasets.ars (V2-t)",
                "train_eval_return": round(ck.eval_return, 1), "iteration": ck.iteration,
                "env_steps": prior["env_steps"] + ck.env_steps,
                "train_seconds": round(prior["train_seconds"] + ck.seconds, 1), "config": config_dict(cfg),
                "runs": totals["runs"],
                "seed": args.seed, "versions": library_versions(),
                "command": f"python benchmarks/train_builtin_policies.py --robot {args.robot} "
                           f"--seconds {args.seconds:g} --seed {args.seed}"
                           + (f" (after {prior['runs']} earlier run(s), --resume)" if args.resume else "")}
        path = args.out / f"{args.robot}-{level}.npz"
        save_linear_policy(path, ck.W, np.zeros(ck.W.shape[0]), ck.obs_mean, ck.obs_std, meta)
        rets = evaluate(args.robot, load_policy(f"builtin:{args.robot}-{level}", args.robot), episodes=5, seed=0)
        meta["measured_return_mean"] = round(float(rets.mean()), 1)
        meta["measured_return_std"] = round(float(rets.std()), 1)
        save_linear_policy(path, ck.W, np.zeros(ck.W.shape[0]), ck.obs_mean, ck.obs_std, meta)
        report["policies"][level] = {k: meta[k] for k in ("train_eval_return", "measured_return_mean",
                                                          "measured_return_std", "iteration", "env_steps",
                                                          "train_seconds")}
        print(f"saved {path}: 5-episode return {rets.mean():.1f} +/- {rets.std():.1f}", flush=True)
    report["wall_seconds"] = round(time.time() - t0, 1)
    out = results / f"collect_train_{args.robot}{'_resume' + str(prior['runs']) if args.resume else ''}.json"
    write_json_atomic(out, report)
    print(json.dumps(report["policies"], indent=1))


if __name__ == "__main__":
    main()
