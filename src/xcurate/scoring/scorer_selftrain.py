"""``selftrain``: a target dynamics ensemble that grows its own training set from the source.

xcurate's own scorer (not from a paper). DROCO's ensemble is fitted on the small target only, so
on source states the target policy never visited it extrapolates, and its log-likelihood of the
recorded next state is unreliable there. When the source holds rows that follow the target's
dynamics (a data lake, a planted task), they are the data that would fix that. ``selftrain``
finds them by self-training:

1. round 0: fit a Gaussian ensemble of delta s on the target (as ``ensemble``);
2. score every source row by the mixture log-likelihood of its recorded s' - s;
3. round k >= 1: refit a fresh ensemble on the target plus the ``keep`` fraction of source rows
   with the highest log-likelihood in round k - 1; repeat ``rounds`` times.

Columns (target-z-scored delta units):

* ``selftrain_score``   the last round's log-likelihood of s' - s (higher = more target-like);
* ``selftrain_initial`` round 0's log-likelihood (a target-only ensemble, for comparison).

Cost: ``rounds + 1`` ensemble fits of ``steps`` each, plus one pass over the fit source per round
(the fit uses at most ``fit_source_rows`` source rows, a seeded sample). Measured on the MuJoCo
planted benchmark (README, "How good on real data").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring import nets
from xcurate.scoring.base import ColumnSpec, Scorer, register
from xcurate.scoring.scorer_ensemble import GaussianEnsemble, mixture_loglik, train_gaussian_nll


def top_fraction_mask(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bool mask of the ``ceil(fraction * n)`` largest values (ties broken by position)."""
    n = int(np.ceil(fraction * len(values)))
    mask = torch.zeros(len(values), dtype=torch.bool, device=values.device)
    if n:
        mask[torch.argsort(-values, stable=True)[:n]] = True
    return mask


@register
@dataclass
class SelfTrainScorer(Scorer):
    """Target dynamics ensemble refitted on the target plus its most target-like source rows."""

    name: ClassVar[str] = "selftrain"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "selftrain_score": ColumnSpec("higher", "(-inf, inf)",
                                      "log-likelihood of s' - s under the self-trained target ensemble (last round)"),
        "selftrain_initial": ColumnSpec("higher", "(-inf, inf)",
                                        "log-likelihood of s' - s under the round-0 (target-only) ensemble"),
    }
    primary: ClassVar[str] = "selftrain_score"
    min_target: ClassVar[int] = 16
    chunk_size: ClassVar[int] = 50_000

    rounds: int = 4  # self-training rounds after the target-only fit (0 = a target-only ensemble)
    keep: float = 0.45  # fraction of the fit source added to the training set in each round
    steps: int = 3_000  # Adam steps per ensemble fit
    n_models: int = 5  # ensemble members
    hidden: tuple[int, ...] = (200, 200, 200, 200)  # hidden Swish layers (as the ensemble scorer)
    batch_size: int = 256  # rows per member per step
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 1e-5  # L2 on all weights
    fit_source_rows: int = 200_000  # at most this many source rows (seeded sample) take part in the fit

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ConfigError(f"selftrain.rounds must be >= 0, got {self.rounds}")
        if not 0.0 < self.keep <= 1.0:
            raise ConfigError(f"selftrain.keep must be in (0, 1], got {self.keep}")
        if self.n_models < 1 or self.fit_source_rows < 1:
            raise ConfigError("selftrain.n_models and selftrain.fit_source_rows must be >= 1")

    def _inputs(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._s_norm(s), self._a_norm(a)], 1)

    def _fit_ensemble(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, what: str) -> GaussianEnsemble:
        model = GaussianEnsemble(self.n_models, x.shape[1], y.shape[1], tuple(self.hidden)).to(x.device)
        train_gaussian_nll(model, x, y, self.n_models, self.batch_size, self.steps, self.lr, self.weight_decay,
                           gen, what)
        return model.eval()

    @torch.no_grad()
    def _loglik(self, model: GaussianEnsemble, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nets.batched(lambda xx, yy: mixture_loglik(*model(xx), yy), x, y, batch=16_384)

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> SelfTrainScorer:
        """Round 0 on the target, then ``rounds`` refits on target + the top ``keep`` of the source."""
        self.check_inputs(target, source)
        if len(source) > self.fit_source_rows:
            pick = np.sort(np.random.default_rng(self.seed).choice(len(source), self.fit_source_rows, replace=False))
            source = source.select(pick)
        dev, gen, tt, ts, target, source = nets.prepare_pair(target, source, self.device, self.seed)
        self._device = dev
        self._s_norm = nets.Standardizer.fit(tt["s"])
        self._a_norm = nets.Standardizer.fit(tt["a"])
        self._d_norm = nets.Standardizer.fit(tt["s2"] - tt["s"])
        xt, yt = self._inputs(tt["s"], tt["a"]), self._d_norm(tt["s2"] - tt["s"])
        xs, ys = self._inputs(ts["s"], ts["a"]), self._d_norm(ts["s2"] - ts["s"])
        self._initial = model = self._fit_ensemble(xt, yt, gen, "selftrain round 0 (target)")
        self.selected_: list[int] = []
        for k in range(1, self.rounds + 1):
            chosen = top_fraction_mask(self._loglik(model, xs, ys), self.keep)
            self.selected_.append(int(chosen.sum()))
            model = self._fit_ensemble(torch.cat([xt, xs[chosen]]), torch.cat([yt, ys[chosen]]), gen,
                                       f"selftrain round {k}")
        self._final = model
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """``selftrain_score`` and ``selftrain_initial`` per row."""
        if not hasattr(self, "_final"):
            raise ConfigError("selftrain: call fit() before score()")

        def fn(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            x, y = self._inputs(t["s"], t["a"]), self._d_norm(t["s2"] - t["s"])
            return {"selftrain_score": self._loglik(self._final, x, y),
                    "selftrain_initial": self._loglik(self._initial, x, y)}

        return nets.score_chunk(chunk, self._device, fn, list(self.columns))
