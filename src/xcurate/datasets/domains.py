"""Source and shifted-dynamics target domains on Gymnasium v5 / MuJoCo 3.

INTERFACE (stable; other modules rely on it):

    get_domain(name) -> Domain          # raises ConfigError for unknown names
    list_domains() -> list[Domain]
    Domain.name, .robot, .family, .level, .description
    Domain.env_id                        # e.g. "Hopper-v5"
    Domain.obs_dim, .act_dim
    Domain.make_env(**kwargs) -> gymnasium.Env    # v5 env with this domain's dynamics
    Domain.make_model() -> mujoco.MjModel         # the same dynamics, raw MuJoCo
    Domain.references -> (j_random, j_expert) or None
    Domain.normalize(returns) -> 100 * (J - J_random) / (J_expert - J_random)

This first version only has the unshifted source domains; shifted families are added below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xcurate.errors import ConfigError

ROBOTS: dict[str, dict[str, Any]] = {
    "halfcheetah": {"env_id": "HalfCheetah-v5", "obs_dim": 17, "act_dim": 6, "env_kwargs": {}},
    "hopper": {"env_id": "Hopper-v5", "obs_dim": 11, "act_dim": 3, "env_kwargs": {}},
    "walker2d": {"env_id": "Walker2d-v5", "obs_dim": 17, "act_dim": 6, "env_kwargs": {}},
    "ant": {"env_id": "Ant-v5", "obs_dim": 27, "act_dim": 8,
            "env_kwargs": {"include_cfrc_ext_in_observation": False}},
}


@dataclass(frozen=True)
class Domain:
    """A MuJoCo locomotion domain: a robot plus (optionally) a dynamics shift."""

    name: str
    robot: str
    family: str = "none"
    level: str | None = None
    description: str = "unshifted Gymnasium v5 dynamics"
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the underlying environment."""
        return ROBOTS[self.robot]["env_id"]

    @property
    def obs_dim(self) -> int:
        """Observation dimension."""
        return ROBOTS[self.robot]["obs_dim"]

    @property
    def act_dim(self) -> int:
        """Action dimension."""
        return ROBOTS[self.robot]["act_dim"]

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments passed to ``gymnasium.make`` for this domain."""
        return dict(ROBOTS[self.robot]["env_kwargs"])

    def make_env(self, **kwargs: Any):
        """A Gymnasium environment with this domain's dynamics (TimeLimit 1000)."""
        import gymnasium as gym

        return gym.make(self.env_id, **{**self.env_kwargs(), **kwargs})

    def make_model(self):
        """A raw ``mujoco.MjModel`` with this domain's dynamics."""
        env = self.make_env()
        model = env.unwrapped.model
        env.close()
        return model

    @property
    def references(self) -> tuple[float, float] | None:
        """(J_random, J_expert) measured in this domain, or None if not measured."""
        return None

    def normalize(self, returns: np.ndarray | float) -> np.ndarray | float:
        """Normalised score 100 (J - J_random) / (J_expert - J_random)."""
        ref = self.references
        if ref is None:
            raise ConfigError(f"domain {self.name!r} has no reference returns")
        lo, hi = ref
        return 100.0 * (np.asarray(returns) - lo) / (hi - lo)


_REGISTRY: dict[str, Domain] = {r: Domain(name=r, robot=r) for r in ROBOTS}


def get_domain(name: str) -> Domain:
    """Look a domain up by name; raise :class:`ConfigError` listing close names if unknown."""
    if isinstance(name, Domain):
        return name
    key = name.strip().lower()
    if key not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(key, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `xcurate domains list`)"
        raise ConfigError(f"unknown domain {name!r}{hint}")
    return _REGISTRY[key]


def list_domains() -> list[Domain]:
    """All registered domains, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
