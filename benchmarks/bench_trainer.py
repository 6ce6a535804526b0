"""Update throughput of xcurate's weighted IQL vs d3rlpy's IQL, and K seeds batched vs sequential.

Same networks (2 x 256 ReLU actor, twin critics, value), same batch (256 = 128 target + 128
source for xcurate; 256 for d3rlpy), CPU, data sampled every step (sampling time included).

    # xcurate (main venv)
    python benchmarks/bench_trainer.py ours --seeds 1 --steps 300 --threads 2
    # d3rlpy (separate venv: python -m venv /work/venv-bench &&
    #   /work/venv-bench/bin/pip install torch==2.13.0 d3rlpy && pip install -e . --no-deps)
    /work/venv-bench/bin/python benchmarks/bench_trainer.py d3rlpy --steps 300 --threads 2
    # everything, interleaved (repeats; medians), written as Markdown
    python benchmarks/bench_trainer.py all --steps 300 --repeats 3 --seeds-list 1,5
    # on a GPU: eager, then the whole step as one CUDA graph, 1 and 5 seeds
    python benchmarks/bench_trainer.py ours --device cuda --seeds 1 --steps 5000
    python benchmarks/bench_trainer.py ours --device cuda --cuda-graph --seeds 5 --steps 5000

Prints one JSON line per measurement: {"impl", "seeds", "steps", "threads", "updates_per_s",
"seed_updates_per_s", "updates_per_cpu_s", ...} where seed_updates = updates x seeds. Per CPU-second
figures (``time.process_time``) are robust to other processes on a shared machine when
``--threads 1``; wall-clock figures are not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

OBS, ACT = 11, 3  # Hopper's dims
N_TARGET, N_SOURCE = 5_000, 100_000


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32)
    rew = rng.normal(size=n).astype(np.float32)
    nxt = obs + 0.01 * rng.normal(size=(n, OBS)).astype(np.float32)
    term = rng.random(n) < 0.001
    tout = np.zeros(n, bool)
    tout[999::1000] = True
    return obs, act, rew, nxt, term, tout


def bench_ours(seeds: int, steps: int, threads: int, compile: bool = False, warmup: int = 20,
               device: str = "cpu", cuda_graph: bool = False) -> dict:
    """Updates/s of xcurate's IQLTrainer (K stacked seeds, 128 target + 128 source rows)."""
    import torch

    from xcurate.datasets.transitions import TransitionDataset
    from xcurate.policy.iql import IQLConfig, IQLTrainer

    torch.set_num_threads(threads)
    o, a, r, n, te, to = _data(N_TARGET, 0)
    target = TransitionDataset.from_arrays(o, a, r, n, terminals=te, timeouts=to)
    o, a, r, n, te, to = _data(N_SOURCE, 1)
    source = TransitionDataset.from_arrays(o, a, r, n, terminals=te, timeouts=to,
                                           extras={"weight": np.ones(N_SOURCE, np.float32)})
    tr = IQLTrainer(IQLConfig(n_seeds=seeds, device=device, max_steps=steps + warmup, compile=compile,
                              cuda_graph=cuda_graph), target, source)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(warmup):  # includes the compilation (compile=True) and the capture (cuda_graph=True)
        tr.train_step()
    sync()
    warm_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        tr.train_step()
    sync()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"impl": "xcurate", "device": device, "compile": compile, "cuda_graph": cuda_graph, "warmup_s": warm_s,
            "seeds": seeds, "steps": steps, "threads": threads,
            "updates_per_s": steps / dt, "seed_updates_per_s": steps * seeds / dt,
            "updates_per_cpu_s": steps / cpu, "seed_updates_per_cpu_s": steps * seeds / cpu}


def bench_d3rlpy(steps: int, threads: int, warmup: int = 20) -> dict:
    """Updates/s of d3rlpy's IQL (batch 256, 2 x 256 networks, its own replay sampling)."""
    import d3rlpy
    import torch

    torch.set_num_threads(threads)
    o, a, r, _, te, to = _data(N_TARGET + N_SOURCE, 0)
    dataset = d3rlpy.dataset.MDPDataset(o, a, r.reshape(-1, 1), te, to)
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256])
    iql = d3rlpy.algos.IQLConfig(batch_size=256, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
                                 gamma=0.99, tau=0.005, expectile=0.7, weight_temp=3.0, max_weight=100.0,
                                 actor_encoder_factory=enc, critic_encoder_factory=enc,
                                 value_encoder_factory=enc).create(device="cpu:0")
    iql.build_with_dataset(dataset)

    def step() -> None:
        batch = dataset.sample_transition_batch(256)
        iql.update(batch)

    for _ in range(warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"impl": "d3rlpy", "version": d3rlpy.__version__, "seeds": 1, "steps": steps, "threads": threads,
            "updates_per_s": steps / dt, "seed_updates_per_s": steps / dt,
            "updates_per_cpu_s": steps / cpu, "seed_updates_per_cpu_s": steps / cpu}


def _sub(python: str, args: list[str]) -> dict:
    out = subprocess.run([python, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_all(steps: int, repeats: int, seeds_list: list[int], threads: int, bench_python: str,
            compile_modes: list[bool]) -> None:
    """Interleave all measurements ``repeats`` times in fresh processes; print medians and ratios (Markdown)."""
    res: dict[str, list[dict]] = {}
    for _ in range(repeats):
        for k in seeds_list:
            for comp in compile_modes:
                args = ["ours", "--seeds", str(k), "--steps", str(steps), "--threads", str(threads)]
                r = _sub(sys.executable, args + (["--compile"] if comp else []))
                res.setdefault(f"xcurate K={k}" + (" compiled" if comp else ""), []).append(r)
                print(json.dumps(r), flush=True)
        try:
            r = _sub(bench_python, ["d3rlpy", "--steps", str(steps), "--threads", str(threads)])
            res.setdefault("d3rlpy", []).append(r)
            print(json.dumps(r), flush=True)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"d3rlpy skipped: {e}", file=sys.stderr)
    keys = ("updates_per_s", "seed_updates_per_s", "updates_per_cpu_s", "seed_updates_per_cpu_s")
    med = {name: {key: statistics.median(x[key] for x in rs) for key in keys} for name, rs in res.items()}
    base = med.get("d3rlpy")
    print(f"\n{threads} torch thread(s), {steps} timed updates, medians of {repeats} interleaved repeats\n")
    print("| implementation | updates/s wall | seed-updates/s wall | updates per CPU-s | seed-updates per CPU-s "
          "| vs d3rlpy (seed-updates/s wall, per CPU-s) |\n|---|---|---|---|---|---|")
    for name, m in med.items():
        ratio = (f"{m['seed_updates_per_s'] / base['seed_updates_per_s']:.2f}x, "
                 f"{m['seed_updates_per_cpu_s'] / base['seed_updates_per_cpu_s']:.2f}x") if base else "-"
        print(f"| {name} | " + " | ".join(f"{m[k]:.1f}" for k in keys) + f" | {ratio} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("impl", choices=["ours", "d3rlpy", "all"])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds-list", default="1,5")
    p.add_argument("--bench-python", default="/work/venv-bench/bin/python")
    p.add_argument("--compile", action="store_true", help="ours: IQLConfig(compile=True)")
    p.add_argument("--device", default="cpu", help="ours: cpu or cuda")
    p.add_argument("--cuda-graph", action="store_true", help="ours: IQLConfig(cuda_graph=True) (CUDA only)")
    p.add_argument("--compile-modes", default="0,1", help="all: eager (0) and/or compiled (1) runs of ours")
    a = p.parse_args()
    if a.impl == "ours":
        print(json.dumps(bench_ours(a.seeds, a.steps, a.threads, a.compile, device=a.device,
                                    cuda_graph=a.cuda_graph)))
    elif a.impl == "d3rlpy":
        print(json.dumps(bench_d3rlpy(a.steps, a.threads)))
    else:
        run_all(a.steps, a.repeats, [int(x) for x in a.seeds_list.split(",")], a.threads, a.bench_python,
                [bool(int(x)) for x in a.compile_modes.split(",")])


if __name__ == "__main__":
    main()
