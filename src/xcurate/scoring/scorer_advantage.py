"""``advantage``: the value-alignment score of DVDF (pre-trained SQL/IQL advantage on the SOURCE).

DVDF pre-trains an in-sample value learner on the source dataset and scores each source
transition by its advantage A(s, a) = min(Q1, Q2)(s, a) - V(s), min-max normalised. This is a
*value* (behaviour-quality) score, not a dynamics score: it ranks transitions whose action is
better than the data's average at that state higher. DVDF combines it with a dynamics score
(``g = lambda h + (1 - lambda) Norm(A)``, lambda 0.7); that combination is left to curation
recipes, which read both columns from the store.

Maths (pure functions below): SQL value loss (Xu et al., ICLR'23, used by DVDF, alpha 0.1)
``mean(1[1 + A/(2 alpha) > 0] (1 + A/(2 alpha))^2 + V/alpha)`` and IQL's expectile loss
``mean(|tau - 1[A < 0]| A^2)`` (tau 0.7); Q regresses to ``r + gamma (1 - d) V(s')``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError
from xcurate.scoring import nets
from xcurate.scoring.base import ColumnSpec, Scorer, register

# ----------------------------------------------------------------------------- pure maths


def sql_value_loss(adv: torch.Tensor, v: torch.Tensor, alpha: float) -> torch.Tensor:
    """Sparse Q-Learning value loss ``mean(1[x > 0] x^2 + V/alpha)``, ``x = 1 + A/(2 alpha)``.

    Args:
        adv: (B,) advantages ``min Q_target(s, a) - V(s)`` (V with gradient).
        v: (B,) values V(s) (with gradient).
        alpha: SQL temperature (DVDF: 0.1).
    """
    assert adv.shape == v.shape and adv.ndim == 1, (adv.shape, v.shape)
    x = 1 + adv / (2 * alpha)
    return (torch.where(x > 0, x * x, torch.zeros_like(x)) + v / alpha).mean()


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL asymmetric squared loss ``mean(|tau - 1[diff < 0]| diff^2)`` with ``diff = Q - V``."""
    assert diff.ndim == 1, diff.shape
    w = torch.where(diff > 0, torch.full_like(diff, expectile), torch.full_like(diff, 1 - expectile))
    return (w * diff * diff).mean()


def td_target(r: torch.Tensor, d: torch.Tensor, v_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """One-step Bellman target ``r + gamma (1 - d) V(s')`` (all (B,))."""
    assert r.shape == d.shape == v_next.shape and r.ndim == 1, (r.shape, d.shape, v_next.shape)
    return r + gamma * (1 - d) * v_next


def minmax_normalise(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``(x - lo) / (hi - lo)`` clipped to [0, 1]; 0.5 everywhere when ``hi == lo``."""
    if hi <= lo:
        return torch.full_like(x, 0.5)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- value learner


class ValueNets(nn.Module):
    """Twin Q(sa_features), V(s_features) and a Polyak target copy of the Qs."""

    def __init__(self, sa_dim: int, s_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.q1 = nets.mlp(sa_dim, 1, hidden)
        self.q2 = nets.mlp(sa_dim, 1, hidden)
        self.v = nets.mlp(s_dim, 1, hidden)
        self.q1_t = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_t = copy.deepcopy(self.q2).requires_grad_(False)

    def value(self, s_feat: torch.Tensor) -> torch.Tensor:
        """V(s) as (B,)."""
        return self.v(s_feat).squeeze(-1)

    def q_min(self, sa_feat: torch.Tensor, target: bool = False) -> torch.Tensor:
        """min(Q1, Q2)(s, a) as (B,), of the target copies when ``target``."""
        q1, q2 = (self.q1_t, self.q2_t) if target else (self.q1, self.q2)
        return torch.min(q1(sa_feat), q2(sa_feat)).squeeze(-1)

    def advantage(self, sa_feat: torch.Tensor, s_feat: torch.Tensor) -> torch.Tensor:
        """A(s, a) = min Q(s, a) - V(s), (B,)."""
        return self.q_min(sa_feat) - self.value(s_feat)


def fit_value_nets(s_feat: torch.Tensor, sa_feat: torch.Tensor, r: torch.Tensor, s2_feat: torch.Tensor,
                   d: torch.Tensor, *, steps: int, gen: torch.Generator, variant: str = "sql",
                   alpha: float = 0.1, expectile: float = 0.7, gamma: float = 0.99, tau: float = 0.005,
                   lr: float = 3e-4, batch: int = 256, hidden: tuple[int, ...] = (256, 256),
                   what: str = "value function") -> ValueNets:
    """Train twin Q + V in-sample (SQL or IQL) on fixed features; returns the nets in eval mode.

    Args:
        s_feat: (N, Ds) state features for V(s).
        sa_feat: (N, Dsa) state-action features for Q(s, a).
        r: (N,) rewards.
        s2_feat: (N, Ds) next-state features for V(s').
        d: (N,) terminal flags (1 = no bootstrap).
        steps: gradient steps.
        gen: generator for batch sampling.
        variant: ``"sql"`` (Sparse Q-Learning) or ``"iql"`` (expectile regression).
        alpha: SQL temperature.
        expectile: IQL expectile.
        gamma: discount.
        tau: Polyak rate of the target Qs.
        lr: Adam learning rate.
        batch: batch size.
        hidden: hidden widths.
        what: name used in errors.
    """
    if variant not in ("sql", "iql"):
        raise ConfigError(f"value variant must be 'sql' or 'iql', got {variant!r}")
    device = s_feat.device
    n = s_feat.shape[0]
    vn = ValueNets(sa_feat.shape[1], s_feat.shape[1], hidden).to(device)
    opt_q = torch.optim.Adam([*vn.q1.parameters(), *vn.q2.parameters()], lr=lr)
    opt_v = torch.optim.Adam(vn.v.parameters(), lr=lr)

    def step(_: int) -> torch.Tensor:
        idx = nets.sample_index(gen, n, batch, device)
        s, sa, rr, s2, dd = s_feat[idx], sa_feat[idx], r[idx], s2_feat[idx], d[idx]
        with torch.no_grad():
            q_t = vn.q_min(sa, target=True)
        v = vn.value(s)
        adv = q_t - v
        v_loss = sql_value_loss(adv, v, alpha) if variant == "sql" else expectile_loss(adv, expectile)
        opt_v.zero_grad(set_to_none=True)
        v_loss.backward()
        opt_v.step()
        with torch.no_grad():
            y = td_target(rr, dd, vn.value(s2), gamma)
        q1, q2 = vn.q1(sa).squeeze(-1), vn.q2(sa).squeeze(-1)
        assert q1.shape == y.shape, (q1.shape, y.shape)
        q_loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        opt_q.zero_grad(set_to_none=True)
        q_loss.backward()
        opt_q.step()
        nets.soft_update(vn.q1_t, vn.q1, tau)
        nets.soft_update(vn.q2_t, vn.q2, tau)
        return q_loss + v_loss

    nets.train_loop(step, steps, what)
    return vn.eval()


# ----------------------------------------------------------------------------- scorer


@register
@dataclass
class AdvantageScorer(Scorer):
    """DVDF value alignment: advantage of a SQL (or IQL) learner pre-trained on the source.

    The target is not used (DVDF pre-trains on source data only); it is still checked for
    matching dimensions. ``advantage_norm`` uses the min/max of A over the whole fitted source
    (computed once in ``fit``), so chunks are on one global scale.
    """

    name: ClassVar[str] = "advantage"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "advantage_raw": ColumnSpec("higher", "(-inf, inf)",
                                    "pre-trained source advantage A(s,a) = min(Q1,Q2)(s,a) - V(s)"),
        "advantage_norm": ColumnSpec("higher", "[0, 1]",
                                     "A min-max normalised by the fitted source's min and max A"),
    }
    primary: ClassVar[str] = "advantage_norm"
    min_target: ClassVar[int] = 1
    chunk_size: ClassVar[int] = 100_000

    variant: str = "sql"  # "sql" (DVDF default) or "iql" (DVDF's over-estimating alternative)
    alpha: float = 0.1  # SQL temperature (DVDF)
    expectile: float = 0.7  # IQL expectile (only for variant "iql")
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target Q networks
    steps: int = 100_000  # pre-training steps (the paper trains longer; see docs for the budget)
    batch_size: int = 256  # batch size
    lr: float = 3e-4  # Adam learning rate
    hidden: tuple[int, ...] = (256, 256)  # hidden widths of Q and V

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> AdvantageScorer:
        """Pre-train Q/V on the source, then store A's global min/max over the source."""
        self.check_inputs(target, source)
        if self.variant not in ("sql", "iql"):
            raise ConfigError(f"advantage: variant must be 'sql' or 'iql', got {self.variant!r}")
        source = nets.finite_rows(source, "source")
        if len(source) < 2:
            raise DataError(f"{source.source}: advantage needs at least 2 finite source transitions")
        self._device = nets.resolve_torch_device(self.device)
        gen = nets.make_generator(self.seed)
        t = nets.tensors(source, self._device)
        self._s_norm = nets.Standardizer.fit(torch.cat([t["s"], t["s2"]]))
        self._a_norm = nets.Standardizer.fit(t["a"])
        s, sa, s2 = self._features(t)
        self._nets = fit_value_nets(s, sa, t["r"], s2, t["d"], steps=self.steps, gen=gen, variant=self.variant,
                                    alpha=self.alpha, expectile=self.expectile, gamma=self.gamma, tau=self.tau,
                                    lr=self.lr, batch=self.batch_size, hidden=tuple(self.hidden),
                                    what="advantage value function")
        adv = nets.batched(self._nets.advantage, sa, s)
        self.adv_min_, self.adv_max_ = float(adv.min()), float(adv.max())
        return self

    def _features(self, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self._s_norm(t["s"])
        return s, torch.cat([s, self._a_norm(t["a"])], 1), self._s_norm(t["s2"])

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """``advantage_raw`` and globally normalised ``advantage_norm`` per row."""
        if not hasattr(self, "_nets"):
            raise ConfigError("advantage: call fit() before score()")

        def fn(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            s, sa, _ = self._features(t)
            a = nets.batched(self._nets.advantage, sa, s)
            return {"advantage_raw": a, "advantage_norm": minmax_normalise(a, self.adv_min_, self.adv_max_)}

        return nets.score_chunk(chunk, self._device, fn, list(self.columns))
