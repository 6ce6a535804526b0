"""Behaviour policies: deterministic ``obs (B, O) -> action (B, A)`` callables.

INTERFACE (stable; other modules rely on it):

    load_policy(spec, domain=None, seed=0) -> Policy
    Policy(obs, steps=None) -> actions        # obs (B, obs_dim) or (obs_dim,), float64 actions
    Policy.name, .spec, .obs_dim, .act_dim, .robot, .uses_time_feature
    Policy.reset()                            # rewind the internal step counter (time feature)
    Policy.check_domain(domain)               # ConfigError if the policy does not fit the domain
    list_builtin() -> list[str]               # specs of the policies shipped in the package

Spec forms:

* ``sb3:PATH.zip`` or ``sb3:<algo>:PATH.zip`` -- an RL-Baselines3-Zoo agent (SB3 1.x pickles). The
  algorithm (sac, tqc, ppo, a2c, trpo, ars) is inferred from the path unless given.
* ``cs285:PATH.pkl`` -- a Berkeley CS285 expert (numpy 64-64 tanh MLP with obs normalisation).
* ``builtin:<robot>-<level>`` -- a small linear ARS policy shipped with xcurate.
* ``trained:DIR`` (or ``trained:NAME`` for ``$XCURATE_DATA/policies/NAME``) -- a policy trained in a
  domain by ``xcurate policies train`` (:mod:`xcurate.datasets.train_policy`); its ``policy.zip`` is
  read with the zoo reader below (no unpickling), its robot comes from the run's manifest.
* ``random`` -- uniform random actions in the action box (seeded).

How zoo agents are read (security). A zoo ``.zip`` holds a JSON ``data`` file (some entries are
cloudpickled Python objects), ``policy.pth`` (a torch state dict) and optimizer states. Loading it
with SB3's own ``Model.load`` un-cloudpickles the policy class and keyword arguments, i.e. it
executes code from the file even when ``custom_objects`` replaces the spaces and schedules. xcurate
therefore reads zoo agents with its own reader that never unpickles code: the ``data`` entry is
parsed as plain JSON (only its human-readable fields are used), ``policy.pth`` is read with
``torch.load(weights_only=True)`` and the actor network is rebuilt in numpy from the state dict.
``vecnormalize.pkl`` is read with :func:`xcurate.utils.safe_load_pickle`, with the four classes it
references (VecNormalize, RunningMeanStd, gym Box, numpy RandomState) mapped to inert
placeholders. SB3 itself is only needed for :func:`load_sb3_model`, which builds the original SB3
model (with ``custom_objects`` for observation_space, action_space, learning_rate, lr_schedule and
clip_range) to cross-check the numpy actor; that path does unpickle code and must only be used on
files from a trusted source (the RL-Baselines3-Zoo release in ``../shared``).
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.errors import ConfigError, DataError

#: Robot names as they appear in policy paths (``HalfCheetah-v3``, ``Ant.pkl``) -> domain robot.
_ROBOT_NAMES = {"halfcheetah": "halfcheetah", "hopper": "hopper", "walker2d": "walker2d", "ant": "ant"}
#: Dimension of the contact-force block that gym v3 Ant appended (all zeros under mujoco >= 2).
ANT_CFRC_DIM = 84
#: Episode length used by the zoo's TimeFeatureWrapper.
MAX_EPISODE_STEPS = 1000
ALGOS = ("sac", "tqc", "ppo", "a2c", "trpo", "ars")

SPEC_FORMS = ("sb3:PATH.zip", "sb3:<algo>:PATH.zip", "cs285:PATH.pkl", "builtin:<robot>-<level>", "trained:DIR",
              "random")

#: Returns measured in ../shared/policies/README.md (Gymnasium v5, deterministic, 5 episodes).
REPORTED_RETURNS: dict[tuple[str, str], float] = {
    ("tqc", "halfcheetah"): 12183, ("sac", "halfcheetah"): 9417, ("ppo", "halfcheetah"): 5893,
    ("ars", "halfcheetah"): 4952, ("a2c", "halfcheetah"): 2942, ("cs285", "halfcheetah"): 4172,
    ("trpo", "hopper"): 3626, ("tqc", "hopper"): 3272, ("ars", "hopper"): 3291, ("ppo", "hopper"): 2441,
    ("sac", "hopper"): 1096, ("a2c", "hopper"): 914, ("cs285", "hopper"): 3728,
    ("tqc", "walker2d"): 4499, ("sac", "walker2d"): 3920, ("ppo", "walker2d"): 3657,
    ("trpo", "walker2d"): 4298, ("ars", "walker2d"): 990, ("a2c", "walker2d"): 673,
    ("cs285", "walker2d"): 4659,
    ("trpo", "ant"): 5147, ("cs285", "ant"): 4620, ("ars", "ant"): 2329, ("ppo", "ant"): 1602,
}

_ACTIVATIONS = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "leakyrelu": lambda x: np.where(x > 0, x, 0.01 * x),
}


# ------------------------------------------------------------------------------------------------
# Policy classes
# ------------------------------------------------------------------------------------------------


class Policy:
    """Base class of all behaviour policies.

    A policy maps a batch of raw domain observations ``(B, obs_dim)`` to actions ``(B, act_dim)``
    deterministically. Policies trained with a time feature (zoo PPO on Ant/Walker2d) need the step
    index ``t`` of each observation within its episode: pass ``steps`` explicitly, or rely on the
    internal counter, which :meth:`reset` sets to 0 and every call without ``steps`` advances by 1.

    Attributes:
        name: Short human-readable name (e.g. ``"zoo-tqc-hopper"``).
        spec: The spec the policy was loaded from.
        obs_dim: Observation dimension the policy expects (the domain's, before padding).
        act_dim: Action dimension.
        robot: Robot the policy was trained on (``"hopper"``), or None if unknown (random).
        uses_time_feature: Whether the policy appends ``1 - t/1000`` to its input.
        info: Free-form details (algorithm, files, reported return).
    """

    def __init__(self, name: str, spec: str, obs_dim: int, act_dim: int, robot: str | None,
                 uses_time_feature: bool = False, info: dict[str, Any] | None = None) -> None:
        self.name = name
        self.spec = spec
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.robot = robot
        self.uses_time_feature = uses_time_feature
        self.info = dict(info or {})
        self._t = 0

    def reset(self) -> None:
        """Start a new episode: the internal step counter goes back to 0."""
        self._t = 0

    def __call__(self, obs: np.ndarray, steps: np.ndarray | int | None = None) -> np.ndarray:
        """Actions for a batch of observations.

        Args:
            obs: (B, obs_dim) or (obs_dim,) raw observations of the domain.
            steps: step index within the episode of each row ((B,) or a scalar); if None, the
                internal counter is used for every row and then advanced by one.

        Returns:
            (B, act_dim) float64 actions (or (act_dim,) for a 1-D input).
        """
        x = np.asarray(obs, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ConfigError(f"policy {self.name}: expected observations of shape (B, {self.obs_dim}), "
                              f"got {np.asarray(obs).shape}")
        if steps is None:
            t = np.full(len(x), self._t, dtype=np.int64)
            self._t += 1
        else:
            t = np.broadcast_to(np.asarray(steps, dtype=np.int64).reshape(-1), (len(x),))
        a = self._act(x, t)
        return a[0] if single else a

    def _act(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_domain(self, domain: Any) -> None:
        """Raise :class:`ConfigError` unless this policy fits ``domain`` (robot, obs and act dims)."""
        from xcurate.datasets.domains import get_domain

        dom = get_domain(domain)
        if self.robot is not None and self.robot != dom.robot:
            raise ConfigError(f"policy {self.spec!r} was trained on {self.robot} but domain {dom.name!r} "
                              f"is a {dom.robot}")
        if self.obs_dim != dom.obs_dim or self.act_dim != dom.act_dim:
            raise ConfigError(f"policy {self.spec!r} expects obs/act dims ({self.obs_dim}, {self.act_dim}) but "
                              f"domain {dom.name!r} has ({dom.obs_dim}, {dom.act_dim})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, obs_dim={self.obs_dim}, act_dim={self.act_dim})"


@dataclass
class Layer:
    """One dense layer ``act(x @ W + b)``."""

    W: np.ndarray  # (in, out) weight matrix
    b: np.ndarray  # (out,) bias
    activation: str = "identity"  # one of identity, relu, tanh, elu, leakyrelu


@dataclass
class ObsPipeline:
    """How a raw observation becomes the network input: pad, time feature, normalise, clip."""

    pad: int = 0  # zeros appended after the raw observation (gym v3 Ant contact forces)
    time_feature: bool = False  # append 1 - t / max_steps (sb3-contrib TimeFeatureWrapper)
    max_steps: int = MAX_EPISODE_STEPS  # episode length of the time feature
    mean: np.ndarray | None = None  # normalisation mean over the full network input (or None)
    scale: np.ndarray | None = None  # normalisation divisor (sqrt(var + eps) or std + 1e-6)
    clip: float = np.inf  # normalised observations are clipped to [-clip, clip]
    extra: dict[str, Any] = field(default_factory=dict)  # provenance of the statistics

    def __call__(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """(B, obs_dim) raw observations -> (B, in_dim) network input."""
        parts = [obs]
        if self.pad:
            parts.append(np.zeros((len(obs), self.pad)))
        if self.time_feature:
            parts.append((1.0 - steps.astype(np.float64) / self.max_steps)[:, None])
        x = np.concatenate(parts, axis=1) if len(parts) > 1 else obs
        if self.mean is not None:
            x = (x - self.mean) / self.scale
            if np.isfinite(self.clip):
                x = np.clip(x, -self.clip, self.clip)
        return x


class MLPPolicy(Policy):
    """A numpy MLP policy: observation pipeline, dense layers, then tanh-squash or clip to the box.

    Used for zoo agents (weights read from the SB3 state dict), CS285 experts and builtin ARS
    policies.
    """

    def __init__(self, name: str, spec: str, obs_dim: int, act_dim: int, robot: str | None,
                 pipeline: ObsPipeline, layers: list[Layer], output: str, low: np.ndarray,
                 high: np.ndarray, info: dict[str, Any] | None = None) -> None:
        super().__init__(name, spec, obs_dim, act_dim, robot, pipeline.time_feature, info)
        if output not in ("tanh", "clip"):
            raise ValueError(f"output must be 'tanh' or 'clip', got {output!r}")
        self.pipeline = pipeline
        self.layers = layers
        self.output = output
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)

    @property
    def in_dim(self) -> int:
        """Input dimension of the first layer."""
        return int(self.layers[0].W.shape[0])

    def _act(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        x = self.pipeline(obs, steps)
        for layer in self.layers:
            x = _ACTIVATIONS[layer.activation](x @ layer.W + layer.b)
        if self.output == "tanh":  # SAC/TQC: squash to [-1, 1], then rescale to the action box
            return self.low + 0.5 * (np.tanh(x) + 1.0) * (self.high - self.low)
        return np.clip(x, self.low, self.high)


class RandomPolicy(Policy):
    """Uniform random actions in ``[low, high]``; seeded and reproducible."""

    def __init__(self, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, seed: int = 0) -> None:
        super().__init__("random", "random", obs_dim, act_dim, None, info={"seed": seed})
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def _act(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, size=(len(obs), self.act_dim))


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def load_policy(spec: str, domain: Any = None, seed: int = 0) -> Policy:
    """Load a behaviour policy from a spec and (optionally) check that it fits ``domain``.

    Args:
        spec: ``sb3:PATH.zip``, ``sb3:<algo>:PATH.zip``, ``cs285:PATH.pkl``,
            ``builtin:<robot>-<level>`` or ``random``.
        domain: A domain name or :class:`~xcurate.datasets.domains.Domain`. Required for
            ``random`` (it fixes the dims); for the others it is checked against the policy.
        seed: Seed of the random policy (ignored by deterministic policies).

    Raises:
        ConfigError: unknown spec form, missing file or a policy/domain mismatch.
    """
    from xcurate.datasets.domains import get_domain

    spec = str(spec).strip()
    dom = get_domain(domain) if domain is not None else None
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if spec.lower() == "random":
        if dom is None:
            raise ConfigError("policy 'random' needs a domain (it takes its dims from the domain)")
        low, high = _action_box(dom)
        return RandomPolicy(dom.obs_dim, dom.act_dim, low, high, seed=seed)
    if kind == "sb3" and rest:
        algo = None
        head, sep, tail = rest.partition(":")
        if sep and head.lower() in ALGOS:
            algo, rest = head.lower(), tail
        pol = load_zoo_policy(rest, algo=algo, spec=spec)
    elif kind == "cs285" and rest:
        pol = load_cs285_policy(rest, spec=spec)
    elif kind == "builtin" and rest:
        pol = load_builtin_policy(rest, spec=spec)
    elif kind == "trained" and rest:
        pol = load_trained_policy(rest, spec=spec)
    else:
        raise ConfigError(f"unknown policy spec {spec!r}; accepted forms: {', '.join(SPEC_FORMS)}")
    if dom is not None:
        pol.check_domain(dom)
    return pol


def _action_box(dom: Any) -> tuple[np.ndarray, np.ndarray]:
    env = dom.make_env()
    try:
        space = env.action_space
        return np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    finally:
        env.close()


def robot_from_path(path: str | Path) -> str | None:
    """The robot named in a policy path (``.../Hopper-v3_1/Hopper-v3.zip`` -> ``hopper``), or None."""
    for part in reversed(Path(path).parts):
        m = re.match(r"^(halfcheetah|hopper|walker2d|ant)(?:[-_.]|$)", part.lower())
        if m:
            return _ROBOT_NAMES[m.group(1)]
    return None


def _existing(path: str, spec: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"policy {spec!r}: file {p} not found")
    return p


# ---------------------------------------------------------------------------------------- zoo


def _infer_algo(path: Path, spec: str) -> str:
    for part in reversed(path.parts[:-1]):
        if part.lower() in ALGOS:
            return part.lower()
    raise ConfigError(f"policy {spec!r}: cannot infer the algorithm from the path; write "
                      f"sb3:<algo>:PATH with <algo> one of {', '.join(ALGOS)}")


def read_zoo_zip(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a SB3 ``.zip`` without unpickling code: (JSON ``data`` entry, policy state dict).

    The state dict is read with ``torch.load(weights_only=True)``; cloudpickled values in ``data``
    are left as their base64 strings (never decoded).
    """
    import torch

    p = Path(path)
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise DataError(f"{p}: not a Stable-Baselines3 model (needs 'data' and 'policy.pth')")
            data = json.loads(z.read("data"))
            state = torch.load(io.BytesIO(z.read("policy.pth")), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise DataError(f"{p}: policy.pth is not a state dict of tensors")
    except (zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise DataError(f"{p}: cannot read SB3 model ({type(e).__name__}: {e})") from None
    except DataError:
        raise
    except pickle.UnpicklingError:  # torch's weights-only reader met something else than tensors
        raise DataError(f"{p}: policy.pth holds objects other than tensors; refused (loading it could run "
                        "code from the file)") from None
    except Exception as e:  # truncated file, ...: first line only (torch's messages run to many lines)
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{p}: cannot read policy.pth ({type(e).__name__}: {first[:200]})") from None
    return data, {k: v.detach().cpu().numpy().astype(np.float64) for k, v in state.items()}


def _space_shape(entry: Any) -> tuple[int, ...] | None:
    if isinstance(entry, dict):
        shape = entry.get("shape", entry.get("_shape"))
        if shape is not None:
            return tuple(int(s) for s in shape)
    return None


def _parse_array(text: Any, n: int, default: float) -> np.ndarray:
    if isinstance(text, str):
        vals = np.array(text.replace("[", " ").replace("]", " ").split(), dtype=np.float64)
        if len(vals) == n:
            return vals
    return np.full(n, default)


def _activation_name(policy_kwargs: Any, algo: str) -> str:
    default = "relu" if algo in ("sac", "tqc") else "tanh"
    if isinstance(policy_kwargs, dict) and "activation_fn" in policy_kwargs:
        text = str(policy_kwargs["activation_fn"]).lower()
        for name in ("leakyrelu", "relu", "tanh", "elu"):
            if f".{name}'" in text or text.endswith(name):
                return name
        raise ConfigError(f"unsupported activation {policy_kwargs['activation_fn']!r} in SB3 policy_kwargs")
    return default


def _dense_stack(state: dict[str, np.ndarray], prefix: str, activation: str) -> list[Layer]:
    """Layers ``prefix.<i>.weight`` of an SB3 nn.Sequential, in index order."""
    idx = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"\.(\d+)\.weight$", k))})
    return [Layer(state[f"{prefix}.{i}.weight"].T.copy(), state[f"{prefix}.{i}.bias"].copy(), activation)
            for i in idx]


def load_vecnormalize(path: str | Path) -> dict[str, Any]:
    """Observation statistics from a zoo ``vecnormalize.pkl`` (read with the restricted unpickler).

    Returns:
        dict with ``mean``, ``var``, ``clip_obs``, ``epsilon`` and ``norm_obs``.
    """
    from xcurate.utils import safe_load_pickle

    extra = {
        ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"): _Inert,
        ("stable_baselines3.common.running_mean_std", "RunningMeanStd"): _Inert,
        ("gym.spaces.box", "Box"): _Inert,
        ("gymnasium.spaces.box", "Box"): _Inert,
        ("numpy.random._pickle", "__randomstate_ctor"): _inert_ctor,
        ("numpy.random._pickle", "__bit_generator_ctor"): _inert_ctor,
        ("numpy.random._pickle", "__generator_ctor"): _inert_ctor,
    }
    obj = safe_load_pickle(path, extra_globals=extra)
    st = getattr(obj, "__dict__", {})
    rms = st.get("obs_rms")
    if rms is None or not hasattr(rms, "mean"):
        raise DataError(f"{path}: no observation statistics (obs_rms) in VecNormalize pickle")
    return {"mean": np.asarray(rms.mean, np.float64), "var": np.asarray(rms.var, np.float64),
            "clip_obs": float(st.get("clip_obs", 10.0)), "epsilon": float(st.get("epsilon", 1e-8)),
            "norm_obs": bool(st.get("norm_obs", True))}


class _Inert:
    """Placeholder for classes in trusted-format pickles: stores its state, runs no code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["state"] = state


def _inert_ctor(*args: Any, **kwargs: Any) -> _Inert:
    return _Inert()


def _zoo_config_text(path: Path) -> str:
    """Concatenated text of ``config.yml``/``args.yml`` next to the zip (empty if absent)."""
    sub = path.parent / path.stem
    out = []
    for name in ("config.yml", "args.yml"):
        f = sub / name
        if f.is_file():
            out.append(f.read_text(errors="replace"))
    return "\n".join(out)


def load_zoo_policy(path: str | Path, algo: str | None = None, spec: str | None = None) -> MLPPolicy:
    """Load an RL-Baselines3-Zoo agent as a numpy :class:`MLPPolicy` (no code is unpickled).

    Args:
        path: The agent's ``.zip`` (``<algo>/<Env>-v3_1/<Env>-v3.zip``).
        algo: sac, tqc, ppo, a2c, trpo or ars; inferred from the path when None.
        spec: The spec string for messages (defaults to ``sb3:<path>``).
    """
    spec = spec or f"sb3:{path}"
    p = _existing(str(path), spec)
    algo = algo or _infer_algo(p, spec)
    if algo not in ALGOS:
        raise ConfigError(f"policy {spec!r}: unknown algorithm {algo!r} (one of {', '.join(ALGOS)})")
    data, state = read_zoo_zip(p)
    robot = robot_from_path(p)
    obs_shape = _space_shape(data.get("observation_space"))
    act_shape = _space_shape(data.get("action_space"))
    pk = data.get("policy_kwargs") or {}
    activation = _activation_name(pk, algo)
    if algo in ("sac", "tqc"):
        if data.get("use_sde") or (isinstance(pk, dict) and pk.get("use_sde")):
            raise ConfigError(f"policy {spec!r}: gSDE actors are not supported")
        layers = _dense_stack(state, "actor.latent_pi", activation)
        layers.append(Layer(state["actor.mu.weight"].T.copy(), state["actor.mu.bias"].copy()))
        output = "tanh"
    elif algo == "ars":
        if "action_net.weight" in state:
            w = state["action_net.weight"]
            b = state.get("action_net.bias", np.zeros(len(w)))
            layers = [Layer(w.T.copy(), np.asarray(b).copy())]
        else:  # ARS with an MLP policy: action_net is an nn.Sequential
            layers = _dense_stack(state, "action_net", "relu")
            for la in layers[:-1]:
                la.activation = _activation_name(pk, "sac")
            layers[-1].activation = "identity"
        squash = isinstance(pk, dict) and pk.get("squash_output", False)
        output = "tanh" if squash else "clip"
    else:  # ppo, a2c, trpo: ActorCriticPolicy, deterministic action = action_net(latent)
        layers = _dense_stack(state, "mlp_extractor.policy_net", activation)
        layers.append(Layer(state["action_net.weight"].T.copy(), state["action_net.bias"].copy()))
        output = "clip"
    if not layers:
        raise DataError(f"{p}: no actor weights found for algorithm {algo}")
    in_dim = int(layers[0].W.shape[0])
    act_dim = int(layers[-1].W.shape[1])
    if obs_shape is not None and obs_shape != (in_dim,):
        raise DataError(f"{p}: observation_space shape {obs_shape} does not match the actor input {in_dim}")
    cfg = _zoo_config_text(p)
    time_feature = "TimeFeatureWrapper" in cfg
    raw = in_dim - int(time_feature)
    pad = ANT_CFRC_DIM if robot == "ant" and raw > ANT_CFRC_DIM else 0
    pipeline = ObsPipeline(pad=pad, time_feature=time_feature)
    vn = p.parent / p.stem / "vecnormalize.pkl"
    if vn.is_file():
        st = load_vecnormalize(vn)
        if st["norm_obs"]:
            if st["mean"].shape != (in_dim,):
                raise DataError(f"{vn}: statistics have {st['mean'].shape[0]} dims, the actor takes {in_dim}")
            pipeline.mean = st["mean"]
            pipeline.scale = np.sqrt(st["var"] + st["epsilon"])
            pipeline.clip = st["clip_obs"]
            pipeline.extra = {"vecnormalize": str(vn)}
    elif "normalize" in cfg and re.search(r"normalize\s*\n\s*-\s*(true|dict\(norm_obs=True)", cfg):
        raise DataError(f"{p}: trained with VecNormalize but {vn} is missing")
    n = act_shape[0] if act_shape else act_dim
    low = _parse_array((data.get("action_space") or {}).get("low"), n, -1.0)
    high = _parse_array((data.get("action_space") or {}).get("high"), n, 1.0)
    info = {"kind": "sb3", "algo": algo, "path": str(p), "time_feature": time_feature, "pad": pad,
            "reported_return": REPORTED_RETURNS.get((algo, robot or ""))}
    return MLPPolicy(f"zoo-{algo}-{robot}", spec, raw - pad, act_dim, robot, pipeline, layers, output,
                     low, high, info)


def load_sb3_model(path: str | Path, algo: str | None = None):
    """The original SB3/sb3-contrib model (for cross-checking :func:`load_zoo_policy`).

    Uses SB3's own loader with ``custom_objects`` for observation_space, action_space,
    learning_rate, lr_schedule and clip_range (the gym-era pickled spaces do not load). SB3 still
    un-cloudpickles the policy class/kwargs: TRUSTED FILES ONLY (the zoo release in ../shared).

    Raises:
        ConfigError: if stable-baselines3 / sb3-contrib are not installed.
    """
    p = Path(path)
    algo = algo or _infer_algo(p, f"sb3:{p}")
    try:
        import gymnasium as gym
        import stable_baselines3 as sb3
        if algo in ("tqc", "trpo", "ars"):
            import sb3_contrib
    except ImportError:
        raise ConfigError("loading SB3 models needs stable-baselines3 and sb3-contrib: "
                          "pip install 'xcurate[sb3]'") from None
    classes = {"sac": lambda: sb3.SAC, "ppo": lambda: sb3.PPO, "a2c": lambda: sb3.A2C,
               "tqc": lambda: sb3_contrib.TQC, "trpo": lambda: sb3_contrib.TRPO, "ars": lambda: sb3_contrib.ARS}
    data, _ = read_zoo_zip(p)
    obs_shape = _space_shape(data.get("observation_space"))
    act_shape = _space_shape(data.get("action_space"))
    if obs_shape is None or act_shape is None:
        raise DataError(f"{p}: observation/action space shapes missing from the model data")
    low = _parse_array(data["action_space"].get("low"), act_shape[0], -1.0).astype(np.float32)
    high = _parse_array(data["action_space"].get("high"), act_shape[0], 1.0).astype(np.float32)
    custom = {
        "observation_space": gym.spaces.Box(-np.inf, np.inf, obs_shape, np.float32),
        "action_space": gym.spaces.Box(low, high, act_shape, np.float32),
        "learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0,
        "delta_std_schedule": lambda _: 0.0,  # ARS
    }
    return classes[algo]().load(str(p), device="cpu", custom_objects=custom)


def load_trained_policy(rest: str, spec: str | None = None) -> MLPPolicy:
    """A policy trained by ``xcurate policies train`` (``trained:DIR``), read without unpickling."""
    from xcurate.datasets.train_policy import trained_policy_path

    spec = spec or f"trained:{rest}"
    zp, man = trained_policy_path(rest)
    pol = load_zoo_policy(zp, algo=man["config"]["algo"], spec=spec)
    pol.robot = man.get("robot")
    pol.name = f"trained-{man['config']['algo']}-{man.get('domain')}"
    pol.info.update({"kind": "trained", "domain": man.get("domain"), "timesteps": man.get("timesteps"),
                     "evaluation": man.get("evaluation"), "reported_return": None})
    return pol


# ---------------------------------------------------------------------------------------- cs285


def load_cs285_policy(path: str | Path, spec: str | None = None) -> MLPPolicy:
    """Load a CS285 expert pickle (plain dict of arrays) via the restricted unpickler."""
    from xcurate.utils import safe_load_pickle

    spec = spec or f"cs285:{path}"
    p = _existing(str(path), spec)
    d = safe_load_pickle(p)
    try:
        gp = d["GaussianPolicy"]
        act = str(d.get("nonlin_type", "tanh")).lower()
        if act not in _ACTIVATIONS:
            raise ConfigError(f"{p}: unsupported nonlin_type {act!r}")
        norm = gp["obsnorm"]["Standardizer"]
        mean = np.asarray(norm["mean_1_D"], np.float64).reshape(-1)
        meansq = np.asarray(norm["meansq_1_D"], np.float64).reshape(-1)
        hidden = gp["hidden"]["FeedforwardNet"]
        names = sorted(hidden, key=lambda k: int(k.split("_")[-1]))
        layers = [Layer(np.asarray(hidden[k]["AffineLayer"]["W"], np.float64),
                        np.asarray(hidden[k]["AffineLayer"]["b"], np.float64).reshape(-1), act) for k in names]
        out = gp["out"]["AffineLayer"]
        layers.append(Layer(np.asarray(out["W"], np.float64), np.asarray(out["b"], np.float64).reshape(-1)))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise DataError(f"{p}: not a CS285 policy pickle (missing {e})") from None
    std = np.sqrt(np.maximum(0.0, meansq - mean**2))
    robot = robot_from_path(p)
    in_dim = layers[0].W.shape[0]
    pad = ANT_CFRC_DIM if robot == "ant" and in_dim > ANT_CFRC_DIM else 0
    pipeline = ObsPipeline(pad=pad, mean=mean, scale=std + 1e-6)
    act_dim = layers[-1].W.shape[1]
    info = {"kind": "cs285", "path": str(p), "pad": pad, "reported_return": REPORTED_RETURNS.get(("cs285", robot or ""))}
    return MLPPolicy(f"cs285-{robot}", spec, in_dim - pad, act_dim, robot, pipeline, layers, "clip",
                     -np.ones(act_dim), np.ones(act_dim), info)


# ---------------------------------------------------------------------------------------- builtin


def builtin_dir() -> Path:
    """Folder of the policies shipped with the package."""
    return Path(__file__).resolve().parent / "builtin_policies"


def list_builtin() -> list[str]:
    """Specs (``builtin:<robot>-<level>``) of the shipped policies."""
    return sorted(f"builtin:{f.stem}" for f in builtin_dir().glob("*.npz"))


def load_builtin_policy(name: str, spec: str | None = None) -> MLPPolicy:
    """Load a shipped linear ARS policy ``<robot>-<level>`` (``.npz``: W, b, obs_mean, obs_std, meta)."""
    spec = spec or f"builtin:{name}"
    f = builtin_dir() / f"{name.strip().lower()}.npz"
    if not f.is_file():
        avail = ", ".join(list_builtin()) or "none"
        raise ConfigError(f"unknown builtin policy {name!r} (available: {avail})")
    with np.load(f, allow_pickle=False) as z:
        W, b = np.asarray(z["W"], np.float64), np.asarray(z["b"], np.float64)
        mean, std = np.asarray(z["obs_mean"], np.float64), np.asarray(z["obs_std"], np.float64)
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    robot = meta.get("robot") or name.split("-")[0]
    pipeline = ObsPipeline(mean=mean, scale=std)
    act_dim, obs_dim = W.shape
    info = {"kind": "builtin", "path": str(f), **meta}
    return MLPPolicy(f"builtin-{name}", spec, obs_dim, act_dim, robot, pipeline, [Layer(W.T.copy(), b.copy())],
                     "clip", -np.ones(act_dim), np.ones(act_dim), info)


def save_linear_policy(path: str | Path, W: np.ndarray, b: np.ndarray, obs_mean: np.ndarray,
                       obs_std: np.ndarray, meta: dict[str, Any]) -> None:
    """Write a linear policy ``a = clip(W (o - mean)/std + b, -1, 1)`` as a small ``.npz`` (atomic).

    ``meta`` (JSON) should carry the manifest: robot, level, measured return, training config.
    """
    from xcurate.utils import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, W=np.asarray(W, np.float32), b=np.asarray(b, np.float32),
                            obs_mean=np.asarray(obs_mean, np.float64), obs_std=np.asarray(obs_std, np.float64),
                            meta=np.array(json.dumps(meta, default=str)))


# ---------------------------------------------------------------------------------------- discovery


def find_shared_policies(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Policies found under ``<shared>/policies`` (zoo zips and CS285 pickles) with reported returns."""
    from xcurate.utils import shared_dir

    base = Path(root) if root is not None else (shared_dir() / "policies" if shared_dir() else None)
    if base is None or not base.is_dir():
        return []
    out = []
    for z in sorted(base.glob("sb3-zoo/*/*/*.zip")):
        algo = z.parts[-3].lower()
        robot = robot_from_path(z)
        out.append({"spec": f"sb3:{z}", "kind": "sb3", "algo": algo, "robot": robot,
                    "reported_return": REPORTED_RETURNS.get((algo, robot or ""))})
    for f in sorted(base.glob("cs285/*.pkl")):
        robot = robot_from_path(f)
        out.append({"spec": f"cs285:{f}", "kind": "cs285", "algo": "cs285", "robot": robot,
                    "reported_return": REPORTED_RETURNS.get(("cs285", robot or ""))})
    return out
