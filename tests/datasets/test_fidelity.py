"""``xcurate domains match``: data collected in domain X is matched to X."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xcurate.datasets.collect import collect
from xcurate.datasets.fidelity import MIN_ROWS, candidate_domains, match_domains
from xcurate.datasets.io import save_dataset
from xcurate.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def cheetah_morph():
    return collect("halfcheetah-morph-otdf", "random", 150, seed=1, progress=False)


def test_collected_data_is_matched_to_its_domain(cheetah_morph):
    ms = match_domains(cheetah_morph)  # every HalfCheetah domain (the metadata names the robot)
    assert len(ms) == len(candidate_domains(cheetah_morph)) > 20
    assert {m.domain.split("-")[0] for m in ms} == {"halfcheetah"}
    best, second = ms[0], ms[1]
    assert best.domain == "halfcheetah-morph-otdf"
    assert best.median_gap < 1e-9 and best.valid_fraction == 1.0 and best.rows == 150
    assert second.median_gap > 1e-3  # the next best domain is clearly worse
    gaps = [m.mean_gap for m in ms]
    assert gaps == sorted(gaps)


def test_obs_only_and_state_replay_and_other_robots():
    hop = collect("hopper-morph-torso-easy", "random", 120, seed=2, progress=False)
    cands = ["hopper", "hopper-morph-torso-easy", "hopper-morph-torsolength-easy", "hopper-morph-xcurate"]
    ms = match_domains(hop, cands)
    assert [m.domain for m in ms][0] == "hopper-morph-torso-easy" and ms[0].median_gap < 1e-9
    # without qpos/qvel and metadata (a foreign file): HalfCheetah replays exactly from observations;
    # HalfCheetah and Walker2d share their dims, so both robots are candidates
    foreign = collect("halfcheetah-gravity-0.5", "random", 100, seed=3, progress=False)
    foreign.qpos = foreign.qvel = None
    foreign.metadata = {}
    ms = match_domains(foreign, max_rows=60)
    assert {m.domain.split("-")[0] for m in ms} == {"halfcheetah", "walker2d"}
    assert ms[0].domain == "halfcheetah-gravity-0.5" and ms[0].rows == 60 and ms[0].median_gap < 1e-6


def test_bad_input(cheetah_morph):
    with pytest.raises(ConfigError, match="unknown domain 'halfcheetah-morph-otfd'"):
        match_domains(cheetah_morph, ["halfcheetah", "halfcheetah-morph-otfd"])
    with pytest.raises(DataError, match="too short to replay"):
        match_domains(cheetah_morph.select(slice(0, MIN_ROWS - 1)))
    with pytest.raises(DataError, match="do not match domain 'hopper'"):
        match_domains(cheetah_morph, ["hopper"])


def test_cli(tmp_path, cheetah_morph, run_cli):
    p = save_dataset(cheetah_morph, tmp_path / "d.hdf5")
    code, out, err = run_cli(["domains", "match", p, "--domains", "halfcheetah,halfcheetah-morph-otdf",
                              "--domains", "halfcheetah-morph-xcurate"])
    assert code == 0, err
    assert out.index("halfcheetah-morph-otdf") < out.index("halfcheetah-morph-xcurate") and "100.0%" in out
    code, out, err = run_cli(["domains", "match", p, "--domains", "halfcheetah,halfcheetah-morph-otdf", "--json"])
    got = json.loads(out)
    assert code == 0 and [m["domain"] for m in got["matches"]] == ["halfcheetah-morph-otdf", "halfcheetah"]
    assert np.isfinite(got["matches"][1]["mean_gap"])
    code, _, err = run_cli(["domains", "match", p, "--domains", "halfcheetah-morf-otdf"])
    assert code == 1 and "unknown domain" in err and len(err.strip().splitlines()) == 1
    short = save_dataset(cheetah_morph.select(slice(0, 3)), tmp_path / "short.hdf5")
    code, _, err = run_cli(["domains", "match", short])
    assert code == 1 and "too short to replay" in err and len(err.strip().splitlines()) == 1


def test_ranking_by_mean_or_median(cheetah_morph):
    ms = match_domains(cheetah_morph, ["halfcheetah", "halfcheetah-gravity-2.0", "halfcheetah-morph-otdf"],
                       by="median")
    assert ms[0].domain == "halfcheetah-morph-otdf"
    assert [m.median_gap for m in ms] == sorted(m.median_gap for m in ms)
    with pytest.raises(ConfigError, match="by must be"):
        match_domains(cheetah_morph, by="max")
