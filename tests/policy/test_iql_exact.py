"""Exact-value tests of the weighted IQL trainer on hand-built batches (issue 15 item 1, issue 16).

Every variant's V, Q and actor losses are recomputed here from the formulas of REFERENCE §2-3,
written out independently of ``xcurate.policy.iql`` (only the networks' forward passes are
shared), and compared to the trainer's metrics. The batch has a terminal and a non-terminal row
in both halves, rewards and columns that make Huber differ from MSE, advantages of both signs,
and distinct values per seed (K = 2), so a single-line change of a target, a loss, a weight,
a row range or an option is visible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xcurate.datasets.transitions import TransitionDataset
from xcurate.policy.iql import (
    VARIANTS,
    DeviceData,
    IQLTrainer,
    dvdf_weights,
    effective_sample_size,
    igdf_weights,
    make_config,
    otdf_weights,
    tabb_weights,
)

torch.set_num_threads(1)
OD, AD, BT, BS, K = 3, 2, 4, 4, 2
SMALL = {"hidden_dim": 8, "batch_target": BT, "batch_source": BS, "n_seeds": K, "max_steps": 10,
         "cvae_hidden": 8, "cvae_steps": 0, "huber_delta": 1.0}
SRC_COLS = ("score", "advantage_norm", "tbm", "y_hat", "penalty", "delta_r", "corrected_reward",
            "v_next_scorer", "y_scorer", "weight")


def _datasets() -> tuple[TransitionDataset, TransitionDataset]:
    rng = np.random.default_rng(0)

    def make(n: int, loc: float, scale: float, extras: dict | None = None) -> TransitionDataset:
        obs = rng.normal(loc, scale, (n, OD)).astype(np.float32)
        nxt = rng.normal(loc, scale, (n, OD)).astype(np.float32)
        act = rng.uniform(-0.9, 0.9, (n, AD)).astype(np.float32)
        term = np.zeros(n, bool)
        term[3] = True
        tout = np.zeros(n, bool)
        tout[5] = True
        return TransitionDataset.from_arrays(obs, act, rng.normal(size=n).astype(np.float32), nxt, terminals=term,
                                             timeouts=tout, extras=extras)

    n = 12
    extras = {c: rng.uniform(0.1, 1.0, n).astype(np.float32) for c in SRC_COLS}
    return make(n, 0.0, 1.0), make(n, 2.0, 3.0, extras)


@pytest.fixture(scope="module")
def data():
    return _datasets()


def _trainer(data, variant: str, **overrides) -> IQLTrainer:
    target, source = data
    tr = IQLTrainer(make_config(variant, **{**SMALL, **overrides}), target, source)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # Q_target != Q, and V large enough that its terms matter
        tr.q_target.flat.add_(0.3 * torch.randn(tr.q_target.flat.shape, generator=g))
        tr.v.flat.add_(0.5 * torch.randn(tr.v.flat.shape, generator=g))
        tr.actor.log_std.fill_(math.log(0.5))
    return tr


def _batch() -> dict[str, torch.Tensor]:
    """A hand-built batch: rows 0-3 target, 4-7 source; row 0 and row 5 are terminals."""
    g = torch.Generator().manual_seed(3)
    b = BT + BS
    seed_shift = torch.arange(K, dtype=torch.float32)[:, None]
    batch = {
        "obs": torch.randn(K, b, OD, generator=g), "next_obs": torch.randn(K, b, OD, generator=g),
        "act": torch.rand(K, b, AD, generator=g) * 1.8 - 0.9,
        "rew": torch.tensor([1.0, -2.0, 0.5, 3.0, 6.0, -5.0, 4.0, 0.0]).repeat(K, 1) + 0.1 * seed_shift,
        "done": torch.tensor([1.0, 0, 0, 0, 0, 1.0, 0, 0]).repeat(K, 1),
    }
    cols = {
        "score": [[-0.3, -0.1, -0.9, -0.5], [0.2, -0.7, -0.4, 0.1]],
        "advantage_norm": [[0.9, 0.1, 0.5, 0.0], [0.3, 0.8, 0.0, 0.6]],
        "tbm": [[0.2, 1.5, 0.7, 3.0], [2.0, 0.1, 0.4, 1.0]],
        "y_hat": [[5.0, -4.0, 20.0, 1.0], [-3.0, 2.0, 8.0, 0.5]],
        "penalty": [[0.5, 2.0, 0.0, 1.0], [1.5, 0.25, 3.0, 0.0]],
        "delta_r": [[1.0, -3.0, 0.5, 2.0], [-1.0, 4.0, 0.0, -2.5]],
        "corrected_reward": [[7.0, -6.0, 2.0, -1.0], [3.0, 1.0, -4.0, 2.0]],
        "v_next_scorer": [[1.0, 3.0, -2.0, 0.5], [0.0, 2.0, 4.0, -1.0]],
        "y_scorer": [[4.0, -1.0, 10.0, 2.0], [-2.0, 3.0, 6.0, 1.0]],
        "weight": [[1.0, 0.5, 0.0, 2.0], [0.25, 1.0, 3.0, 0.0]],
    }
    batch.update({k: torch.tensor(v) for k, v in cols.items()})
    return batch


# ------------------------------------------------------------------------- the reference
def _top(score: np.ndarray, frac: float) -> np.ndarray:
    n = max(1, math.ceil(frac * score.shape[-1]))
    out = np.zeros_like(score, dtype=bool)
    for k in range(score.shape[0]):
        out[k, np.argsort(-score[k], kind="stable")[:n]] = True
    return out


def ref_source_weights(c, batch) -> torch.Tensor:
    """REFERENCE §2's per-batch weights, in numpy (float64), for the (K, Bs) source rows."""
    np_ = {k: v.double().numpy() for k, v in batch.items()}
    if c.batch_norm == "otdf":
        d = np_[c.score_column]
        dmax, dmin = d.max(-1, keepdims=True), d.min(-1, keepdims=True)
        w = np.exp((d - dmax) / (dmax - dmin)) * _top(d, c.proportion)
    elif c.batch_norm == "igdf":
        s = np_[c.score_column]
        w = np.exp(c.igdf_alpha * s) * _top(s, c.xi)
    elif c.batch_norm == "dvdf":
        h, a = np_[c.score_column], np_["advantage_norm"]
        w = np.exp(h) * _top(c.dvdf_lambda * h + (1 - c.dvdf_lambda) * a, c.dvdf_xi)
    elif c.batch_norm == "tabb":
        tbm = np_["tbm"]
        t = c.tabb_temperature * (tbm.std(-1, ddof=1, keepdims=True) if c.tabb_temperature_scale == "std" else 1.0)
        e = np.exp(-tbm / t)
        w = e / e.sum(-1, keepdims=True) * tbm.shape[-1]
    else:
        w = np_["weight"]
    return torch.tensor(w, dtype=torch.float32)


def _std(x: torch.Tensor) -> torch.Tensor:
    return x.std(-1, keepdim=True)  # unbiased, as torch (the ratio does not depend on the choice)


def ref_losses(tr: IQLTrainer, batch, noise=None) -> dict[str, torch.Tensor]:
    """V, Q and actor losses (K,) and the TD targets (K, B) written out from REFERENCE §2-3."""
    c = tr.cfg
    obs, act, rew, nxt, done = (batch[x].clone() for x in ("obs", "act", "rew", "next_obs", "done"))
    b = rew.shape[1]
    w_src = ref_source_weights(c, batch)
    if c.reward_correction == "delta_r":
        rew[:, BT:] = rew[:, BT:] + c.dara_eta * batch["delta_r"]
    elif c.reward_correction == "corrected_reward":
        rew[:, BT:] = batch["corrected_reward"]
    with torch.no_grad():
        vn = tr.v(nxt)[..., 0]
        y = rew + c.gamma * (1 - done) * vn
        if c.source_target == "droco":
            u = batch["penalty"]
            if c.droco_penalty == "rescaled":
                u = u * _std(vn[:, BT:]) / _std(batch["v_next_scorer"])
            y[:, BT:] = rew[:, BT:] + c.gamma * (1 - done[:, BT:]) * (vn[:, BT:] - u)
        elif c.source_target == "tabb":
            yh = batch["y_hat"]
            if c.tabb_target == "rescaled":
                y_l = y[:, BT:]
                yh = y_l + _std(y_l) / _std(batch["y_scorer"]) * (yh - batch["y_scorer"])
            y[:, BT:] = yh
        x2 = torch.cat([obs, act], -1).repeat_interleave(2, 0)  # members (seed, twin)
        qt = tr.q_target(x2).view(K, 2, b).min(1).values
    q = tr.q(x2).view(K, 2, b)
    diff = q - y[:, None]
    src_kind = c.source_td_loss if c.source_td_loss != "auto" else (
        "huber" if c.source_target in ("droco", "tabb") else c.td_loss)

    def loss(d, kind):
        if kind == "huber":
            a = d.abs()
            return torch.where(a <= c.huber_delta, 0.5 * d ** 2, c.huber_delta * (a - 0.5 * c.huber_delta))
        return 0.5 * d ** 2

    per = torch.cat([loss(diff[..., :BT], c.td_loss).sum(1), loss(diff[..., BT:], src_kind).sum(1)], 1)
    w = torch.cat([torch.ones(K, BT), w_src], 1)  # target rows weigh 1
    q_loss = (per * w).mean(-1)
    w_va = w if c.weight_scope == "all" else torch.cat([torch.ones(K, BT), (w_src > 0).float()], 1)
    v = tr.v(obs)[..., 0]
    adv = qt - v
    vb = BT if c.source_target == "tabb" else b
    ew = torch.where(adv < 0, 1 - c.expectile, c.expectile)
    v_loss = (ew * adv ** 2 * w_va)[:, :vb].mean(-1)
    ab = b if (c.source_in == "critic_actor" and c.source_target != "tabb") else BT
    mu = torch.tanh(tr.actor.net(obs))
    log_std = tr.actor.log_std.clamp(-20, 2)
    logp = (-0.5 * ((act - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    exp_adv = torch.exp(c.beta * adv.detach()).clamp(max=c.exp_adv_max)
    a_loss = (-exp_adv * logp * w_va)[:, :ab].mean(-1)
    if c.bc_weight > 0:
        rec, kl = tr.cvae.elbo_terms(obs[:, :ab], mu[:, :ab], noise)
        if c.bc_form == "elbo":
            a_loss = a_loss + c.bc_weight * ((rec + c.cvae_kl * kl) * w_va[:, :ab]).mean(-1)
        else:
            scale = (1 / (2 * torch.exp(2 * log_std.detach()))).mean((1, 2))
            ll = -rec / (2 * c.cvae_var) - 0.5 * AD * math.log(2 * math.pi * c.cvae_var)
            a_loss = a_loss - c.bc_weight * scale * (ll * w_va[:, :ab]).mean(-1)
    return {"value_loss": v_loss.detach(), "critic_loss": q_loss.detach(), "actor_loss": a_loss.detach(),
            "y": y, "per": per.detach(), "w_src": w_src, "adv": adv.detach()}


CASES = [
    ("iql", {}),
    ("iql", {"td_loss": "huber"}),
    ("iql", {"expectile": 0.9, "beta": 1.5, "gamma": 0.9, "exp_adv_max": 2.0}),
    ("iql", {"weight_scope": "q", "source_in": "critic_actor"}),
    ("iql-actor", {}),
    ("otdf", {}),
    ("otdf", {"proportion": 0.5, "bc_weight": 0.1, "cvae_var": 0.3}),
    ("otdf", {"bc_form": "elbo", "source_in": "critic", "weight_scope": "all", "cvae_kl": 0.25}),
    ("igdf", {}),
    ("igdf", {"xi": 0.5, "igdf_alpha": 2.0}),
    ("dvdf", {}),
    ("dvdf", {"dvdf_lambda": 0.3, "dvdf_xi": 0.25}),
    ("tabb", {}),
    ("tabb", {"tabb_target": "column", "tabb_temperature_scale": "absolute", "tabb_temperature": 0.5}),
    ("tabb", {"tabb_temperature": 2.0, "source_td_loss": "mse"}),
    ("droco", {}),
    ("droco", {"droco_penalty": "column", "gamma": 0.8}),
    ("droco", {"source_td_loss": "mse", "td_loss": "huber"}),
    ("dara", {}),
    ("dara", {"dara_eta": 0.3}),
    ("dara", {"reward_correction": "corrected_reward"}),
]


@pytest.mark.parametrize(("variant", "overrides"), CASES, ids=[f"{v}-{i}" for i, (v, _) in enumerate(CASES)])
def test_losses_equal_the_formulas(data, variant, overrides):
    """V, Q and actor losses of every variant (and non-default options) equal REFERENCE §2-3."""
    tr = _trainer(data, variant, **overrides)
    batch = _batch()
    noise = tr._cvae_noise()
    _, m = tr.losses(batch, noise)
    ref = ref_losses(tr, batch, noise)
    adv = ref["adv"][:, :BT]
    assert (adv > 0).any() and (adv < 0).any(), "the batch must exercise both sides of the expectile"
    torch.testing.assert_close(tr.source_weights(batch), ref["w_src"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tr.td_targets(batch, _corrected_rew(tr, batch)), ref["y"], rtol=1e-5, atol=1e-5)
    for key in ("value_loss", "critic_loss", "actor_loss"):
        torch.testing.assert_close(m[key], ref[key], rtol=1e-5, atol=1e-6, msg=f"{variant} {overrides}: {key}")
    w = ref["w_src"]
    torch.testing.assert_close(m["src_ess"], w.sum(-1) ** 2 / (BS * (w ** 2).sum(-1)), rtol=1e-5, atol=1e-6)


def _corrected_rew(tr, batch):
    c, rew = tr.cfg, batch["rew"].clone()
    if c.reward_correction == "delta_r":
        rew[:, BT:] += c.dara_eta * batch["delta_r"]
    elif c.reward_correction == "corrected_reward":
        rew[:, BT:] = batch["corrected_reward"]
    return rew


def test_terminal_rows_do_not_bootstrap_and_target_rows_weigh_one(data):
    """Row 0 (target) and row 5 (source) are terminals: their TD target is r exactly (DROCO too)."""
    batch = _batch()
    for variant in ("iql", "droco", "dara"):
        tr = _trainer(data, variant)
        y = tr.td_targets(batch, _corrected_rew(tr, batch))
        rew = _corrected_rew(tr, batch)
        assert torch.equal(y[:, 0], rew[:, 0]) and torch.equal(y[:, 5], rew[:, 5])
        assert not torch.allclose(y[:, 1], rew[:, 1])  # the others bootstrap
    tr = _trainer(data, "iql")
    _, per, _ = tr.critic_loss(batch, batch["rew"], torch.cat([torch.ones(K, BT), torch.zeros(K, BS)], 1))
    loss, _, _ = tr.critic_loss(batch, batch["rew"], torch.cat([torch.ones(K, BT), torch.zeros(K, BS)], 1))
    torch.testing.assert_close(loss, per[:, :BT].sum(-1) / (BT + BS))  # weight exactly 1 per target row
    _, m = tr.losses(batch)
    ref = ref_losses(tr, batch)
    torch.testing.assert_close(m["critic_loss"], ref["critic_loss"], rtol=1e-5, atol=1e-6)


def test_device_data_keeps_timeouts_bootstrapping(data):
    """done = terminals only: a timeout row (5) bootstraps, a terminal row (3) does not."""
    target, _ = data
    assert target.timeouts[5] and not target.terminals[5] and target.terminals[3]
    dd = DeviceData(target, "cpu", np.zeros(OD, np.float32), np.ones(OD, np.float32), [])
    done = dd.table[:, dd.slices["done"]].numpy()
    np.testing.assert_array_equal(done, target.terminals.astype(np.float32))


def test_observation_normalisation(data):
    """Observations are z-scored with target+source mean and std + 1e-3, in sampling and in act()."""
    target, source = data
    tr = _trainer(data, "iql")
    allo = np.concatenate([target.observations, source.observations]).astype(np.float64)
    np.testing.assert_allclose(tr.obs_mean, allo.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.obs_std, allo.std(0) + 1e-3, rtol=1e-5)
    z = (source.observations - tr.obs_mean) / tr.obs_std
    np.testing.assert_allclose(tr.source.table[:, tr.source.slices["obs"]].numpy(), z, rtol=1e-5, atol=1e-6)
    zn = (source.next_observations - tr.obs_mean) / tr.obs_std
    np.testing.assert_allclose(tr.source.table[:, tr.source.slices["next_obs"]].numpy(), zn, rtol=1e-5, atol=1e-6)
    raw = source.observations[:K]
    with torch.no_grad():
        want = torch.tanh(tr.actor.net(torch.as_tensor((raw - tr.obs_mean) / tr.obs_std).view(K, 1, OD)))
    np.testing.assert_allclose(tr.act(raw), want.view(K, AD).numpy(), rtol=1e-5, atol=1e-6)
    off = IQLTrainer(make_config("iql", **SMALL, normalize_obs=False), *data)
    assert np.array_equal(off.obs_mean, np.zeros(OD)) and np.array_equal(off.obs_std, np.ones(OD))


def test_weight_functions_closed_form_non_default_options():
    """Per-batch weights with non-default options against numbers worked out by hand."""
    d = torch.tensor([[-0.2, -1.0, -0.6, -0.4]])
    # OTDF, proportion 0.5: d~ = (d - max)/(max - min) = [0, -1, -0.5, -0.25]; keep the top 2
    torch.testing.assert_close(otdf_weights(d, 0.5), torch.tensor([[1.0, 0.0, 0.0, math.exp(-0.25)]]))
    s = torch.tensor([[0.5, -0.5, 0.25, 0.0]])
    # IGDF, xi 0.5, alpha 2: exp(2 s) on the top 2
    torch.testing.assert_close(igdf_weights(s, 0.5, 2.0), torch.tensor([[math.e, 0.0, math.exp(0.5), 0.0]]))
    h, a = torch.tensor([[0.1, 0.2, 0.3, 0.0]]), torch.tensor([[1.0, 0.0, 0.1, 0.9]])
    # DVDF, lambda 0.3, xi 0.25: g = 0.3 h + 0.7 A = [0.73, 0.06, 0.16, 0.63]; keep row 0, weight exp(h)
    torch.testing.assert_close(dvdf_weights(h, a, 0.3, 0.25), torch.tensor([[math.exp(0.1), 0.0, 0.0, 0.0]]))
    tbm = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    e = np.exp(-np.array([0.0, 1.0, 2.0, 3.0]) / 0.5)
    torch.testing.assert_close(tabb_weights(tbm, 0.5), torch.tensor(4 * e / e.sum(), dtype=torch.float32)[None])
    sd = float(np.std([0.0, 1.0, 2.0, 3.0], ddof=1))
    e = np.exp(-np.array([0.0, 1.0, 2.0, 3.0]) / (2.0 * sd))
    torch.testing.assert_close(tabb_weights(tbm, 2.0, "std"), torch.tensor(4 * e / e.sum(), dtype=torch.float32)[None])
    # relative temperature: invariant to the scale of TBM (the absolute one is not)
    torch.testing.assert_close(tabb_weights(100 * tbm, 1.0, "std"), tabb_weights(tbm, 1.0, "std"))
    assert not torch.allclose(tabb_weights(100 * tbm, 1.0), tabb_weights(tbm, 1.0))
    torch.testing.assert_close(effective_sample_size(torch.tensor([[1.0, 1.0, 0.0, 0.0]])), torch.tensor([0.5]))
    torch.testing.assert_close(effective_sample_size(torch.tensor([[4.0, 0.0, 0.0, 0.0]])), torch.tensor([0.25]))


# ------------------------------------------------------------------------- issue 16, point by point
def test_presets_follow_the_papers():
    """OTDF/IGDF/DVDF: actor on filtered source + target, weights in Q only; ours stays selectable."""
    for v in ("otdf", "igdf", "dvdf"):
        c = make_config(v)
        assert c.source_in == "critic_actor" and c.weight_scope == "q", v
        ours = make_config(v, source_in="critic", weight_scope="all")
        assert ours.source_in == "critic" and ours.weight_scope == "all"
    assert make_config("otdf").bc_form == "official" and make_config("otdf").cvae_var == 0.1
    assert make_config("droco").droco_penalty == "rescaled" and make_config("tabb").tabb_target == "rescaled"
    assert make_config("tabb").tabb_temperature_scale == "std"
    assert set(VARIANTS) == {"iql", "iql-actor", "otdf", "igdf", "dvdf", "tabb", "droco", "dara"}


@pytest.mark.parametrize("variant", ["otdf", "igdf", "dvdf"])
def test_actor_sees_the_filtered_source_under_the_paper_preset(data, variant):
    """Changing a kept source row's action changes the actor loss (preset) but not under source_in=critic;
    changing a filtered-out row's action changes nothing."""
    batch = _batch()
    keep = {"proportion": 0.5} if variant == "otdf" else {}  # 0.8 of 4 rows keeps all 4
    for overrides, expect in (({}, True), ({"source_in": "critic"}, False)):
        tr = _trainer(data, variant, **keep, **overrides)
        w = tr.source_weights(batch)
        kept = int(torch.nonzero(w[0] > 0)[0])
        dropped = int(torch.nonzero(w[0] == 0)[0])
        noise = tr._cvae_noise()
        a0 = tr.losses(batch, noise)[1]["actor_loss"][0]
        moved = {**batch, "act": batch["act"].clone()}
        moved["act"][0, BT + kept] = -moved["act"][0, BT + kept]
        assert (tr.losses(moved, noise)[1]["actor_loss"][0] != a0).item() is expect, overrides
        moved = {**batch, "act": batch["act"].clone()}
        moved["act"][0, BT + dropped] = -moved["act"][0, BT + dropped]
        assert tr.losses(moved, noise)[1]["actor_loss"][0] == a0


@pytest.mark.parametrize("variant", ["otdf", "igdf", "dvdf"])
def test_weights_enter_q_only_under_the_paper_preset(data, variant):
    """Rescaling the kept rows' weights (same filter) moves the Q loss, not V (preset); V too with scope all."""
    batch = _batch()
    for overrides, v_moves in (({}, False), ({"weight_scope": "all"}, True)):
        tr = _trainer(data, variant, **overrides)
        m0 = tr.losses(batch, tr._cvae_noise())[1]
        w = tr.source_weights(batch)
        doubled = w * torch.tensor([2.0, 0.5, 3.0, 1.5])  # same kept set, other weights
        tr.source_weights = lambda _b, _w=doubled: _w
        m1 = tr.losses(batch, tr._cvae_noise())[1]
        assert not torch.allclose(m0["critic_loss"], m1["critic_loss"])
        assert torch.equal(m0["value_loss"], m1["value_loss"]) is not v_moves, overrides


def _scale_v(tr: IQLTrainer, factor: float) -> None:
    """Multiply V's output by ``factor`` (last layer's weight and bias)."""
    with torch.no_grad():
        w, b = tr.v.tensors()[-2:]
        w.mul_(factor)
        b.mul_(factor)


def test_droco_penalty_follows_the_learners_value_scale(data):
    """Rescaled: doubling the learner's V doubles gamma (V(s') - u) exactly; the stored column does not."""
    batch = _batch()
    for mode, follows in (("rescaled", True), ("column", False)):
        tr = _trainer(data, "droco", droco_penalty=mode)
        y1 = tr.td_targets(batch, batch["rew"])[:, BT:] - batch["rew"][:, BT:]
        _scale_v(tr, 2.0)
        y2 = tr.td_targets(batch, batch["rew"])[:, BT:] - batch["rew"][:, BT:]
        assert torch.allclose(y2, 2 * y1, rtol=1e-5, atol=1e-6) is follows, mode
    # a scorer on the learner's own scale leaves the penalty as stored
    tr = _trainer(data, "droco")
    with torch.no_grad():
        vn = tr.v(batch["next_obs"])[..., 0]
    same = {**batch, "v_next_scorer": 3 * vn[:, BT:] + 1.0}  # a scorer with 3x the learner's value scale
    y = tr.td_targets(same, batch["rew"])[:, BT:]
    want = batch["rew"][:, BT:] + 0.99 * (1 - batch["done"][:, BT:]) * (vn[:, BT:] - batch["penalty"] / 3)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)


def test_tabb_target_follows_the_learners_value_scale(data):
    """Rescaled: a scorer whose targets are c x the learner's gives y_hat / c (exactly the learner's scale)."""
    batch = _batch()
    tr = _trainer(data, "tabb")
    with torch.no_grad():
        y_l = batch["rew"] + 0.99 * (1 - batch["done"]) * tr.v(batch["next_obs"])[..., 0]
    y_hat_l = y_l[:, BT:] + torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]])  # on the learner's scale
    scaled = {**batch, "y_scorer": 3 * y_l[:, BT:] + 5.0, "y_hat": 3 * y_hat_l + 5.0}
    torch.testing.assert_close(tr.td_targets(scaled, batch["rew"])[:, BT:], y_hat_l, rtol=1e-5, atol=1e-4)
    col = _trainer(data, "tabb", tabb_target="column")
    torch.testing.assert_close(col.td_targets(scaled, batch["rew"])[:, BT:], scaled["y_hat"])


def test_otdf_regulariser_has_the_official_strength(data):
    """Official form: bc_weight * mean_d 1/(2 sigma_d^2) * ||pi - D||^2 / (2 * 0.1) (+ const), sign: a penalty."""
    batch = _batch()
    tr = _trainer(data, "otdf")
    noise = tr._cvae_noise()
    assert noise.shape == (K, BT + BS, tr.cvae.latent)  # the regulariser sees the actor's rows
    w = torch.cat([torch.ones(K, BT), (tr.source_weights(batch) > 0).float()], 1)
    term = tr.bc_term(batch["obs"], noise, w)
    with torch.no_grad():
        pi = tr.actor.mean(batch["obs"])
        rec, _ = tr.cvae.elbo_terms(batch["obs"], pi, noise)
    sigma2 = 0.25  # log_std = log 0.5
    want = 0.5 * (1 / (2 * sigma2)) * ((rec / (2 * 0.1) + 0.5 * AD * math.log(2 * math.pi * 0.1)) * w).mean(-1)
    torch.testing.assert_close(term.detach(), want, rtol=1e-5, atol=1e-6)
    # ratio to the actor's squared-error coefficient 1/(2 sigma^2) is bc_weight / (2 var) = 2.5, as in OTDF
    assert 0.5 / (2 * 0.1) == pytest.approx(2.5)
    elbo = _trainer(data, "otdf", bc_form="elbo")
    with torch.no_grad():
        rec_e, kl_e = elbo.cvae.elbo_terms(batch["obs"], elbo.actor.mean(batch["obs"]), noise)
    torch.testing.assert_close(elbo.bc_term(batch["obs"], noise, w).detach(),
                               0.5 * ((rec_e + 0.5 * kl_e) * w).mean(-1), rtol=1e-5, atol=1e-6)


def test_source_ess_is_logged_for_every_variant(data):
    batch = _batch()
    for variant in VARIANTS:
        tr = _trainer(data, variant)
        m = tr.losses(batch, tr._cvae_noise())[1]
        w = tr.source_weights(batch)
        torch.testing.assert_close(m["src_ess"], effective_sample_size(w))
        assert ((m["src_ess"] > 0) & (m["src_ess"] <= 1)).all()


def test_scale_ratio_degenerate_batches():
    """No spread in the scorer's values (or one row): the ratio is 1, never inf/NaN."""
    from xcurate.policy.iql import scale_ratio

    learner = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 8.0]])
    torch.testing.assert_close(scale_ratio(learner, torch.full((2, 3), 4.0)), torch.ones(2, 1))
    torch.testing.assert_close(scale_ratio(learner, 0.5 * learner), torch.full((2, 1), 2.0))
    torch.testing.assert_close(scale_ratio(learner[:, :1], learner[:, :1]), torch.ones(2, 1))
    one = tabb_weights(torch.tensor([[3.0]]), 1.0, "std")
    torch.testing.assert_close(one, torch.ones(1, 1))


class _Fixed(torch.nn.Module):
    """A stand-in network returning a fixed tensor (the encoder) or a slice of its input (the decoder)."""

    def __init__(self, out: torch.Tensor | None = None, cols: slice | None = None) -> None:
        super().__init__()
        self.out, self.cols = out, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out if self.out is not None else x[..., self.cols]


def test_cvae_shape_is_the_official_one():
    """OTDF/BCQ's VAE: latent 2 x act_dim, two hidden layers in the encoder and in the decoder."""
    from xcurate.policy.iql import CVAE

    c = CVAE(2, OD, AD, 8)
    assert c.latent == 2 * AD
    assert [s[1:] for s in c.enc.shapes[::2]] == [(OD + AD, 8), (8, 8), (8, 2 * c.latent)]
    assert [s[1:] for s in c.dec.shapes[::2]] == [(OD + c.latent, 8), (8, 8), (8, AD)]


def test_cvae_elbo_terms_equal_the_formulas():
    """rec = ||tanh(D(s, mu + sigma eps)) - a||^2, KL = KL(N(mu, sigma^2) || N(0, I)), log sigma in [-4, 15]."""
    from xcurate.policy.iql import CVAE

    c = CVAE(K, OD, AD, 8)
    lat = c.latent
    g = torch.Generator().manual_seed(11)
    obs, act = torch.randn(K, 3, OD, generator=g), torch.rand(K, 3, AD, generator=g) * 1.6 - 0.8
    noise = torch.randn(K, 3, lat, generator=g)
    mu = torch.randn(K, 3, lat, generator=g)
    log_std = torch.randn(K, 3, lat, generator=g)
    log_std[0, 0, 0], log_std[1, 2, 1] = -9.0, 20.0  # outside the clamp on both sides
    c.enc = _Fixed(torch.cat([mu, log_std], -1))
    c.dec = _Fixed(cols=slice(OD, OD + AD))  # the decoder returns z's first act_dim entries
    rec, kl = c.elbo_terms(obs, act, noise)
    ls = log_std.clamp(-4.0, 15.0)
    z = mu + ls.exp() * noise
    torch.testing.assert_close(rec, ((torch.tanh(z[..., :AD]) - act) ** 2).sum(-1))
    want_kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, ls.exp()),
                                                torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, want_kl, rtol=1e-5, atol=1e-5)
    assert rec.shape == kl.shape == (K, 3)


def test_cvae_pretraining_descends_the_negative_elbo(data):
    """One pretraining step is the gradient of mean_b(rec + cvae_kl KL), summed over seeds; then frozen."""
    tr = _trainer(data, "otdf", cvae_steps=1, cvae_kl=0.3, cvae_batch=5)
    ref = _trainer(data, "otdf", cvae_steps=1, cvae_kl=0.3, cvae_batch=5)  # the same init and generators
    tr.cvae_opt = torch.optim.SGD(tr.cvae.parameters(), lr=1.0)  # parameter change = -gradient
    before = [p.detach().clone() for p in tr.cvae.parameters()]
    out = tr.pretrain_cvae()
    tb = ref.target.sample(ref.gens, 5)
    rec, kl = ref.cvae.elbo_terms(tb["obs"], tb["act"], ref._cvae_noise(5))
    ((rec + 0.3 * kl).mean(-1).sum()).backward()
    for p0, p1, pr in zip(before, tr.cvae.parameters(), ref.cvae.parameters(), strict=True):
        torch.testing.assert_close(p1.detach(), p0 - pr.grad, rtol=1e-5, atol=1e-6)
    assert set(out) == {"cvae_recon", "cvae_kl"}
    assert out["cvae_recon"] == pytest.approx(float(rec.detach().mean()), rel=1e-5)
    assert out["cvae_kl"] == pytest.approx(float(kl.detach().mean()), rel=1e-5)
    assert tr.cvae_step == 1 and not any(p.requires_grad for p in tr.cvae.parameters())
    three = _trainer(data, "otdf", cvae_steps=3)
    n = []
    step = three.cvae_opt.step
    three.cvae_opt.step = lambda *a, **k: (n.append(1), step(*a, **k))[1]
    three.pretrain_cvae()
    assert three.cvae_step == 3 and len(n) == 3


def test_otdf_regulariser_scale_is_per_seed(data):
    """The official form's factor mean_d 1/(2 sigma_d^2) is each seed's own (seeds' actors differ)."""
    batch = _batch()
    tr = _trainer(data, "otdf")
    with torch.no_grad():
        tr.actor.log_std[0].fill_(math.log(0.5))
        tr.actor.log_std[1].fill_(math.log(0.8))
    noise = tr._cvae_noise()
    w = torch.ones(K, BT + BS)
    term = tr.bc_term(batch["obs"], noise, w).detach()
    with torch.no_grad():
        rec, _ = tr.cvae.elbo_terms(batch["obs"], tr.actor.mean(batch["obs"]), noise)
    nll = (rec / (2 * 0.1) + 0.5 * AD * math.log(2 * math.pi * 0.1)).mean(-1)
    want = 0.5 * torch.tensor([1 / (2 * 0.25), 1 / (2 * 0.64)]) * nll
    torch.testing.assert_close(term, want, rtol=1e-5, atol=1e-6)


def test_tabb_std_temperature_with_two_rows():
    """scale="std" applies from two source rows on: T = temperature x the batch's (unbiased) std."""
    tbm = torch.tensor([[1.0, 4.0], [0.0, -2.0]])
    t = 0.5 * tbm.std(-1, keepdim=True)
    torch.testing.assert_close(tabb_weights(tbm, 0.5, "std"), 2 * torch.softmax(-tbm / t, -1))


def test_otdf_regulariser_clamps_the_actor_scale_and_names_its_metric(data):
    """The factor reads log sigma clamped to [-20, 2], as the actor's own log-likelihood does."""
    batch = _batch()
    tr = _trainer(data, "otdf")
    with torch.no_grad():
        tr.actor.log_std[0].fill_(3.0)  # above the clamp: sigma = e^2
        tr.actor.log_std[1].fill_(-20.5)  # below: sigma = e^-20
    noise, w = tr._cvae_noise(), torch.ones(K, BT + BS)
    metrics: dict[str, torch.Tensor] = {}
    term = tr.bc_term(batch["obs"], noise, w, metrics).detach()
    with torch.no_grad():
        rec, _ = tr.cvae.elbo_terms(batch["obs"], tr.actor.mean(batch["obs"]), noise)
    loglik = -rec / (2 * 0.1) - 0.5 * AD * math.log(2 * math.pi * 0.1)
    want = -0.5 * 0.5 * torch.exp(-2 * torch.tensor([2.0, -20.0])) * loglik.mean(-1)
    torch.testing.assert_close(term, want, rtol=1e-5, atol=0.0)
    assert set(metrics) == {"bc_loglik"}
    torch.testing.assert_close(metrics["bc_loglik"], loglik.mean(-1))
    elbo = _trainer(data, "otdf", bc_form="elbo")
    metrics = {}
    elbo.bc_term(batch["obs"], noise, w, metrics)
    assert set(metrics) == {"bc_elbo"} and metrics["bc_elbo"].shape == (K,)


def test_overrides_parse_every_spelling_and_name_the_field():
    """``--set`` values: bools in every accepted spelling, ints written as floats; one-line errors."""
    from xcurate.errors import ConfigError
    from xcurate.policy.iql import IQLConfig

    base = make_config("iql")
    for v in ("1", "true", "TRUE", "Yes", "yes"):
        assert base.with_overrides({"actor_cosine": "0"}).with_overrides({"actor_cosine": v}).actor_cosine is True
    for v in ("0", "false", "False", "no", "NO"):
        assert base.with_overrides({"actor_cosine": v}).actor_cosine is False
    assert base.with_overrides({"max_steps": "1e3"}).max_steps == 1000
    cases = {("actor_cosine", "maybe"): "--set actor_cosine=maybe: expected a bool",
             ("max_steps", "1.5"): "--set max_steps=1.5: expected a int",
             ("expectile", "x"): "--set expectile=x: expected a float",
             ("expectle", "0.7"): "--set expectle: unknown IQLConfig field (did you mean expectile?)",
             ("zzzzqq", "1"): "--set zzzzqq: unknown IQLConfig field"}
    for (k, v), msg in cases.items():
        with pytest.raises(ConfigError) as e:
            base.with_overrides({k: v})
        assert str(e.value) == msg
    with pytest.raises(ConfigError) as e:
        IQLConfig.from_dict({**base.to_dict(), "nope": 1, "also": 2})
    assert str(e.value) == "IQLConfig: unknown field(s) ['also', 'nope']"


def test_checkpoint_restores_a_frozen_cvae_and_refuses_other_formats(data):
    from xcurate.errors import StoreError
    from xcurate.policy.iql import FORMAT_VERSION

    tr = _trainer(data, "otdf", cvae_steps=1)
    tr.pretrain_cvae()
    sd = tr.state_dict()
    fresh = _trainer(data, "otdf", cvae_steps=1)
    assert all(p.requires_grad for p in fresh.cvae.parameters())
    fresh.load_state_dict(sd)
    assert fresh.cvae_step == 1 and not any(p.requires_grad for p in fresh.cvae.parameters())
    with pytest.raises(StoreError) as e:
        fresh.load_state_dict({**sd, "format_version": 999})
    assert str(e.value) == f"checkpoint format 999 is not supported (this xcurate writes {FORMAT_VERSION})"


def test_load_actor_rebuilds_the_checkpoints_policy(data, tmp_path):
    """``load_actor``: the checkpoint's actor (every seed) from a weights-only load, with its config."""
    from xcurate.policy.iql import load_actor

    tr = _trainer(data, "iql", n_hidden=3)
    with torch.no_grad():
        tr.actor.log_std.add_(torch.arange(K, dtype=torch.float32).view(K, 1, 1))
    torch.save(tr.state_dict(), tmp_path / "last.pt")
    actor, sd = load_actor(str(tmp_path / "last.pt"))
    assert sd["config"] == tr.cfg.to_dict() and sd["step"] == tr.step
    obs = torch.randn(K, 5, OD, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(actor.mean(obs), tr.actor.mean(obs), rtol=0, atol=0)
    torch.testing.assert_close(actor.log_std, tr.actor.log_std, rtol=0, atol=0)


def test_a_tiny_keep_fraction_keeps_one_row_per_seed():
    """ceil(xi B) rows are kept, at least one: xi = 0.1 of 4 rows keeps each seed's best row only."""
    score = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.5, 0.4, 0.3, 0.8]])
    w = igdf_weights(score, 0.1, 1.0)
    torch.testing.assert_close(w, torch.tensor([[0.0, math.exp(0.9), 0.0, 0.0], [0.0, 0.0, 0.0, math.exp(0.8)]]))
    assert (otdf_weights(score, 0.3) > 0).sum(-1).tolist() == [2, 2]  # ceil(1.2) = 2


class _NotWeights:
    """An arbitrary object: a weights-only load must refuse to unpickle it."""


def test_finished_pretraining_is_a_no_op_and_load_actor_refuses_pickles(data, tmp_path):
    import pickle

    from xcurate.policy.iql import load_actor

    tr = _trainer(data, "otdf", cvae_steps=1)
    tr.pretrain_cvae()
    before = [p.detach().clone() for p in tr.cvae.parameters()]
    assert tr.pretrain_cvae() == {"cvae_recon": 0.0, "cvae_kl": 0.0}  # resumed after pretraining: nothing to do
    assert all(torch.equal(a, b) for a, b in zip(before, tr.cvae.parameters(), strict=True))
    sd = tr.state_dict()
    sd["config"] = _NotWeights()
    torch.save(sd, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_actor(str(tmp_path / "evil.pt"))


def test_scale_ratio_from_two_rows_and_one_seed():
    """The ratio std(learner) / std(scorer) applies from two rows on, whatever the number of seeds."""
    from xcurate.policy.iql import scale_ratio

    learner, scorer = torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 2.0]])  # one seed, two rows
    torch.testing.assert_close(scale_ratio(learner, scorer), torch.tensor([[2.0]]))
    three = torch.tensor([[1.0, 4.0, 7.0]])
    torch.testing.assert_close(scale_ratio(three, three / 3), torch.tensor([[3.0]]))
