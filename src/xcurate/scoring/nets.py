"""Small PyTorch building blocks shared by the learned scorers.

MLPs, a z-score normaliser, device/seed helpers, seeded batch sampling, a training loop that
stops with a clear error when a loss diverges, and batched inference. Everything runs on CPU;
``device="auto"`` picks CUDA when present. Determinism: every source of randomness goes through
one ``torch.Generator`` created from the scorer's seed (plus ``torch.manual_seed`` for weight
initialisation), so the same seed gives the same scores in the same environment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import DataError

log = logging.getLogger("xcurate.scoring")

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU,
                                           "tanh": nn.Tanh, "elu": nn.ELU}


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu",
        out_activation: str | None = None) -> nn.Sequential:
    """A fully connected network ``in_dim -> hidden... -> out_dim``.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers.
        activation: hidden activation, one of ``ACTIVATIONS``.
        out_activation: optional activation after the last layer.
    """
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), act()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    if out_activation:
        layers.append(ACTIVATIONS[out_activation]())
    return nn.Sequential(*layers)


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau online``."""
    with torch.no_grad():
        for pt, po in zip(target.parameters(), online.parameters(), strict=True):
            pt.mul_(1 - tau).add_(po, alpha=tau)


@dataclass
class Standardizer:
    """Z-score normaliser ``(x - mean) / std`` with statistics fitted once (std floored at ``eps``)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = 1e-6) -> Standardizer:
        """Statistics of the rows of ``x`` (N, D)."""
        return cls(mean=x.mean(0), std=x.std(0, unbiased=False).clamp_min(eps))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def to(self, device: str | torch.device) -> Standardizer:
        """Copy on another device."""
        return Standardizer(self.mean.to(device), self.std.to(device))


NEXT_INPUTS = ("next", "delta")


class NextInput:
    """How a scorer feeds the next state to a network: ``next`` = z-scored s' (the papers),
    ``delta`` = z-scored s' - s (the dynamics residual on its own scale: a shift that moves s' by a
    fraction of s's spread is O(1) in these units instead of drowned by the spread of s).
    """

    def __init__(self, kind: str, s_norm: Standardizer, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                 standardize: bool = True) -> None:
        if kind not in NEXT_INPUTS:
            from xcurate.errors import ConfigError

            raise ConfigError(f"next_input must be one of {NEXT_INPUTS}, got {kind!r}")
        self.kind, self.s_norm = kind, s_norm
        self.d_norm = None
        if kind == "delta":
            d = torch.cat([s2 - s for s, s2 in pairs])
            self.d_norm = Standardizer.fit(d) if standardize else Standardizer(d[:1] * 0, d[:1] * 0 + 1)

    def __call__(self, s: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return self.s_norm(s2) if self.d_norm is None else self.d_norm(s2 - s)


def resolve_torch_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cpu"``/``"cuda"`` as given."""
    from xcurate.utils import resolve_device

    return torch.device(resolve_device(device))


def make_generator(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weight init) and return a CPU generator for batch sampling."""
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def sample_index(gen: torch.Generator, n: int, batch: int, device: torch.device) -> torch.Tensor:
    """``batch`` row indices drawn uniformly with replacement from ``range(n)`` (deterministic)."""
    return torch.randint(0, n, (batch,), generator=gen).to(device)


def finite_rows(ds: TransitionDataset, what: str) -> TransitionDataset:
    """Drop rows with NaN/Inf in s, a, r or s' and log how many were dropped.

    Raises:
        DataError: when no finite row is left.
    """
    mask = ds.finite_mask()
    bad = int((~mask).sum())
    if bad:
        log.warning("%s %s: excluded %d of %d row(s) with NaN/Inf", what, ds.source, bad, len(ds))
        ds = ds.select(mask)
    if len(ds) == 0:
        raise DataError(f"{what} {ds.source}: no finite transitions left after excluding NaN/Inf rows")
    return ds


def tensors(ds: TransitionDataset, device: torch.device) -> dict[str, torch.Tensor]:
    """float32 tensors s, a, r, s2, d (terminal as 0/1) on ``device``."""
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)

    return {"s": t(ds.observations), "a": t(ds.actions), "r": t(ds.rewards).reshape(-1),
            "s2": t(ds.next_observations), "d": t(ds.terminals).reshape(-1)}


def train_loop(step: Callable[[int], torch.Tensor], steps: int, what: str, check_every: int = 100) -> float:
    """Run ``step(i)`` for ``i < steps``; stop with a clear error if the loss becomes NaN/Inf.

    Args:
        step: one optimisation step returning the (detached or not) scalar loss.
        steps: number of steps.
        what: name used in the error message (e.g. ``"contrastive encoder"``).
        check_every: check the loss for finiteness every this many steps (and at the end).

    Returns:
        The last loss value.

    Raises:
        DataError: if a loss is not finite (typically extreme, unnormalised input values).
    """
    from xcurate.scoring.base import report_fit_progress

    last = float("nan")
    for i in range(steps):
        loss = step(i)
        if i % check_every == 0 or i == steps - 1:
            last = float(loss.detach())
            if not np.isfinite(last):
                raise DataError(f"training the {what} diverged at step {i} (loss {last}); check the "
                                f"input data for extreme values or lower the learning rate")
            report_fit_progress(what, i + 1, steps, last)  # the loss was synced above anyway
    return last


@torch.no_grad()
def batched(fn: Callable[..., torch.Tensor], *xs: torch.Tensor, batch: int = 65_536) -> torch.Tensor:
    """Apply ``fn`` to row blocks of ``xs`` and concatenate (bounded peak memory)."""
    n = xs[0].shape[0]
    if n <= batch:
        return fn(*xs)
    return torch.cat([fn(*(x[i:i + batch] for x in xs)) for i in range(0, n, batch)])


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of a tensor."""
    return x.detach().cpu().double().numpy()


def score_chunk(chunk: TransitionDataset, device: torch.device,
                fn: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
                columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Run ``fn`` on the finite rows of ``chunk``; non-finite rows get NaN in every column.

    Args:
        chunk: source transitions to score.
        device: torch device.
        fn: maps the tensors of :func:`tensors` to one (n,) tensor per column.
        columns: the column names ``fn`` returns.
    """
    n = len(chunk)
    out = {c: np.full(n, np.nan) for c in columns}
    if n == 0:
        return out
    mask = chunk.finite_mask()
    if not mask.any():
        return out
    sub = chunk if mask.all() else chunk.select(mask)
    with torch.no_grad():
        res = fn(tensors(sub, device))
    for c in columns:
        v = to_numpy(res[c]).reshape(-1)
        assert v.shape == (int(mask.sum()),), (c, v.shape)
        out[c][mask] = v
    return out


def prepare_pair(target: TransitionDataset, source: TransitionDataset, device: str, seed: int,
                 ) -> tuple[torch.device, torch.Generator, dict[str, torch.Tensor], dict[str, torch.Tensor],
                            TransitionDataset, TransitionDataset]:
    """The common start of a learned scorer's ``fit``: drop non-finite rows (logged), resolve the
    device, make the seeded generator and move both datasets to tensors.

    Returns:
        (device, generator, target tensors, source tensors, finite target, finite source).
    """
    target = finite_rows(target, "target")
    source = finite_rows(source, "source")
    dev = resolve_torch_device(device)
    return dev, make_generator(seed), tensors(target, dev), tensors(source, dev), target, source
