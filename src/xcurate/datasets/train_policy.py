"""Train behaviour policies *in* a domain (``xcurate policies train``) with Stable-Baselines3.

INTERFACE:

    train_policy(PolicyTrainConfig(domain, algo, steps, ...), out_dir, log=print) -> dict (manifest)
    trained_policy_path(spec_rest) -> (zip path, manifest)   # what ``trained:DIR`` resolves to

ODRL and OTDF collect their target data with SAC trained in the target domain and normalise
with in-domain experts; this module produces such policies with the maintained implementations
of SAC (stable-baselines3) and TQC (sb3-contrib), optionally warm-started from a zoo agent of the
same algorithm (its actor and critic weights are copied in; the zoo file is read without
unpickling, see :func:`xcurate.datasets.policies.read_zoo_zip`).

Layout of ``out_dir``::

    manifest.json         # kind policy_train: config, status running|complete, timesteps, sessions,
                          # checkpoint sha256s, evaluation, library versions
    checkpoint-<step>/model.zip          # SB3 model at the last checkpoint (optimiser states included)
    checkpoint-<step>/replay_buffer.pkl  # (a new folder per checkpoint; older ones are removed once
                                         # the manifest points at the new one)
    policy.zip            # the final model: load it as ``trained:<out_dir>``

Resumable: a checkpoint is written every ``checkpoint_every`` steps (model, then replay buffer
into a new folder, then the manifest, each atomically); a killed run restarts from the last
complete checkpoint (even when it was killed while writing the next one), and
``steps`` is the *total* budget, so re-running with a larger ``steps`` continues training.
Resuming loads the checkpoint with SB3's own loader, which unpickles: only the run's own files
are loaded, and only when their sha256 matches the one recorded in the manifest when they were
written (a swapped or truncated checkpoint is refused). The final ``policy.zip`` is read by
``load_policy("trained:DIR")`` through the zoo reader (JSON + ``torch.load(weights_only=True)``):
using a trained policy never unpickles anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.errors import ConfigError, DataError

#: Algorithms ``policies train`` offers (the maintained off-policy learners that suit MuJoCo).
TRAIN_ALGOS = ("sac", "tqc")
_CKPT = "checkpoint"
#: Config fields that must match when a run resumes (the budget ``steps`` may change).
_FIXED = ("domain", "algo", "seed", "warm_start", "learning_starts", "buffer_size", "batch_size",
          "learning_rate", "gamma", "tau", "net_arch")


@dataclass
class PolicyTrainConfig:
    """What to train and how."""

    domain: str  # the domain to train in
    algo: str = "sac"  # sac | tqc
    steps: int = 300_000  # total environment steps (resumed runs continue up to this)
    warm_start: str | None = None  # zoo agent of the same algorithm: sb3:PATH.zip, PATH.zip or <algo>/<Env>-v3_1
    seed: int = 0
    checkpoint_every: int = 10_000  # environment steps between checkpoints
    learning_starts: int = 10_000  # random steps before the first update (0 with a warm start is fine)
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    net_arch: tuple[int, ...] = (256, 256)  # the zoo's SAC/TQC MuJoCo agents use 256-256
    eval_episodes: int = 5  # deterministic episodes of the final evaluation (0: none)
    device: str = "cpu"

    def validate(self) -> PolicyTrainConfig:
        """Raise :class:`ConfigError` (one line) for an unknown domain/algorithm or a bad budget."""
        from xcurate.datasets.domains import get_domain

        get_domain(self.domain)
        if self.algo not in TRAIN_ALGOS:
            raise ConfigError(f"--algo must be one of {', '.join(TRAIN_ALGOS)}, got {self.algo!r}")
        for name in ("steps", "checkpoint_every", "buffer_size", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if not isinstance(self.learning_starts, (int, np.integer)) or self.learning_starts < 0:
            raise ConfigError(f"--learning-starts must be an integer >= 0, got {self.learning_starts!r}")
        if self.eval_episodes < 0:
            raise ConfigError(f"--eval-episodes must be >= 0, got {self.eval_episodes}")
        if not 0 <= self.gamma < 1 or not 0 < self.tau <= 1 or not self.learning_rate > 0:
            raise ConfigError("gamma must be in [0, 1), tau in (0, 1] and learning_rate > 0")
        self.net_arch = tuple(int(x) for x in self.net_arch)
        return self


def parse_budget(text: str | int, option: str = "--steps") -> int:
    """``"300000"``, ``"300_000"``, ``"300k"``, ``"1.5M"``, ``"1e6"`` -> a positive int; else a one-line ConfigError."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = float(text)
    else:
        t = str(text).strip().lower().replace("_", "").replace(",", "")
        mult = {"k": 1e3, "m": 1e6}.get(t[-1:], 1.0)
        try:
            value = float(t[:-1] if mult != 1.0 else t) * mult
        except ValueError:
            raise ConfigError(f"{option} must be a positive number of steps (e.g. 300000, 300k, 1e6), "
                              f"got {text!r}") from None
    if not np.isfinite(value) or value != int(value) or value <= 0:
        raise ConfigError(f"{option} must be a positive whole number of steps, got {text!r}")
    return int(value)


def _sb3(algo: str) -> Any:
    """The SB3 / sb3-contrib class of ``algo``, or a one-line ConfigError saying how to install it."""
    try:
        if algo == "tqc":
            from sb3_contrib import TQC as cls
        else:
            from stable_baselines3 import SAC as cls
    except ImportError:
        raise ConfigError("policies train needs stable-baselines3 and sb3-contrib: "
                          "pip install 'xcurate[sb3]'") from None
    return cls


def _resolve_warm_start(spec: str, algo: str) -> Path:
    """A zoo agent's zip from ``sb3:[algo:]PATH``, a path, or ``<algo>/<Env>-v3_1`` under ../shared."""
    from xcurate.utils import shared_dir

    s = spec[4:] if spec.startswith("sb3:") else spec
    head, sep, tail = s.partition(":")
    if sep and head.lower() in TRAIN_ALGOS:
        s = tail
    p = Path(s).expanduser()
    if not p.is_file():
        sd = shared_dir()
        cand = None if sd is None else sd / "policies" / "sb3-zoo" / s
        if cand is not None and cand.is_dir():
            zips = sorted(cand.glob("*.zip"))
            p = zips[0] if zips else cand
        elif cand is not None and cand.is_file():
            p = cand
    if not p.is_file():
        raise ConfigError(f"--warm-start {spec!r}: no zoo agent there (give sb3:PATH.zip, PATH.zip or "
                          "<algo>/<Env>-v3_1 under ../shared/policies/sb3-zoo)")
    parts = [x.lower() for x in p.parts]
    other = [a for a in ("sac", "tqc", "ppo", "a2c", "trpo", "ars") if a in parts and a != algo]
    if other and algo not in parts:
        raise ConfigError(f"--warm-start {spec!r} is a {other[0]} agent but --algo is {algo}")
    return p


def _warm_start(model: Any, path: Path) -> dict[str, Any]:
    """Copy the zoo agent's weights (same names and shapes) into ``model.policy``; never unpickles."""
    import torch

    from xcurate.datasets.policies import read_zoo_zip

    _, state = read_zoo_zip(path)
    own = model.policy.state_dict()
    copied, skipped = [], []
    new = {}
    for k, v in state.items():
        if k in own and tuple(own[k].shape) == tuple(v.shape):
            new[k] = torch.as_tensor(v, dtype=own[k].dtype)
            copied.append(k)
        else:
            skipped.append(k)
    actor = [k for k in copied if k.startswith("actor.")]
    misfit = [k for k in skipped if k.startswith("actor.")]
    if not actor or misfit:
        raise ConfigError(f"--warm-start {path}: its actor weights do not fit this {type(model).__name__} "
                          f"({misfit[0] if misfit else 'no actor tensors'}: another robot, observation layout "
                          "or network size)")
    model.policy.load_state_dict(new, strict=False)
    return {"path": str(path), "copied": len(copied), "skipped": skipped[:20], "n_skipped": len(skipped)}


def _manifest_path(out: Path) -> Path:
    return out / "manifest.json"


def _read_manifest(out: Path) -> dict[str, Any] | None:
    import json

    m = _manifest_path(out)
    if not m.exists():
        return None
    try:
        return json.loads(m.read_text())
    except ValueError as e:
        raise DataError(f"{m}: unreadable manifest ({e})") from None


def _save_checkpoint(model: Any, out: Path) -> dict[str, str]:
    """Write ``checkpoint-<step>/{model.zip, replay_buffer.pkl}`` (each atomically); return dir + sha256s.

    A new folder per checkpoint: the manifest keeps pointing at the previous, complete one until it
    is rewritten, so a run killed while a checkpoint is being written resumes from the previous one.
    """
    from xcurate.utils import atomic_path, sha256_file

    ck = out / f"{_CKPT}-{int(model.num_timesteps):010d}"
    ck.mkdir(parents=True, exist_ok=True)
    with atomic_path(ck / "model.zip") as tmp:
        model.save(str(tmp))
    with atomic_path(ck / "replay_buffer.pkl") as tmp:
        model.save_replay_buffer(str(tmp))
    return {"dir": ck.name, "model.zip": sha256_file(ck / "model.zip"),
            "replay_buffer.pkl": sha256_file(ck / "replay_buffer.pkl")}


def _prune_checkpoints(out: Path, keep: str) -> None:
    """Remove every checkpoint folder but ``keep`` (after the manifest points at ``keep``)."""
    import shutil

    for d in out.glob(f"{_CKPT}-*"):
        if d.is_dir() and d.name != keep:
            shutil.rmtree(d, ignore_errors=True)


def checkpoint_dir(out: str | os.PathLike) -> Path | None:
    """The folder of a run's last complete checkpoint (from its manifest), or None."""
    man = _read_manifest(Path(out))
    name = (man or {}).get("checkpoint", {}).get("dir")
    return Path(out) / name if name else None


def _load_checkpoint(cls: Any, out: Path, env: Any, hashes: dict[str, str], device: str) -> Any:
    from xcurate.utils import sha256_file

    hashes = dict(hashes)
    ck = out / str(hashes.pop("dir", _CKPT))
    for name, h in hashes.items():
        f = ck / name
        if not f.is_file() or sha256_file(f) != h:
            raise DataError(f"{f}: checkpoint missing or changed since it was written (sha256 mismatch); "
                            f"refusing to load it: delete {out} to start over")
    model = cls.load(str(ck / "model.zip"), env=env, device=device)
    model.load_replay_buffer(str(ck / "replay_buffer.pkl"))
    return model


def train_policy(cfg: PolicyTrainConfig, out: str | os.PathLike,
                 log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train (or resume) a SAC/TQC policy in ``cfg.domain``; return the final manifest.

    Raises:
        ConfigError: unknown domain/algorithm, a bad budget, missing SB3, a warm start that does
            not fit, or an existing run with a different configuration.
        DataError: a checkpoint whose sha256 does not match the manifest.
    """
    from xcurate.datasets.domains import get_domain
    from xcurate.utils import atomic_path, library_versions, sha256_file, write_json_atomic

    cfg.validate()
    cls = _sb3(cfg.algo)
    say = log or (lambda _m: None)
    out = Path(out)
    dom = get_domain(cfg.domain)
    prev = _read_manifest(out)
    if prev is None and out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a policy training run; choose another --out")
    if prev is not None:
        if prev.get("kind") != "policy_train":
            raise ConfigError(f"{out} holds a {prev.get('kind')!r} output, not a policy training run")
        old = prev.get("config", {})
        diff = [k for k in _FIXED if _norm(old.get(k)) != _norm(asdict(cfg).get(k))]
        if diff:
            raise ConfigError(f"{out} was trained with other settings ({', '.join(f'{k}={old.get(k)!r}' for k in diff)}); "
                              "use the same settings to resume, or another --out")
    warm_path = _resolve_warm_start(cfg.warm_start, cfg.algo) if cfg.warm_start else None
    out.mkdir(parents=True, exist_ok=True)

    from stable_baselines3.common.monitor import Monitor

    env = Monitor(dom.make_env())
    env.reset(seed=cfg.seed)
    env.action_space.seed(cfg.seed)
    man: dict[str, Any] = prev or {
        "kind": "policy_train", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sessions": [],
        "timesteps": 0, "checkpoint": {}, "status": "running"}
    man.update({"config": _jsonable(asdict(cfg)), "versions": library_versions(), "domain": dom.name,
                "robot": dom.robot, "obs_dim": dom.obs_dim, "act_dim": dom.act_dim})
    if prev is not None and prev.get("checkpoint"):
        model = _load_checkpoint(cls, out, env, prev["checkpoint"], cfg.device)
        say(f"resume {out}: from step {model.num_timesteps:,} of {cfg.steps:,}")
        resumed_from = int(model.num_timesteps)
    else:
        model = cls("MlpPolicy", env, learning_rate=cfg.learning_rate, buffer_size=cfg.buffer_size,
                    learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, tau=cfg.tau, gamma=cfg.gamma,
                    policy_kwargs={"net_arch": list(cfg.net_arch)}, seed=cfg.seed, device=cfg.device, verbose=0)
        if warm_path is not None:
            man["warm_start"] = {**_warm_start(model, warm_path), "sha256": sha256_file(warm_path)}
            say(f"warm start from {warm_path} ({man['warm_start']['copied']} tensors copied)")
        resumed_from = 0
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_step": resumed_from}
    man["sessions"].append(session)
    man["status"] = "running"
    write_json_atomic(_manifest_path(out), man)
    t0 = time.perf_counter()
    while model.num_timesteps < cfg.steps:
        chunk = min(cfg.checkpoint_every - model.num_timesteps % cfg.checkpoint_every,
                    cfg.steps - model.num_timesteps)
        model.learn(total_timesteps=chunk, reset_num_timesteps=False, progress_bar=False)
        man["checkpoint"] = _save_checkpoint(model, out)
        man["timesteps"] = int(model.num_timesteps)
        session.update({"to_step": man["timesteps"], "seconds": round(time.perf_counter() - t0, 2)})
        write_json_atomic(_manifest_path(out), man)
        _prune_checkpoints(out, man["checkpoint"]["dir"])
        rets = [float(e["r"]) for e in list(model.ep_info_buffer or [])[-10:]]
        say(f"step {model.num_timesteps:,}/{cfg.steps:,}"
            + (f": training return (last {len(rets)} episodes) {np.mean(rets):.1f}" if rets else ""))
    with atomic_path(out / "policy.zip") as tmp:
        model.save(str(tmp))
    env.close()
    man["policy"] = {"path": "policy.zip", "sha256": sha256_file(out / "policy.zip"),
                     "spec": f"trained:{out}"}
    man["timesteps"] = int(model.num_timesteps)
    session.update({"to_step": man["timesteps"], "seconds": round(time.perf_counter() - t0, 2)})
    man["status"] = "complete"
    man["timings"] = {"total_s": round(sum(s.get("seconds", 0.0) for s in man["sessions"]), 2)}
    write_json_atomic(_manifest_path(out), man)
    if cfg.eval_episodes > 0:
        from xcurate.datasets.collect import evaluate

        rets = evaluate(dom.name, f"trained:{out}", episodes=cfg.eval_episodes, seed=cfg.seed + 10_000)
        man["evaluation"] = {"episodes": cfg.eval_episodes, "return_mean": float(rets.mean()),
                             "return_std": float(rets.std()), "returns": rets.tolist(), "deterministic": True}
        say(f"evaluation in {dom.name}: return {rets.mean():.1f} +/- {rets.std():.1f} "
            f"over {cfg.eval_episodes} episodes")
        write_json_atomic(_manifest_path(out), man)
    return man


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (tuple, list)) else v


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def trained_policy_path(rest: str) -> tuple[Path, dict[str, Any]]:
    """``trained:DIR`` (a run folder) or ``trained:NAME`` ($XCURATE_DATA/policies/NAME) -> (policy.zip, manifest).

    Raises:
        ConfigError: no finished run there.
    """
    from xcurate.utils import data_root

    p = Path(rest).expanduser()
    if not p.is_dir():
        alt = data_root() / "policies" / rest
        p = alt if alt.is_dir() else p
    man = _read_manifest(p) if p.is_dir() else None
    if man is None or man.get("kind") != "policy_train":
        raise ConfigError(f"policy 'trained:{rest}': no policy training run at {p} (run `xcurate policies train`)")
    zp = p / "policy.zip"
    if man.get("status") != "complete" or not zp.is_file():
        raise ConfigError(f"policy 'trained:{rest}': the run at {p} has not finished "
                          f"({man.get('timesteps', 0):,} of {man.get('config', {}).get('steps')} steps); "
                          "re-run `xcurate policies train` with the same --out to resume")
    return zp, man
