"""``tbm``: Target Bellman Mismatch of TABB (2026; no public code, this is an independent build).

Latent model: a state encoder z = f(s) and a state-action encoder z_sa = f(s, a); a target
predictor g(z_sa) -> (r_hat, z_hat'); an anchor value V_tar(z) learned on TARGET data only (IQL:
twin Q(z_sa), V(z), expectile 0.7). For a source transition:

    y     = r     + gamma (1 - d) V_tar(f(s'))       (realised target)
    y_hat = r_hat + gamma (1 - d) V_tar(z_hat')      (target-aligned target)
    TBM   = |y - y_hat|                              (lower = more consistent with the target)

Training (paper §4.1): stage 1 fits encoders + predictor on source + target (balanced batches)
with the next-latent error scaled per dimension by the inverse variance of target latents plus
the reward error (f(s, a) reads f(s), as in TD7's SALE, so the state encoder gets gradients
through the predictor while the next latent is a stop-gradient target); stage 2 freezes the encoders and fine-tunes g on target data only; then V_tar
is fitted on the frozen target latents. The paper's hyper-parameter table lost its values, so the
latent sizes and step counts below are our small defaults (documented in the README).
Choices of ours: z = AvgL1Norm(MLP(s)) (as in TD7's SALE) so that the latent cannot shrink
towards a constant; the next latent in the loss is a stop-gradient target; states, actions and
rewards are z-scored with source+target statistics (``normalize="target"`` for target-only; r_hat is
returned in reward units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring import nets
from xcurate.scoring.base import ColumnSpec, Scorer, register
from xcurate.scoring.scorer_advantage import fit_value_nets

# ----------------------------------------------------------------------------- pure maths


def avg_l1_norm(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``z / mean(|z|)`` per row (TD7's AvgL1Norm)."""
    return z / z.abs().mean(-1, keepdim=True).clamp_min(eps)


def scaled_latent_error(z_hat: torch.Tensor, z_next: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Per-row ``sum_d (z_hat_d - z_next_d)^2 / var_d``: (B,).

    Args:
        z_hat: (B, D) predicted next latents.
        z_next: (B, D) encoded next states (stop-gradient in training).
        var: (D,) per-dimension variance of target latents (the diagonal scaling matrix).
    """
    assert z_hat.shape == z_next.shape and var.shape == z_hat.shape[1:], (z_hat.shape, z_next.shape, var.shape)
    return ((z_hat - z_next) ** 2 / var).sum(-1)


def tbm_targets(r: torch.Tensor, d: torch.Tensor, r_hat: torch.Tensor, v_next: torch.Tensor,
                v_hat_next: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Realised target y, target-aligned target y_hat and TBM = |y - y_hat| (all (B,)).

    Args:
        r: rewards.
        d: terminal flags (1 = no bootstrap).
        r_hat: predicted target-domain rewards.
        v_next: V_tar(f(s')).
        v_hat_next: V_tar(z_hat').
        gamma: discount.
    """
    assert r.shape == d.shape == r_hat.shape == v_next.shape == v_hat_next.shape and r.ndim == 1
    y = r + gamma * (1 - d) * v_next
    y_hat = r_hat + gamma * (1 - d) * v_hat_next
    return y, y_hat, (y - y_hat).abs()


# ----------------------------------------------------------------------------- model


class LatentModel(nn.Module):
    """Encoders f(s), f(s, a) and predictor g(z_sa) -> (normalised r_hat, z_hat')."""

    def __init__(self, obs_dim: int, act_dim: int, zs_dim: int, zsa_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.f_s = nets.mlp(obs_dim, zs_dim, hidden, activation="elu")
        self.f_sa = nets.mlp(zs_dim + act_dim, zsa_dim, hidden, activation="elu")
        self.g = nets.mlp(zsa_dim, 1 + zs_dim, hidden, activation="elu")

    def zs(self, s: torch.Tensor) -> torch.Tensor:
        """State latent f(s)."""
        return avg_l1_norm(self.f_s(s))

    def zsa(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """State-action latent f(s, a) = MLP(f(s), a), so f(s) is trained through the predictor."""
        return self.f_sa(torch.cat([self.zs(s), a], 1))

    def predict(self, zsa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised r_hat (B,), z_hat' (B, zs_dim))."""
        out = self.g(zsa)
        return out[:, 0], out[:, 1:]


@register
@dataclass
class TBMScorer(Scorer):
    """TABB Target Bellman Mismatch; inputs and rewards z-scored (source+target or target stats)."""

    name: ClassVar[str] = "tbm"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "tbm": ColumnSpec("lower", "[0, inf)", "|y - y_hat|: realised vs target-aligned Bellman target"),
        "tbm_score": ColumnSpec("higher", "(-inf, 0]", "-tbm"),
        "tbm_latent_error": ColumnSpec("lower", "[0, inf)",
                                       "variance-scaled next-latent error of the target-tuned predictor "
                                       "(the dynamics part of TBM, before the value function)"),
        "tbm_y_hat": ColumnSpec("none", "(-inf, inf)",
                                "target-aligned Bellman target r_hat + gamma V_tar(z_hat') (critic regresses "
                                "source Q to it)"),
        "tbm_y": ColumnSpec("none", "(-inf, inf)",
                            "realised Bellman target r + gamma V_tar(f(s')) (the trainer's tabb_target=rescaled maps "
                            "y_hat - y onto its own value scale)"),
    }
    primary: ClassVar[str] = "tbm_score"
    min_target: ClassVar[int] = 16
    chunk_size: ClassVar[int] = 100_000
    version: ClassVar[int] = 2  # 2: adds the tbm_y column

    zs_dim: int = 64  # state latent size (paper's value lost; our default)
    zsa_dim: int = 64  # state-action latent size (our default)
    hidden: tuple[int, ...] = (256, 256)  # hidden widths of encoders, predictor, Q and V
    encoder_steps: int = 10_000  # stage 1 steps: encoders + predictor on source + target (our default)
    finetune_steps: int = 5_000  # stage 2 steps: predictor on target only, encoders frozen (our default)
    value_steps: int = 10_000  # IQL steps of the anchor V_tar on target latents (our default)
    batch_size: int = 256  # rows per domain per step (stage 1 draws this many from each domain)
    lr: float = 3e-4  # Adam learning rate (IQL backbone)
    reward_weight: float = 1.0  # weight of the (z-scored) reward error against the latent error
    expectile: float = 0.7  # IQL expectile of V_tar
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of V_tar's target Q
    normalize: str = "source+target"  # statistics for z-scoring s, a, r: "source+target" or "target"

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> TBMScorer:
        """Stage 1 (source + target), stage 2 (target), then the anchor value on target."""
        self.check_inputs(target, source)
        dev, gen, tt, ts, target, source = nets.prepare_pair(target, source, self.device, self.seed)
        self._device = dev
        if self.normalize not in ("source+target", "target"):
            raise ConfigError(f"tbm: normalize must be 'source+target' or 'target', got {self.normalize!r}")
        # "target": far-off source rows (e.g. an unstable source system) cannot squash the target
        # into a tiny region of input space; "source+target" ranked better on moderate shifts
        ref = tt if self.normalize == "target" else {k: torch.cat([tt[k], ts[k]]) for k in tt}
        self._s_norm = nets.Standardizer.fit(torch.cat([ref["s"], ref["s2"]]))
        self._a_norm = nets.Standardizer.fit(ref["a"])
        self._r_mean, self._r_std = float(ref["r"].mean()), max(float(ref["r"].std(unbiased=False)), 1e-6)
        m = self._model = LatentModel(target.obs_dim, target.act_dim, self.zs_dim, self.zsa_dim,
                                      tuple(self.hidden)).to(dev)

        def prep(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {"s": self._s_norm(t["s"]), "a": self._a_norm(t["a"]), "s2": self._s_norm(t["s2"]),
                    "r": (t["r"] - self._r_mean) / self._r_std, "d": t["d"]}

        pt, ps = prep(tt), prep(ts)
        b = self.batch_size

        def loss_on(batch: dict[str, torch.Tensor], var: torch.Tensor) -> torch.Tensor:
            r_hat, z_hat = m.predict(m.zsa(batch["s"], batch["a"]))
            with torch.no_grad():
                z_next = m.zs(batch["s2"])
            lat = scaled_latent_error(z_hat, z_next, var)
            assert lat.shape == r_hat.shape == batch["r"].shape, (lat.shape, r_hat.shape)
            return (lat + self.reward_weight * (r_hat - batch["r"]) ** 2).mean()

        opt1 = torch.optim.Adam(m.parameters(), lr=self.lr)

        def stage1(_: int) -> torch.Tensor:
            it = nets.sample_index(gen, len(target), b, dev)
            js = nets.sample_index(gen, len(source), b, dev)
            batch = {k: torch.cat([pt[k][it], ps[k][js]]) for k in pt}
            with torch.no_grad():  # diagonal scaling from the variance of target latents
                var = m.zs(pt["s"][it]).var(0, unbiased=False).clamp_min(1e-3)
            loss = loss_on(batch, var)
            opt1.zero_grad(set_to_none=True)
            loss.backward()
            opt1.step()
            return loss

        nets.train_loop(stage1, self.encoder_steps, "tbm encoders (stage 1)")
        m.f_s.requires_grad_(False)
        m.f_sa.requires_grad_(False)
        with torch.no_grad():
            var_tar = nets.batched(m.zs, pt["s"]).var(0, unbiased=False).clamp_min(1e-3)
        opt2 = torch.optim.Adam(m.g.parameters(), lr=self.lr)

        def stage2(_: int) -> torch.Tensor:
            it = nets.sample_index(gen, len(target), b, dev)
            loss = loss_on({k: v[it] for k, v in pt.items()}, var_tar)
            opt2.zero_grad(set_to_none=True)
            loss.backward()
            opt2.step()
            return loss

        nets.train_loop(stage2, self.finetune_steps, "tbm predictor (stage 2)")
        self._var_tar = var_tar
        m.eval()
        with torch.no_grad():
            zs_t, zsa_t = nets.batched(m.zs, pt["s"]), nets.batched(m.zsa, pt["s"], pt["a"])
            zs2_t = nets.batched(m.zs, pt["s2"])
        self._value = fit_value_nets(zs_t, zsa_t, tt["r"], zs2_t, tt["d"], steps=self.value_steps, gen=gen,
                                     variant="iql", expectile=self.expectile, gamma=self.gamma, tau=self.tau,
                                     lr=self.lr, batch=b, hidden=tuple(self.hidden), what="tbm anchor value")
        return self

    def _score_tensors(self, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m, v = self._model, self._value
        s, a, s2 = self._s_norm(t["s"]), self._a_norm(t["a"]), self._s_norm(t["s2"])
        r_hat_n, z_hat = m.predict(m.zsa(s, a))
        r_hat = r_hat_n * self._r_std + self._r_mean
        z_next = m.zs(s2)
        v_next, v_hat = v.value(z_next), v.value(z_hat)
        y, y_hat, tbm = tbm_targets(t["r"], t["d"], r_hat, v_next, v_hat, self.gamma)
        lat = scaled_latent_error(z_hat, z_next, self._var_tar)
        return {"tbm": tbm, "tbm_score": -tbm, "tbm_latent_error": lat, "tbm_y_hat": y_hat, "tbm_y": y}

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """``tbm``, ``tbm_score``, ``tbm_latent_error``, ``tbm_y_hat`` and ``tbm_y`` per row."""
        if not hasattr(self, "_value"):
            raise ConfigError("tbm: call fit() before score()")

        def fn(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            keys = ("s", "a", "r", "s2", "d")
            res = [self._score_tensors(dict(zip(keys, blk, strict=True)))
                   for blk in _blocks([t[k] for k in keys])]
            return {c: torch.cat([x[c] for x in res]) for c in self.columns}

        return nets.score_chunk(chunk, self._device, fn, list(self.columns))


def _blocks(xs: list[torch.Tensor], size: int = 65_536) -> list[tuple[torch.Tensor, ...]]:
    n = xs[0].shape[0]
    return [tuple(x[i:i + size] for x in xs) for i in range(0, max(n, 1), size)]
