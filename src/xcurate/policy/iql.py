"""Weighted Implicit Q-Learning (IQL) for cross-domain offline RL, in one readable module.

Written in the single-file style of CORL: a config dataclass, the networks, the losses and a
trainer whose :meth:`IQLTrainer.update` takes a batch and returns a metrics dict. What is added
for cross-domain data:

* a target batch (``batch_target`` rows) and a source batch (``batch_source`` rows) every step;
* per-sample source weights in the critic (and optionally the value/actor) loss, either static
  (the curated ``weight``/``keep`` columns) or normalised within each batch as the papers do
  (OTDF, IGDF, DVDF, TABB), always with explicit shape checks (weights are (K, B), never
  broadcast to (B, B));
* the source TD targets of DROCO (penalised, ``penalty`` column) and TABB (target-aligned,
  ``y_hat`` column), optionally mapped onto the learner's value scale (``droco_penalty`` /
  ``tabb_target="rescaled"``), DARA's reward correction, and OTDF's CVAE behaviour regulariser
  (ELBO or the official decoder log-likelihood, ``bc_form``);
* the papers' presets (:data:`VARIANTS`): which rows reach the actor (``source_in``) and which
  losses the weights enter (``weight_scope``); the source weights' effective sample size is
  logged every step (``src_ess``).

Seeds: every network is a stack of ``n_seeds`` independent networks evaluated with batched
matrix products (:class:`VecLinear`), so K seeds train in one process with one optimiser step.
Each seed has its own generator for initialisation and sampling, so seed k of a K-seed run
follows the same random stream as a single-seed run with that seed (equal up to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError
from xcurate.utils import resolve_device

#: Bumped whenever checkpoints/run directories change incompatibly (2: flat parameters, one optimiser).
FORMAT_VERSION = 2

#: compiled variants of the loss graph kept per process (torch._dynamo's recompile_limit is raised to this)
COMPILE_CACHE_ENTRIES = 64

BATCH_NORMS = ("none", "otdf", "igdf", "dvdf", "tabb")
SOURCE_TARGETS = ("iql", "droco", "tabb")
REWARD_CORRECTIONS = ("none", "delta_r", "corrected_reward")
WEIGHT_SCOPES = ("all", "q")
VALUE_SCALES = ("column", "rescaled")
TEMPERATURE_SCALES = ("absolute", "std")
BC_FORMS = ("elbo", "official")


@dataclass
class IQLConfig:
    """Hyper-parameters of weighted IQL (defaults: REFERENCE §3 and the papers)."""

    hidden_dim: int = 256  # width of each hidden layer (ReLU MLPs)
    n_hidden: int = 2  # number of hidden layers
    actor_lr: float = 3e-4  # Adam learning rate of the policy
    critic_lr: float = 3e-4  # Adam learning rate of the twin Q networks
    value_lr: float = 3e-4  # Adam learning rate of V
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target Q networks
    batch_target: int = 128  # target transitions per update
    batch_source: int = 128  # source transitions per update (0 or no source: target only)
    expectile: float = 0.7  # expectile of the value regression
    beta: float = 3.0  # inverse temperature of advantage-weighted regression
    exp_adv_max: float = 100.0  # clip of exp(beta * advantage)
    actor_cosine: bool = True  # cosine decay of the actor learning rate over max_steps
    max_steps: int = 1_000_000  # horizon of the cosine schedule (set to the run length)
    td_loss: str = "mse"  # TD loss of target rows: "mse" or "huber"
    source_td_loss: str = "auto"  # TD loss of source rows; "auto": huber for droco/tabb, else td_loss
    huber_delta: float = 30.0  # Huber threshold (DROCO uses 30-50)
    normalize_obs: bool = True  # z-score observations with target+source statistics
    source_in: str = "critic"  # "critic" (Q and V) or "critic_actor" (also the actor)
    batch_norm: str = "none"  # per-batch source weights: none (static columns)|otdf|igdf|dvdf|tabb
    score_column: str = "score"  # column used by otdf/igdf/dvdf per-batch weights
    proportion: float = 0.8  # OTDF: keep this top fraction of each source batch
    xi: float = 0.75  # IGDF: keep this top fraction of each source batch
    igdf_alpha: float = 1.0  # IGDF: weight exp(alpha * score)
    dvdf_lambda: float = 0.7  # DVDF: g = lambda h + (1 - lambda) advantage_norm
    dvdf_xi: float = 0.5  # DVDF: keep this top fraction by g
    tabb_temperature: float = 1.0  # TABB: softmax(-tbm / temperature) over the source batch
    source_target: str = "iql"  # source TD target: iql | droco (r + gamma (V' - u)) | tabb (y_hat)
    reward_correction: str = "none"  # DARA: none | delta_r (r + eta delta_r) | corrected_reward (column)
    dara_eta: float = 0.1  # DARA: reward correction scale
    bc_weight: float = 0.0  # OTDF: actor loss -= bc_weight * ELBO of pi(s) under a target CVAE
    cvae_hidden: int = 750  # OTDF CVAE hidden width
    cvae_kl: float = 0.5  # OTDF CVAE KL weight
    cvae_steps: int = 10_000  # OTDF CVAE pre-training steps on target data
    cvae_lr: float = 1e-3  # OTDF CVAE learning rate
    cvae_batch: int = 256  # OTDF CVAE batch size
    # --- variant semantics (defaults = xcurate's earlier behaviour; the paper presets in VARIANTS differ)
    weight_scope: str = "all"  # "all": source weights in Q, V and actor; "q": Q only (V/actor see kept rows, weight 1)
    droco_penalty: str = "column"  # "column": the curated u; "rescaled": u * std(V(s'))/std(V_scorer(s')) per batch
    tabb_target: str = "column"  # "column": y_hat; "rescaled": y(learner) + c (y_hat - y_scorer), c = std ratio
    tabb_temperature_scale: str = "absolute"  # "absolute": T in TBM units; "std": T * std(TBM) of the batch
    bc_form: str = "elbo"  # OTDF term: "elbo" (rec + kl KL) or "official" (decoder log-lik, variance cvae_var,
    #   measured in units of the actor's BC term: scaled by mean_d 1/(2 sigma_d^2), detached)
    cvae_var: float = 0.1  # OTDF official: variance of the decoder likelihood (bc_form="official")
    seed: int = 0  # first seed; seeds are seed, seed+1, ..., seed+n_seeds-1
    n_seeds: int = 1  # independent seeds trained together (stacked networks)
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", ...
    compile: bool = False  # torch.compile the losses (forward + backward graphs): faster updates after a compile
    cuda_graph: bool = False  # CUDA only: capture sample + update + target update as one CUDA graph, replayed
    #   (with compile=true the graph records the compiled, fused kernels: compilation happens in the warm-up)

    def __post_init__(self) -> None:
        """Check the variant-semantics fields (the others are checked by :meth:`validate`)."""
        for name, allowed in (("weight_scope", WEIGHT_SCOPES), ("droco_penalty", VALUE_SCALES),
                              ("tabb_target", VALUE_SCALES), ("tabb_temperature_scale", TEMPERATURE_SCALES),
                              ("bc_form", BC_FORMS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"IQLConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.cvae_var > 0:
            raise ConfigError(f"IQLConfig: cvae_var must be > 0, got {self.cvae_var}")

    def validate(self) -> IQLConfig:
        """Raise :class:`ConfigError` for invalid values."""
        checks = [
            (self.batch_norm in BATCH_NORMS, f"batch_norm must be one of {BATCH_NORMS}"),
            (self.source_target in SOURCE_TARGETS, f"source_target must be one of {SOURCE_TARGETS}"),
            (self.reward_correction in REWARD_CORRECTIONS,
             f"reward_correction must be one of {REWARD_CORRECTIONS}"),
            (self.source_in in ("critic", "critic_actor"), "source_in must be 'critic' or 'critic_actor'"),
            (self.td_loss in ("mse", "huber"), "td_loss must be 'mse' or 'huber'"),
            (self.source_td_loss in ("auto", "mse", "huber"), "source_td_loss must be auto, mse or huber"),
            (self.n_seeds >= 1, "n_seeds must be >= 1"),
            (self.batch_target >= 1 and self.batch_source >= 0, "batch sizes must be positive"),
            (0 < self.proportion <= 1 and 0 < self.xi <= 1 and 0 < self.dvdf_xi <= 1,
             "proportion, xi and dvdf_xi must be in (0, 1]"),
            (self.tabb_temperature > 0, "tabb_temperature must be > 0"),
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.actor_lr > 0 and self.critic_lr > 0 and self.value_lr > 0 and self.cvae_lr > 0,
             "learning rates (actor_lr, critic_lr, value_lr, cvae_lr) must be > 0"),
            (0 <= self.gamma < 1, "gamma must be in [0, 1)"),
            (0 < self.tau <= 1, "tau must be in (0, 1]"),
            (0 < self.expectile < 1, "expectile must be in (0, 1)"),
            (self.beta >= 0 and self.exp_adv_max > 0, "beta must be >= 0 and exp_adv_max > 0"),
            (self.huber_delta > 0, "huber_delta must be > 0"),
            (self.hidden_dim >= 1 and self.n_hidden >= 1 and self.cvae_hidden >= 1,
             "hidden_dim, n_hidden and cvae_hidden must be >= 1"),
            (self.cvae_batch >= 1 and self.cvae_steps >= 0, "cvae_batch must be >= 1 and cvae_steps >= 0"),
            (0 <= self.dvdf_lambda <= 1, "dvdf_lambda must be in [0, 1]"),
            (self.bc_weight >= 0 and self.cvae_kl >= 0, "bc_weight and cvae_kl must be >= 0"),
            (self.seed >= 0, "seed must be >= 0"),
        ]
        bad = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        if bad:  # NaN/inf would train with NaN losses (comparisons with NaN are all False)
            raise ConfigError(f"IQLConfig: {bad[0]} must be finite, got {getattr(self, bad[0])}")
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"IQLConfig: {msg}")
        return self

    def required_columns(self) -> list[str]:
        """Source columns (``extras``) this configuration needs."""
        cols = {"otdf": [self.score_column], "igdf": [self.score_column],
                "dvdf": [self.score_column, "advantage_norm"], "tabb": ["tbm"], "none": []}[self.batch_norm]
        cols += {"iql": [], "droco": ["penalty"], "tabb": ["y_hat"]}[self.source_target]
        if self.source_target == "droco" and self.droco_penalty == "rescaled":
            cols.append("v_next_scorer")
        if self.source_target == "tabb" and self.tabb_target == "rescaled":
            cols.append("y_scorer")
        cols += {"none": [], "delta_r": ["delta_r"], "corrected_reward": ["corrected_reward"]}[self.reward_correction]
        return cols

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IQLConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ConfigError(f"IQLConfig: unknown field(s) {bad}")
        return cls(**d)

    def with_overrides(self, items: dict[str, str]) -> IQLConfig:
        """A copy with ``key=value`` strings applied (values parsed to the field's type)."""
        d = self.to_dict()
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        for k, v in items.items():
            if k not in types:
                import difflib

                close = difflib.get_close_matches(k, list(types), n=1)
                raise ConfigError(f"--set {k}: unknown IQLConfig field" + (f" (did you mean {close[0]}?)" if close else ""))
            t = types[k]
            try:
                if t is bool:
                    if str(v).lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(v)
                    d[k] = str(v).lower() in ("1", "true", "yes")
                elif t is int:  # "1e3" is 1000; 1.5, nan and inf are refused
                    if not float(v).is_integer():
                        raise ValueError(v)
                    d[k] = int(float(v))
                else:
                    d[k] = t(v)
            except (ValueError, OverflowError):
                raise ConfigError(f"--set {k}={v}: expected a {t.__name__}") from None
        return IQLConfig(**d).validate()


#: Named method variants: presets of :class:`IQLConfig` fields (the papers' choices; README, "Train").
#: OTDF, IGDF and DVDF train the actor (and OTDF's regulariser) on the filtered source plus the
#: target and weight the Q loss only; xcurate's earlier choice is ``--set source_in=critic
#: --set weight_scope=all``.
VARIANTS: dict[str, dict[str, Any]] = {
    "iql": {},  # static curated weight/keep columns, source in the critic only
    "iql-actor": {"source_in": "critic_actor"},  # static weights in critic, value and actor
    "otdf": {"batch_norm": "otdf", "bc_weight": 0.5, "bc_form": "official", "source_in": "critic_actor",
             "weight_scope": "q"},  # per-batch OT weights (Q) + target CVAE regulariser, official strength
    "igdf": {"batch_norm": "igdf", "source_in": "critic_actor", "weight_scope": "q"},  # top-xi, exp(alpha score)
    "dvdf": {"batch_norm": "dvdf", "source_in": "critic_actor", "weight_scope": "q"},  # top-xi by g, exp(h)
    "tabb": {"batch_norm": "tabb", "source_target": "tabb", "tabb_target": "rescaled",
             "tabb_temperature_scale": "std"},  # softmax(-TBM/(T std TBM)), source regresses rescaled y_hat
    "droco": {"source_target": "droco", "droco_penalty": "rescaled"},  # penalised source target, Huber
    "dara": {"reward_correction": "delta_r"},  # source reward + eta * delta_r
}


def make_config(variant: str = "iql", **overrides: Any) -> IQLConfig:
    """The :class:`IQLConfig` of a named variant with field overrides."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    return IQLConfig(**{**VARIANTS[variant], **overrides}).validate()


# ============================================================================================
# Networks with a leading "member" dimension (seeds, or seeds x twin critics)
# ============================================================================================


class VecMLP(nn.Module):
    """``E`` independent ReLU MLPs ``in -> hidden x n_hidden -> out`` evaluated with batched matmuls.

    Layer ``l`` maps (E, B, i) -> (E, B, o) with one matmul. All weights and biases of all
    members live in one flat parameter (:attr:`flat`, the only registered parameter: the optimiser,
    the Polyak average and checkpoints see one tensor per network). The layers are leaf tensors
    that share the storage of :attr:`flat`, and their gradients share the storage of
    ``flat.grad``, so backward accumulates straight into the flat gradient (no split/cat per step).
    Consequently ``flat.grad`` must be zeroed in place (``zero_grad(set_to_none=False)``), never
    set to None.
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int, hidden: int, n_hidden: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * n_hidden + [out_dim]
        self.shapes: list[tuple[int, ...]] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            self.shapes += [(n_members, a, b), (n_members, 1, b)]  # weight (E, in, out), bias (E, 1, out)
        self.sizes = [math.prod(s) for s in self.shapes]
        self.flat = nn.Parameter(torch.zeros(sum(self.sizes)))
        self._bind()

    def _bind(self) -> None:
        """(Re)create the layer views of :attr:`flat` and of its gradient (after init or a device move)."""
        if self.flat.grad is None or self.flat.grad.shape != self.flat.shape:
            self.flat.grad = torch.zeros_like(self.flat)
        self._views = []
        for t, g, shape in zip(self.flat.detach().split(self.sizes), self.flat.grad.split(self.sizes),
                               self.shapes, strict=True):
            v = t.view(shape).requires_grad_(self.flat.requires_grad)
            v.grad = g.view(shape)
            self._views.append(v)

    def _apply(self, fn, recurse: bool = True):  # noqa: D102 - keep the views bound across .to()/.cuda()
        out = super()._apply(fn, recurse)
        self._bind()
        return out

    def tensors(self) -> list[Tensor]:
        """[weight_0, bias_0, weight_1, ...]: (E, in, out) and (E, 1, out) views of :attr:`flat`."""
        return self._views

    def reset(self, gens: list[torch.Generator]) -> None:
        """Initialise member e from ``gens[e]`` like ``nn.Linear`` (uniform +-1/sqrt(in), layer by layer)."""
        with torch.no_grad():
            for w, b in zip(self._views[0::2], self._views[1::2], strict=True):
                e, i, o = w.shape
                bound = 1.0 / math.sqrt(i)
                for m in range(e):
                    w[m].copy_(((torch.rand(o, i, generator=gens[m]) * 2 - 1) * bound).T)  # nn.Linear's (out, in)
                    b[m, 0].copy_((torch.rand(o, generator=gens[m]) * 2 - 1) * bound)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if torch.compiler.is_compiling():  # traced: views of flat itself (backward's cat is compiled too)
            ts = [t.view(s) for t, s in zip(self.flat.split(self.sizes), self.shapes, strict=True)]
        else:
            ts = self._views
            if ts[0].requires_grad != self.flat.requires_grad:  # follow requires_grad_() on the module
                for v in ts:
                    v.requires_grad_(self.flat.requires_grad)
        n = len(ts) // 2
        for layer in range(n):
            x = torch.baddbmm(ts[2 * layer + 1], x, ts[2 * layer])
            if layer < n - 1:
                x = x.relu_()  # in place: baddbmm's backward needs its inputs, not its output
        return x


class GaussianActor(nn.Module):
    """Tanh-mean Gaussian policy with a state-independent log-std (as in CORL's IQL)."""

    def __init__(self, k: int, obs_dim: int, act_dim: int, hidden: int, n_hidden: int) -> None:
        super().__init__()
        self.net = VecMLP(k, obs_dim, act_dim, hidden, n_hidden)
        self.log_std = nn.Parameter(torch.zeros(k, 1, act_dim))

    def mean(self, obs: Tensor) -> Tensor:
        """Deterministic action tanh(mu(s)), (K, B, act_dim)."""
        return torch.tanh(self.net(obs))

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """log pi(a|s) summed over action dims, (K, B)."""
        log_std = self.log_std.clamp(-20.0, 2.0)
        z = (act - self.mean(obs)) * torch.exp(-log_std)
        return (-0.5 * z ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class CVAE(nn.Module):
    """Conditional VAE of target behaviour beta(a|s) (OTDF/SPOT), one per seed."""

    def __init__(self, k: int, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.latent = 2 * act_dim
        self.enc = VecMLP(k, obs_dim + act_dim, 2 * self.latent, hidden, 2)
        self.dec = VecMLP(k, obs_dim + self.latent, act_dim, hidden, 2)

    def reset(self, gens: list[torch.Generator]) -> None:
        """Initialise (member e draws from ``gens[e]``)."""
        self.enc.reset(gens)
        self.dec.reset(gens)

    def elbo_terms(self, obs: Tensor, act: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """(reconstruction squared error, KL), each (K, B), with reparameterisation ``noise``."""
        mu, log_std = self.enc(torch.cat([obs, act], -1)).chunk(2, -1)
        log_std = log_std.clamp(-4.0, 15.0)
        z = mu + log_std.exp() * noise
        recon = torch.tanh(self.dec(torch.cat([obs, z], -1)))
        rec = ((recon - act) ** 2).sum(-1)
        kl = 0.5 * (mu ** 2 + (2 * log_std).exp() - 2 * log_std - 1).sum(-1)
        return rec, kl


# ============================================================================================
# Losses and per-batch source weights
# ============================================================================================


def weighted_mean(loss: Tensor, weight: Tensor) -> Tensor:
    """Per-seed weighted mean of a per-sample loss: ``(loss * weight).mean(-1)``, shape (K,).

    Both arguments must have exactly the same shape (K, B): a (B,) x (B, 1) product broadcasts
    to (B, B) and silently destroys the per-sample weighting (the OTDF/IGDF bug).
    """
    if loss.shape != weight.shape or loss.dim() != 2:
        raise ValueError(f"weighted_mean: loss {tuple(loss.shape)} and weight {tuple(weight.shape)} must both "
                         "be (K, B)")
    return (loss * weight).mean(-1)


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Asymmetric squared loss |tau - 1(diff < 0)| diff^2, elementwise."""
    w = torch.where(diff < 0, 1.0 - expectile, expectile)
    return w * diff ** 2


def td_loss(diff: Tensor, kind: str, delta: float) -> Tensor:
    """Elementwise TD loss: 0.5 * diff^2 ("mse" matches Huber's quadratic part) or Huber."""
    if kind == "huber":
        return F.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
    return 0.5 * diff ** 2


def _top_fraction_mask(score: Tensor, frac: float) -> Tensor:
    """(K, B) bool: the top ``ceil(frac * B)`` entries of each row."""
    b = score.shape[-1]
    n = max(1, math.ceil(frac * b))
    idx = score.topk(n, dim=-1).indices
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, idx, True)


def otdf_weights(d: Tensor, proportion: float) -> Tensor:
    """OTDF per-batch weights: d~ = (d - max d)/(max d - min d); keep top ``proportion``; exp(d~)."""
    dmax = d.max(-1, keepdim=True).values
    dmin = d.min(-1, keepdim=True).values
    dn = (d - dmax) / (dmax - dmin).clamp_min(1e-8)
    return torch.exp(dn) * _top_fraction_mask(d, proportion)


def igdf_weights(score: Tensor, xi: float, alpha: float) -> Tensor:
    """IGDF per-batch weights: keep the top ``xi`` of the batch, weight exp(alpha * score)."""
    return torch.exp(alpha * score) * _top_fraction_mask(score, xi)


def dvdf_weights(h: Tensor, adv_norm: Tensor, lam: float, xi: float) -> Tensor:
    """DVDF per-batch weights: keep the top ``xi`` by g = lam h + (1 - lam) A_norm, weight exp(h)."""
    g = lam * h + (1 - lam) * adv_norm
    return torch.exp(h) * _top_fraction_mask(g, xi)


def tabb_weights(tbm: Tensor, temperature: float, scale: str = "absolute") -> Tensor:
    """TABB per-batch weights: softmax(-TBM / T) over the source batch, scaled to mean 1.

    ``scale="absolute"``: T = ``temperature`` in TBM (return) units; ``"std"``: T = ``temperature``
    times the batch's standard deviation of TBM (detached, floored at 1e-6), so T = 1 spreads the
    weights the same way whatever the scale of the returns.
    """
    t = temperature
    if scale == "std" and tbm.shape[-1] > 1:  # one row: softmax is 1 whatever T
        t = temperature * tbm.detach().std(-1, keepdim=True).clamp_min(1e-6)
    return torch.softmax(-tbm / t, dim=-1) * tbm.shape[-1]


def effective_sample_size(w: Tensor) -> Tensor:
    """Kish's effective sample size of (K, B) weights as a fraction of B: (sum w)^2 / (B sum w^2), (K,)."""
    return w.sum(-1) ** 2 / (w.shape[-1] * (w ** 2).sum(-1)).clamp_min(1e-30)


def scale_ratio(learner: Tensor, scorer: Tensor) -> Tensor:
    """(K, 1) per-batch ratio std(learner) / std(scorer) over the last dim (floored at 1e-6).

    Maps differences of the scorer's value estimates onto the learner's scale: if
    V_learner ~ c V_scorer + b on the batch, c is estimated by matching the spreads. Where the
    scorer's values do not spread (std <= 1e-6, or a single row) the ratio is 1: nothing to match.
    """
    if learner.shape[-1] < 2:
        return torch.ones_like(learner[..., :1])
    s_std = scorer.std(-1, keepdim=True)
    ok = s_std > 1e-6
    return torch.where(ok, learner.std(-1, keepdim=True) / torch.where(ok, s_std, 1.0), 1.0)


# ============================================================================================
# Data on the device
# ============================================================================================


class DeviceData:
    """Transitions packed in one (N, F) device tensor, sampled per seed with ``torch.randint``.

    Layout of a row: obs | act | rew | next_obs | done | extra columns (``columns``). One gather
    per batch instead of one per field.
    """

    def __init__(self, ds: TransitionDataset, device: str, obs_mean: np.ndarray, obs_std: np.ndarray,
                 columns: list[str], rows: np.ndarray | None = None) -> None:
        parts = [(ds.observations - obs_mean) / obs_std, ds.actions, ds.rewards[:, None],
                 (ds.next_observations - obs_mean) / obs_std,
                 ds.terminals[:, None].astype(np.float32)]  # timeouts bootstrap: never merged with terminals
        parts += [np.asarray(ds.extras[c], dtype=np.float32).reshape(len(ds), 1) for c in columns]
        self.table = torch.from_numpy(np.concatenate(parts, 1).astype(np.float32)).to(device)
        o, a = ds.obs_dim, ds.act_dim
        self.slices = {"obs": slice(0, o), "act": slice(o, o + a), "rew": o + a,
                       "next_obs": slice(o + a + 1, 2 * o + a + 1), "done": 2 * o + a + 1}
        self.n_common = 2 * o + a + 2
        self.columns = list(columns)
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long, device=device)
        self.n = len(ds) if rows is None else len(rows)

    def sample_packed(self, gens: list[torch.Generator], batch: int) -> Tensor:
        """(K, batch, F) packed rows, seed k drawing its indices from ``gens[k]``."""
        dev = self.table.device
        idx = torch.stack([torch.randint(self.n, (batch,), generator=g, device=dev) for g in gens])
        if self.rows is not None:
            idx = self.rows[idx]
        return self.table[idx]

    def unpack(self, packed: Tensor) -> dict[str, Tensor]:
        """Named views of packed rows (common fields; extra columns when present)."""
        out = {k: packed[..., s] for k, s in self.slices.items()}
        if packed.shape[-1] > self.n_common:
            out.update({c: packed[..., self.n_common + i] for i, c in enumerate(self.columns)})
        return out

    def sample(self, gens: list[torch.Generator], batch: int) -> dict[str, Tensor]:
        """A (K, batch) sample as a dict of named arrays."""
        return self.unpack(self.sample_packed(gens, batch))


#: columns of the value-scale rescaling: (IQLConfig field, scorer that provides them)
_RESCALE_COLUMNS = {"v_next_scorer": ("droco_penalty", "ensemble"), "y_scorer": ("tabb_target", "tbm")}


def check_source_columns(source: TransitionDataset, cfg: IQLConfig) -> np.ndarray | None:
    """Validate the source columns a config needs; return the static sampling rows (or None).

    Rows where a required column is NaN (a scorer skipped them) are not sampled. Raises
    :class:`DataError` (one line, naming the dataset and column) for missing columns, all-NaN
    columns, NaN/Inf or negative weights, or a curated set whose kept weights are all zero.
    """
    src = source.source
    usable = np.ones(len(source), bool)
    for c in cfg.required_columns():
        if c in _RESCALE_COLUMNS and c not in source.extras:
            field, scorer = _RESCALE_COLUMNS[c]
            raise DataError(f"{src}: column {c!r} is required by {field}=rescaled; re-score with the current "
                            f"{scorer!r} scorer and curate again, or train with --set {field}=column")
        if c not in source.extras:
            raise DataError(f"{src}: column {c!r} is required by this variant (batch_norm={cfg.batch_norm}, "
                            f"source_target={cfg.source_target}, reward_correction={cfg.reward_correction}); "
                            "curate with the matching recipe")
        v = np.asarray(source.extras[c], dtype=np.float64)
        usable &= np.isfinite(v)  # NULL scores (rows a scorer skipped) are never sampled
        if not usable.any():
            raise DataError(f"{src}: column {c!r} has no finite value (all NaN/Inf)")
    if cfg.batch_norm != "none":
        # per-batch normalisation replaces the static filter and weights
        return None if usable.all() else np.flatnonzero(usable)
    keep = usable
    if "keep" in source.extras:
        keep = keep & np.asarray(source.extras["keep"]).astype(bool)
    if "weight" in source.extras:
        w = np.asarray(source.extras["weight"], dtype=np.float64)
        if not np.isfinite(w).all():
            raise DataError(f"{src}: column 'weight' contains {int((~np.isfinite(w)).sum())} NaN/Inf value(s)")
        if (w < 0).any():
            raise DataError(f"{src}: column 'weight' has {int((w < 0).sum())} negative value(s)")
        keep &= w > 0
        if not keep.any():
            raise DataError(f"{src}: all source weights are zero (or no row is kept): nothing to train on")
    if not keep.any():
        raise DataError(f"{src}: column 'keep' keeps no row: nothing to train on")
    return None if keep.all() else np.flatnonzero(keep)


# ============================================================================================
# The trainer
# ============================================================================================


class IQLTrainer:
    """Weighted IQL on a target dataset plus an optional (curated) source dataset.

    Example:
        >>> trainer = IQLTrainer(IQLConfig(max_steps=1000), target, source)   # doctest: +SKIP
        >>> for _ in range(1000):
        ...     metrics = trainer.train_step()
        >>> actions = trainer.act(observations)            # (K, obs_dim) -> (K, act_dim)
    """

    def __init__(self, cfg: IQLConfig, target: TransitionDataset,
                 source: TransitionDataset | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.cuda_graph and not str(self.device).startswith("cuda"):
            raise ConfigError(f"IQLConfig.cuda_graph=True needs a CUDA device (device {cfg.device!r} resolved to "
                              f"{self.device!r}); train with cuda_graph=false")
        if source is not None:
            source.check_dims(target.obs_dim, target.act_dim, what=f"target dataset ({target.source})")
        self.has_source = source is not None and cfg.batch_source > 0
        self.obs_dim, self.act_dim = target.obs_dim, target.act_dim
        k = cfg.n_seeds
        self.seeds = [cfg.seed + i for i in range(k)]

        if cfg.normalize_obs:
            all_obs = target.observations if not self.has_source else np.concatenate(
                [target.observations, source.observations])
            self.obs_mean = all_obs.mean(0).astype(np.float32)
            self.obs_std = (all_obs.std(0) + 1e-3).astype(np.float32)
        else:
            self.obs_mean = np.zeros(self.obs_dim, np.float32)
            self.obs_std = np.ones(self.obs_dim, np.float32)

        self.target = DeviceData(target, self.device, self.obs_mean, self.obs_std, [])
        self.source = None
        if self.has_source:
            rows = check_source_columns(source, cfg)
            cols = list(cfg.required_columns())
            if cfg.batch_norm == "none" and "weight" in source.extras:
                cols.append("weight")
            self.source = DeviceData(source, self.device, self.obs_mean, self.obs_std, cols, rows)

        # networks: seed k's members draw their initial weights from generator k only
        init_gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        h, nh = cfg.hidden_dim, cfg.n_hidden
        self.actor = GaussianActor(k, self.obs_dim, self.act_dim, h, nh)
        self.actor.net.reset(init_gens)
        self.q = VecMLP(2 * k, self.obs_dim + self.act_dim, 1, h, nh)  # members (seed, twin)
        self.q.reset([g for g in init_gens for _ in range(2)])
        self.v = VecMLP(k, self.obs_dim, 1, h, nh)
        self.v.reset(init_gens)
        self.cvae = None
        if cfg.bc_weight > 0:
            self.cvae = CVAE(k, self.obs_dim, self.act_dim, cfg.cvae_hidden)
            self.cvae.reset(init_gens)
        for m in (self.actor, self.q, self.v, self.cvae):
            if m is not None:
                m.to(self.device)
        self.q_target = VecMLP(2 * k, self.obs_dim + self.act_dim, 1, h, nh).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)

        # one Adam over the three networks (a group each: the actor's learning rate follows the cosine)
        self.opt = _adam([{"params": list(self.actor.parameters()), "lr": cfg.actor_lr},
                          {"params": [self.q.flat], "lr": cfg.critic_lr},
                          {"params": [self.v.flat], "lr": cfg.value_lr}], capturable=cfg.cuda_graph)
        self.cvae_opt = _adam(self.cvae.parameters(), cfg.cvae_lr) if self.cvae is not None else None
        self._ones_target = torch.ones(k, cfg.batch_target, device=self.device)
        # the loss graph, compiled on request (the optimiser step stays eager); built at the first update
        self._compiled = None
        # CUDA graph mode (cuda_graph=True): built lazily by _graph_train_step
        self._graph = None
        self._graph_metrics: dict[str, Tensor] = {}
        self._graph_warm = 0
        self._step_t: Tensor | None = None  # the step counter and actor lr as device tensors (graph mode)
        self._lr_t: Tensor | None = None
        # sampling generators live on the device: torch.randint never leaves it
        self.gens = [torch.Generator(device=self.device).manual_seed(s * 1_000_003 + 17) for s in self.seeds]
        self.step = 0
        self.cvae_step = 0

    # ---------------------------------------------------------------------------- sampling
    def sample(self) -> dict[str, Tensor]:
        """One batch: target rows first, then source rows; every array is (K, B, ...)."""
        tb = self.target.sample_packed(self.gens, self.cfg.batch_target)
        if self.source is None:
            return self.target.unpack(tb)
        sb = self.source.sample_packed(self.gens, self.cfg.batch_source)
        nc = self.target.n_common
        out = self.target.unpack(torch.cat([tb, sb[..., :nc]], 1))
        out.update({c: sb[..., nc + i] for i, c in enumerate(self.source.columns)})  # source-only: (K, Bs)
        return out

    def source_weights(self, batch: dict[str, Tensor]) -> Tensor:
        """(K, Bs) weights of the source rows: static ``weight`` column or per-batch normalisation."""
        c = self.cfg
        bn = c.batch_norm
        k, bs = batch["obs"].shape[0], c.batch_source
        if bn == "otdf":
            w = otdf_weights(batch[c.score_column], c.proportion)
        elif bn == "igdf":
            w = igdf_weights(batch[c.score_column], c.xi, c.igdf_alpha)
        elif bn == "dvdf":
            w = dvdf_weights(batch[c.score_column], batch["advantage_norm"], c.dvdf_lambda, c.dvdf_xi)
        elif bn == "tabb":
            w = tabb_weights(batch["tbm"], c.tabb_temperature, c.tabb_temperature_scale)
        elif "weight" in batch:
            w = batch["weight"]
        else:
            w = torch.ones(k, bs, device=batch["obs"].device)
        assert w.shape == (k, bs), f"source weights {tuple(w.shape)} != (K, Bs) = {(k, bs)}"
        return w

    # ---------------------------------------------------------------------------- update
    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One IQL update of V, Q and the actor, then the target Q; metrics are (K,) tensors.

        As in CORL's IQL, all three losses are computed from the parameters before the update
        (the critic's target uses V(s') before V's step, the actor's advantage Q_target - V uses
        that V too). The losses depend on disjoint parameters, so one backward pass of their sum
        and one Adam step over the three networks equal three separate updates in that order.
        """
        c = self.cfg
        noise = self._cvae_noise()
        loss, metrics = self._compiled_losses(batch, noise) if c.compile else self.losses(batch, noise)
        if c.actor_cosine:
            frac = min(self.step, c.max_steps) / c.max_steps
            self.opt.param_groups[0]["lr"] = c.actor_lr * 0.5 * (1.0 + math.cos(math.pi * frac))
        self._optimise(loss)
        self.step += 1
        return metrics

    def _optimise(self, loss: Tensor) -> None:
        """Backward of the summed loss, one Adam step over the three networks, then the target critic."""
        self.opt.zero_grad(set_to_none=False)  # in place: the layer gradients are views of flat.grad
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.q_target.flat.lerp_(self.q.flat, self.cfg.tau)

    def _cvae_noise(self, rows: int | None = None) -> Tensor | None:
        """(K, rows, latent) reparameterisation noise of the CVAE, each seed from its own generator.

        ``rows`` defaults to the actor's rows (OTDF's actor term); None without a CVAE.
        """
        if self.cvae is None:
            return None
        n = self._actor_rows() if rows is None else rows
        return torch.stack([torch.randn(n, self.cvae.latent, generator=g, device=self.device) for g in self.gens])

    def _compiled_losses(self, batch: dict[str, Tensor], cvae_noise: Tensor | None
                         ) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`losses` through ``torch.compile``; a failing compilation is reported in one line."""
        if self._compiled is None:
            # dynamo caches compiled code per code object: every trainer (variant, batch shape, dims) in
            # a process adds an entry for IQLTrainer.losses, and past the default limit of 8 it silently
            # runs eagerly (an experiment trains dozens of trainers in one process)
            import torch._dynamo.config as dynamo_config

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, COMPILE_CACHE_ENTRIES)
            compiled = torch.compile(self.losses, dynamic=False)
            try:
                out = compiled(batch, cvae_noise)
            except Exception as e:  # inductor needs a C++ compiler on CPU; report, don't dump its trace
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ConfigError(f"IQLConfig.compile=True: torch.compile failed ({type(e).__name__}: "
                                  f"{first[:300]}); train with compile=false") from None
            self._compiled = compiled
            return out
        return self._compiled(batch, cvae_noise)

    def losses(self, batch: dict[str, Tensor], cvae_noise: Tensor | None = None
               ) -> tuple[Tensor, dict[str, Tensor]]:
        """The summed V, Q and actor losses of ``batch`` (a scalar to backpropagate) and (K,) metrics.

        Args:
            batch: a batch from :meth:`sample` (target rows first, then source rows).
            cvae_noise: (K, actor rows, latent) reparameterisation noise of OTDF's CVAE term.
        """
        c = self.cfg
        obs, act, rew = batch["obs"], batch["act"], batch["rew"]
        k, b = rew.shape
        bt = c.batch_target
        bs = b - bt
        assert obs.shape == (k, b, self.obs_dim) and act.shape == (k, b, self.act_dim), "batch shapes"
        if bs > 0:
            w_src = self.source_weights(batch)
            w = torch.cat([self._ones_target, w_src], 1)  # (K, B): target rows weigh 1
            if c.reward_correction == "delta_r":
                rew = torch.cat([rew[:, :bt], rew[:, bt:] + c.dara_eta * batch["delta_r"]], 1)
            elif c.reward_correction == "corrected_reward":
                rew = torch.cat([rew[:, :bt], batch["corrected_reward"]], 1)
        else:
            w_src = None
            w = self._ones_target
        assert w.shape == (k, b), f"weights {tuple(w.shape)} != (K, B) = {(k, b)}"
        # weights of V and the actor: the same, or (weight_scope="q") the kept rows with weight 1
        w_va = w if (w_src is None or c.weight_scope == "all") else torch.cat(
            [self._ones_target, (w_src > 0).to(w.dtype)], 1)
        # rows feeding V and the actor: TABB uses target data only there
        vb = bt if c.source_target == "tabb" else b
        ab = self._actor_rows(b)
        qin = self._qin(obs, act)

        # --- value: expectile regression of min target Q
        with torch.no_grad():
            q_t = self.q_target(qin).view(k, 2, b).min(1).values  # (K, B)
        v = self.v(obs).squeeze(-1)
        adv = q_t - v
        v_loss_k = weighted_mean(expectile_loss(adv[:, :vb], c.expectile), w_va[:, :vb])

        # --- critic: TD regression, per-sample weights
        q_loss_k, _, q = self.critic_loss(batch, rew, w, qin)

        # --- actor: advantage-weighted regression (+ OTDF behaviour regulariser)
        exp_adv = torch.exp(c.beta * adv.detach()[:, :ab]).clamp(max=c.exp_adv_max)
        logp = self.actor.log_prob(obs[:, :ab], act[:, :ab])
        a_loss_k = weighted_mean(-exp_adv * logp, w_va[:, :ab])
        metrics: dict[str, Tensor] = {}
        if self.cvae is not None:
            assert cvae_noise is not None, "the OTDF behaviour regulariser needs cvae_noise"
            assert cvae_noise.shape[:2] == (k, ab), f"cvae_noise {tuple(cvae_noise.shape)} != (K, {ab}, latent)"
            a_loss_k = a_loss_k + self.bc_term(obs[:, :ab], cvae_noise, w_va[:, :ab], metrics)
        metrics.update({"value_loss": v_loss_k.detach(), "critic_loss": q_loss_k.detach(),
                        "actor_loss": a_loss_k.detach(), "q_mean": q.detach().mean((1, 2)),
                        "v_mean": v.detach().mean(-1), "adv_mean": adv.detach().mean(-1)})
        if w_src is not None:
            wd = w_src.detach()
            metrics["src_weight_mean"] = wd.mean(-1)
            metrics["src_kept_frac"] = (wd > 0).float().mean(-1)
            metrics["src_ess"] = effective_sample_size(wd)  # Kish ESS / Bs of the Q-loss source weights
        return v_loss_k.sum() + q_loss_k.sum() + a_loss_k.sum(), metrics

    def _actor_rows(self, b: int | None = None) -> int:
        """Rows of a batch of ``b`` rows (default: a full batch) that reach the actor (target first)."""
        c = self.cfg
        if b is None:
            b = c.batch_target + (c.batch_source if self.source is not None else 0)
        return b if (c.source_in == "critic_actor" and c.source_target != "tabb") else c.batch_target

    def bc_term(self, obs: Tensor, noise: Tensor, w: Tensor, metrics: dict[str, Tensor] | None = None) -> Tensor:
        """OTDF's behaviour regulariser (K,), added to the actor loss: -bc_weight * log beta(pi(s)|s).

        ``bc_form="elbo"``: log beta ~ -(||pi(s) - D(s, z)||^2 + cvae_kl KL) (the ELBO up to a constant).
        ``bc_form="official"``: log beta ~ log N(pi(s); D(s, z), cvae_var I) (official OTDF: decoder
        log-likelihood, variance 0.1), multiplied by mean_d 1/(2 sigma_d^2) of the actor (detached):
        the official actor loss is a squared error, ours a Gaussian log-likelihood whose squared error
        carries 1/(2 sigma^2), so the factor keeps the official ratio of the two terms.

        Args:
            obs: (K, R) observations of the actor's rows; noise: (K, R, latent); w: (K, R) row weights.
        """
        c = self.cfg
        pi = self.actor.mean(obs)
        rec, kl = self.cvae.elbo_terms(obs, pi, noise)
        if c.bc_form == "official":
            loglik = -rec / (2 * c.cvae_var) - 0.5 * self.act_dim * math.log(2 * math.pi * c.cvae_var)
            bc_scale = (0.5 * torch.exp(-2 * self.actor.log_std.detach().clamp(-20.0, 2.0))).mean((1, 2))  # (K,)
            term = -c.bc_weight * bc_scale * weighted_mean(loglik, w)
        else:
            loglik = -(rec + c.cvae_kl * kl)  # (K, R) lower bound of log beta(pi(s)|s) up to a constant
            term = -c.bc_weight * weighted_mean(loglik, w)
        if metrics is not None:
            metrics["bc_elbo" if c.bc_form == "elbo" else "bc_loglik"] = loglik.detach().mean(-1)
        return term

    def critic_loss(self, batch: dict[str, Tensor], rew: Tensor, w: Tensor,
                    qin: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Weighted TD loss of the twin critics.

        Args:
            batch: the batch (target rows first, then source rows).
            rew: (K, B) rewards after any source reward correction.
            w: (K, B) per-sample weights (target rows 1).
            qin: the critics' input ``_qin(obs, act)`` when the caller has it already.

        Returns:
            (loss per seed (K,), per-sample loss (K, B) summed over the twins, Q values (K, 2, B)).
        """
        c = self.cfg
        obs, act = batch["obs"], batch["act"]
        k, b = rew.shape
        bt = c.batch_target
        bs = b - bt
        y = self.td_targets(batch, rew)
        q = self.q(self._qin(obs, act) if qin is None else qin).view(k, 2, b)
        diff = q - y.unsqueeze(1)  # (K, 2, B)
        src_kind = c.source_td_loss if c.source_td_loss != "auto" else (
            "huber" if c.source_target in ("droco", "tabb") else c.td_loss)
        if bs == 0 or src_kind == c.td_loss:
            per = td_loss(diff, c.td_loss, c.huber_delta).sum(1)
        else:
            per = torch.cat([td_loss(diff[..., :bt], c.td_loss, c.huber_delta).sum(1),
                             td_loss(diff[..., bt:], src_kind, c.huber_delta).sum(1)], 1)
        assert per.shape == (k, b), f"per-sample TD loss {tuple(per.shape)} != (K, B) = {(k, b)}"
        return weighted_mean(per, w), per, q

    @torch.no_grad()
    def td_targets(self, batch: dict[str, Tensor], rew: Tensor) -> Tensor:
        """(K, B) TD targets: r + gamma (1 - d) V(s') (target rows), the variant's target (source rows).

        Args:
            batch: the batch (target rows first, then source rows).
            rew: (K, B) rewards after any source reward correction.
        """
        c = self.cfg
        next_obs, done = batch["next_obs"], batch["done"]
        bt = c.batch_target
        bs = rew.shape[1] - bt
        v_next = self.v(next_obs).squeeze(-1)
        y = rew + c.gamma * (1.0 - done) * v_next  # timeouts bootstrap; only terminals stop
        if bs > 0 and c.source_target == "droco":  # r + gamma (V(s') - u)
            u = batch["penalty"]
            if c.droco_penalty == "rescaled":  # the scorer's u on the learner's value scale
                u = u * scale_ratio(v_next[:, bt:], batch["v_next_scorer"])
            y = torch.cat([y[:, :bt], rew[:, bt:] + c.gamma * (1.0 - done[:, bt:]) * (v_next[:, bt:] - u)], 1)
        elif bs > 0 and c.source_target == "tabb":  # target-aligned y_hat
            y_hat = batch["y_hat"]
            if c.tabb_target == "rescaled":  # learner's target + the scorer's mismatch on the learner's scale
                y_hat = y[:, bt:] + scale_ratio(y[:, bt:], batch["y_scorer"]) * (y_hat - batch["y_scorer"])
            y = torch.cat([y[:, :bt], y_hat], 1)
        return y

    def train_step(self) -> dict[str, Tensor]:
        """Sample a batch and update; the CVAE (OTDF) is pre-trained first when enabled.

        With ``cuda_graph=True`` the returned tensors are the graph's static outputs: the next
        step overwrites them, so copy what you keep.
        """
        if self.cvae is not None and self.cvae_step < self.cfg.cvae_steps:
            self.pretrain_cvae()
        if self.cfg.cuda_graph:
            return self._graph_train_step()
        return self.update(self.sample())

    # ---------------------------------------------------------------------------- CUDA graph mode
    #: eager steps (on a side stream) before the capture: they allocate Adam's state and warm cuBLAS
    GRAPH_WARMUP = 3

    def _graph_body(self) -> dict[str, Tensor]:
        """One whole step without host synchronisation: sample, losses, Adam, target Q, lr schedule.

        The actor's learning rate and the step counter are device tensors, so the step can be
        captured once and replayed (:meth:`_graph_train_step`); it also runs eagerly (tests, warm-up).
        """
        c = self.cfg
        if self._step_t is None:
            self._step_t = torch.tensor(float(self.step), device=self.device)
            self._lr_t = torch.tensor(c.actor_lr, device=self.device)
            self.opt.param_groups[0]["lr"] = self._lr_t
        losses = self._compiled_losses if c.compile else self.losses
        loss, metrics = losses(self.sample(), self._cvae_noise())
        if c.actor_cosine:
            frac = (self._step_t / c.max_steps).clamp(max=1.0)
            self._lr_t.copy_(c.actor_lr * 0.5 * (1.0 + torch.cos(math.pi * frac)))
        self._optimise(loss)
        self._step_t += 1
        return metrics

    def _graph_train_step(self) -> dict[str, Tensor]:
        """Warm up eagerly on a side stream, then capture :meth:`_graph_body` once and replay it."""
        if self._graph is None and self._graph_warm < self.GRAPH_WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                metrics = self._graph_body()
            torch.cuda.current_stream().wait_stream(side)
            self._graph_warm += 1
        else:
            if self._graph is None:
                graph = torch.cuda.CUDAGraph()
                for g in self.gens:  # the sampling and CVAE noise generators advance on every replay
                    graph.register_generator_state(g)
                with torch.cuda.graph(graph):
                    self._graph_metrics = self._graph_body()
                self._graph = graph
            self._graph.replay()
            metrics = self._graph_metrics
        self.step += 1
        return metrics

    def pretrain_cvae(self) -> dict[str, float]:
        """Train the target behaviour CVAE for the remaining ``cvae_steps`` (OTDF)."""
        c = self.cfg
        rec = kl = torch.zeros(c.n_seeds)
        while self.cvae_step < c.cvae_steps:
            tb = self.target.sample(self.gens, c.cvae_batch)
            rec, kl = self.cvae.elbo_terms(tb["obs"], tb["act"], self._cvae_noise(c.cvae_batch))
            loss = (rec + c.cvae_kl * kl).mean(-1).sum()
            self.cvae_opt.zero_grad(set_to_none=False)  # in place (VecMLP)
            loss.backward()
            self.cvae_opt.step()
            self.cvae_step += 1
        self.cvae.requires_grad_(False)
        return {"cvae_recon": float(rec.detach().mean()), "cvae_kl": float(kl.detach().mean())}

    # ---------------------------------------------------------------------------- helpers
    @staticmethod
    def _qin(obs: Tensor, act: Tensor) -> Tensor:
        """(K, B, o+a) -> (2K, B, o+a): each seed's input to both twin critics."""
        return torch.cat([obs, act], -1).repeat_interleave(2, dim=0)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions tanh(mu(s)) for (K, obs_dim) raw observations (one per seed)."""
        o = (np.asarray(observations, np.float32) - self.obs_mean) / self.obs_std
        x = torch.as_tensor(o, device=self.device).view(self.cfg.n_seeds, -1, self.obs_dim)
        return self.actor.mean(x).cpu().numpy().reshape(np.shape(observations)[:-1] + (self.act_dim,))

    # ---------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (loadable with ``torch.load(weights_only=True)``)."""
        sd: dict[str, Any] = {
            "format_version": FORMAT_VERSION, "step": self.step, "cvae_step": self.cvae_step,
            "config": self.cfg.to_dict(),
            "obs_mean": torch.as_tensor(self.obs_mean), "obs_std": torch.as_tensor(self.obs_std),
            "actor": self.actor.state_dict(), "q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
            "v": self.v.state_dict(), "opt": self.opt.state_dict(),
            "gens": [g.get_state() for g in self.gens],
        }
        if self.cvae is not None:
            sd["cvae"] = self.cvae.state_dict()
            sd["cvae_opt"] = self.cvae_opt.state_dict()
        return sd

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same config and data)."""
        from xcurate.errors import StoreError

        if sd.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"checkpoint format {sd.get('format_version')} is not supported "
                             f"(this xcurate writes {FORMAT_VERSION})")
        self.step, self.cvae_step = int(sd["step"]), int(sd["cvae_step"])
        self.obs_mean, self.obs_std = sd["obs_mean"].numpy(), sd["obs_std"].numpy()
        for name in ("actor", "q", "q_target", "v", "opt"):
            getattr(self, name).load_state_dict(sd[name])
        if self.cvae is not None:
            self.cvae.load_state_dict(sd["cvae"])
            self.cvae_opt.load_state_dict(sd["cvae_opt"])
            if self.cvae_step >= self.cfg.cvae_steps:
                self.cvae.requires_grad_(False)
        for g, s in zip(self.gens, sd["gens"], strict=True):
            g.set_state(s)


def _adam(params, lr: float | None = None, capturable: bool = False) -> torch.optim.Adam:
    """Adam (parameters or param groups) with the fused kernel where the device supports it."""
    params = list(params)
    kw: dict[str, Any] = {} if lr is None else {"lr": lr}
    if capturable:
        kw["capturable"] = True
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, **kw)


def load_actor(path: str, device: str = "cpu") -> tuple[GaussianActor, dict[str, Any]]:
    """Load the actor of a checkpoint (``torch.load(weights_only=True)``); returns (actor, state)."""
    sd = torch.load(path, map_location=device, weights_only=True)
    cfg = IQLConfig.from_dict(sd["config"])
    obs_dim = sd["obs_mean"].shape[0]
    act_dim = sd["actor"]["log_std"].shape[-1]
    actor = GaussianActor(cfg.n_seeds, obs_dim, act_dim, cfg.hidden_dim, cfg.n_hidden).to(device)
    actor.load_state_dict(sd["actor"])
    return actor, sd
