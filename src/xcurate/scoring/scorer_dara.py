"""``dara``: DARA's domain-classifier reward correction (Liu et al., ICLR'22; DARC's classifiers).

Two binary classifiers are trained with balanced batches (equal target and source rows):
p(target | s, a, s') and p(target | s, a). Each outputs ONE logit l; log p(tar) = log sigmoid(l)
and log p(src) = log sigmoid(-l). The reward correction is

    delta_r = [log p(tar|s,a,s') - log p(src|s,a,s')] - [log p(tar|s,a) - log p(src|s,a)]
            = l_sas - l_sa, clipped to [-clip, clip]

(a single log-sigmoid per classifier; ODRL applies softmax twice, which distorts the log-odds).
``dara_reward`` = r + eta delta_r is what a DARA trainer uses as the source reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring import nets
from xcurate.scoring.base import ColumnSpec, Scorer, register

# ----------------------------------------------------------------------------- pure maths


def dara_delta_r(logit_sas: torch.Tensor, logit_sa: torch.Tensor, clip: float = 10.0) -> torch.Tensor:
    """delta_r from the two classifiers' target-vs-source logits, clipped to [-clip, clip].

    Computed literally as log p(tar|sas') - log p(src|sas') - log p(tar|sa) + log p(src|sa) with one
    log-sigmoid per probability (numerically stable; equals ``logit_sas - logit_sa`` before clipping).
    """
    assert logit_sas.shape == logit_sa.shape and logit_sas.ndim == 1, (logit_sas.shape, logit_sa.shape)
    d = (F.logsigmoid(logit_sas) - F.logsigmoid(-logit_sas)) - (F.logsigmoid(logit_sa) - F.logsigmoid(-logit_sa))
    return d.clamp(-clip, clip)


def balanced_bce(logit_tar: torch.Tensor, logit_src: torch.Tensor) -> torch.Tensor:
    """BCE with target rows labelled 1 and source rows 0, the two halves weighted equally."""
    return (F.binary_cross_entropy_with_logits(logit_tar, torch.ones_like(logit_tar))
            + F.binary_cross_entropy_with_logits(logit_src, torch.zeros_like(logit_src))) / 2


# ----------------------------------------------------------------------------- scorer


class DomainClassifiers(nn.Module):
    """Logit nets for p(target | s, a, s') and p(target | s, a)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.sas = nets.mlp(2 * obs_dim + act_dim, 1, hidden)
        self.sa = nets.mlp(obs_dim + act_dim, 1, hidden)

    def logits(self, s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit_sas (B,), logit_sa (B,))."""
        sa = torch.cat([s, a], 1)
        return self.sas(torch.cat([sa, s2], 1)).squeeze(-1), self.sa(sa).squeeze(-1)


@register
@dataclass
class DaraScorer(Scorer):
    """DARA reward correction from two domain classifiers; inputs z-scored (source+target stats)."""

    name: ClassVar[str] = "dara"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "dara_delta_r": ColumnSpec("higher", "[-10, 10]",
                                   "log-odds(target|s,a,s') - log-odds(target|s,a), clipped (DARA delta_r)"),
        "dara_reward": ColumnSpec("none", "(-inf, inf)", "r + eta * delta_r: DARA's corrected source reward"),
    }
    primary: ClassVar[str] = "dara_delta_r"
    min_target: ClassVar[int] = 16
    chunk_size: ClassVar[int] = 100_000

    steps: int = 10_000  # classifier training steps (DARA trains alongside the policy; our budget)
    batch_size: int = 128  # rows per domain per step (balanced batches)
    lr: float = 3e-4  # Adam learning rate
    hidden: tuple[int, ...] = (256, 256)  # classifier hidden widths
    input_noise: float = 0.1  # std of Gaussian noise added to z-scored inputs in training (DARC regulariser)
    eta: float = 0.1  # reward-correction weight (DARA)
    clip: float = 10.0  # |delta_r| bound
    next_input: str = "next"  # "next": z-scored s' (DARA); "delta": z-scored s' - s (nets.NextInput)

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> DaraScorer:
        """Train both classifiers on balanced target/source batches."""
        self.check_inputs(target, source)
        dev, gen, tt, ts, target, source = nets.prepare_pair(target, source, self.device, self.seed)
        self._device = dev
        self._s_norm = nets.Standardizer.fit(torch.cat([tt["s"], tt["s2"], ts["s"], ts["s2"]]))
        self._a_norm = nets.Standardizer.fit(torch.cat([tt["a"], ts["a"]]))
        self._clf = clf = DomainClassifiers(target.obs_dim, target.act_dim, tuple(self.hidden)).to(dev)
        self._next = nets.NextInput(self.next_input, self._s_norm, [(tt["s"], tt["s2"]), (ts["s"], ts["s2"])])
        xt = [self._s_norm(tt["s"]), self._a_norm(tt["a"]), self._next(tt["s"], tt["s2"])]
        xs = [self._s_norm(ts["s"]), self._a_norm(ts["a"]), self._next(ts["s"], ts["s2"])]
        opt = torch.optim.Adam(clf.parameters(), lr=self.lr)
        b = self.batch_size

        def noisy(xx: list[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
            out = []
            for x in xx:
                x = x[idx]
                if self.input_noise > 0:
                    x = x + self.input_noise * torch.randn(x.shape, generator=gen).to(dev)
                out.append(x)
            return out

        def step(_: int) -> torch.Tensor:
            bt = noisy(xt, nets.sample_index(gen, len(target), b, dev))
            bs = noisy(xs, nets.sample_index(gen, len(source), b, dev))
            sas_t, sa_t = clf.logits(*bt)
            sas_s, sa_s = clf.logits(*bs)
            loss = balanced_bce(sas_t, sas_s) + balanced_bce(sa_t, sa_s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        nets.train_loop(step, self.steps, "dara domain classifiers")
        clf.eval()
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """``dara_delta_r`` and ``dara_reward`` per row."""
        if not hasattr(self, "_clf"):
            raise ConfigError("dara: call fit() before score()")

        def delta(s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
            return dara_delta_r(*self._clf.logits(s, a, s2), clip=self.clip)

        def fn(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            dr = nets.batched(delta, self._s_norm(t["s"]), self._a_norm(t["a"]), self._next(t["s"], t["s2"]))
            return {"dara_delta_r": dr, "dara_reward": t["r"] + self.eta * dr}

        return nets.score_chunk(chunk, self._device, fn, list(self.columns))
