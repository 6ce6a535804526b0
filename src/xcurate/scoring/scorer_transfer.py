"""``transfer``: a dynamics model pre-trained on the large source and adapted to the small target.

xcurate's own scorer (not from a paper). The target is small and usually collected by another
policy, so a model trained on the target alone (DROCO's ensemble) must extrapolate to source
states it never saw. ``transfer`` instead learns the dynamics where the data are, on the source,
and then adapts them to the target:

1. **pre-train** a Gaussian ensemble f_src(s, a) -> (mu, log sigma^2) of delta s on every source
   row (Gaussian NLL, as the ensemble scorer);
2. **adapt**: ``mode="finetune"`` copies it and fine-tunes every weight on the target (smaller
   learning rate, few steps); ``mode="residual"`` freezes it and trains a zero-initialised residual
   head r(s, a) added to the mean (plus a per-dimension log-variance offset) on the target.

For a source row (s, a, s'), in target-z-scored delta units:

* ``transfer_loglik``  log N_mix(s' - s; f_tar(s, a)): how well the adapted model explains the
  recorded next state (higher = more target-like);
* ``transfer_llr``     transfer_loglik - log N_mix(s' - s; f_src(s, a)): how much better the target
  model explains it than the source model (higher = more target-like);
* ``transfer_gap``     ||mean f_tar(s, a) - mean f_src(s, a)||: the predicted dynamics gap at (s, a),
  independent of the recorded s' (lower = the dynamics agree there).

The primary column is chosen from the MuJoCo planted benchmark (README, "How good on real data").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring import nets
from xcurate.scoring.base import ColumnSpec, Scorer, register
from xcurate.scoring.scorer_ensemble import GaussianEnsemble, mixture_loglik, train_gaussian_nll

MODES = ("finetune", "residual")


class ResidualHead(nn.Module):
    """A zero-initialised MLP added to a frozen ensemble's mean, plus a log-variance offset."""

    def __init__(self, base: GaussianEnsemble, d_in: int, d_out: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.delta = nets.mlp(d_in, d_out, hidden, activation="silu")
        last = [m for m in self.delta.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.logvar_offset = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d_in) or (N, B, d_in) -> mu, logvar (N, B, d_out)."""
        mu, lv = self.base(x)
        d = self.delta(x)
        return mu + (d.unsqueeze(0) if x.ndim == 2 else d), lv + self.logvar_offset


def predicted_gap(mu_tar: torch.Tensor, mu_src: torch.Tensor) -> torch.Tensor:
    """||mean_i mu_tar_i - mean_i mu_src_i||_2 per row for (N, B, D) member means: (B,)."""
    assert mu_tar.shape == mu_src.shape and mu_tar.ndim == 3, (mu_tar.shape, mu_src.shape)
    return (mu_tar.mean(0) - mu_src.mean(0)).norm(dim=-1)


@register
@dataclass
class TransferScorer(Scorer):
    """Source-pre-trained dynamics ensemble adapted to the target; see the module docstring."""

    name: ClassVar[str] = "transfer"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "transfer_loglik": ColumnSpec("higher", "(-inf, inf)",
                                      "log-likelihood of the observed s' - s under the target-adapted model "
                                      "(target-z-scored delta units)"),
        "transfer_llr": ColumnSpec("higher", "(-inf, inf)",
                                   "log-likelihood under the adapted model minus under the source model"),
        "transfer_gap": ColumnSpec("lower", "[0, inf)",
                                   "predicted dynamics gap ||f_tar(s,a) - f_src(s,a)|| (target-z-scored delta)"),
    }
    primary: ClassVar[str] = "transfer_loglik"
    min_target: ClassVar[int] = 16
    chunk_size: ClassVar[int] = 50_000

    mode: str = "finetune"  # "finetune" (all weights on the target) or "residual" (frozen base + head)
    n_models: int = 3  # ensemble members
    hidden: tuple[int, ...] = (200, 200, 200)  # hidden Swish layers of each member
    pretrain_steps: int = 5_000  # Adam steps on the source
    finetune_steps: int = 2_000  # Adam steps on the target
    batch_size: int = 256  # rows per member per step
    lr: float = 1e-3  # pre-training learning rate
    finetune_lr: float = 3e-4  # adaptation learning rate
    weight_decay: float = 1e-5  # L2 on the weights (both stages)
    residual_hidden: tuple[int, ...] = (64, 64)  # residual head widths (mode="residual")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"transfer.mode must be one of {MODES}, got {self.mode!r}")
        if self.n_models < 1:
            raise ConfigError(f"transfer.n_models must be >= 1, got {self.n_models}")

    def _train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float,
               gen: torch.Generator, what: str) -> None:
        train_gaussian_nll(model, x, y, self.n_models, self.batch_size, steps, lr, self.weight_decay, gen, what)

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> TransferScorer:
        """Pre-train on the source, adapt to the target."""
        self.check_inputs(target, source)
        dev, gen, tt, ts, target, source = nets.prepare_pair(target, source, self.device, self.seed)
        self._device = dev
        self._s_norm = nets.Standardizer.fit(torch.cat([tt["s"], ts["s"]]))
        self._a_norm = nets.Standardizer.fit(torch.cat([tt["a"], ts["a"]]))
        self._d_norm = nets.Standardizer.fit(tt["s2"] - tt["s"])
        xs, ys = self._inputs(ts), self._d_norm(ts["s2"] - ts["s"])
        xt, yt = self._inputs(tt), self._d_norm(tt["s2"] - tt["s"])
        src = GaussianEnsemble(self.n_models, xs.shape[1], ys.shape[1], tuple(self.hidden)).to(dev)
        self._train(src, xs, ys, self.pretrain_steps, self.lr, gen, "transfer source model")
        if self.mode == "finetune":
            tar: nn.Module = copy.deepcopy(src)
        else:
            tar = ResidualHead(copy.deepcopy(src), xs.shape[1], ys.shape[1], tuple(self.residual_hidden)).to(dev)
        self._train(tar, xt, yt, self.finetune_steps, self.finetune_lr, gen, "transfer target adaptation")
        self._src, self._tar = src.eval(), tar.eval()
        return self

    def _inputs(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self._s_norm(t["s"]), self._a_norm(t["a"])], 1)

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """The three transfer columns per row."""
        if not hasattr(self, "_tar"):
            raise ConfigError("transfer: call fit() before score()")

        def block(s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
            x = torch.cat([self._s_norm(s), self._a_norm(a)], 1)
            y = self._d_norm(s2 - s)
            mu_t, lv_t = self._tar(x)
            mu_s, lv_s = self._src(x)
            ll_t, ll_s = mixture_loglik(mu_t, lv_t, y), mixture_loglik(mu_s, lv_s, y)
            out = torch.stack([ll_t, ll_t - ll_s, predicted_gap(mu_t, mu_s)], 1)
            assert out.shape == (len(s), 3), out.shape
            return out

        def fn(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            out = nets.batched(block, t["s"], t["a"], t["s2"], batch=16_384)
            return {c: out[:, i] for i, c in enumerate(self.columns)}

        return nets.score_chunk(chunk, self._device, fn, list(self.columns))
