"""``xcurate policies train``: SB3 SAC in a domain, resumable, loadable as ``trained:DIR`` (tiny budgets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="policies train needs the [sb3] extra")

from xcurate.datasets.train_policy import (  # noqa: E402
    PolicyTrainConfig,
    checkpoint_dir,
    parse_budget,
    train_policy,
)
from xcurate.errors import ConfigError, DataError  # noqa: E402

DOMAIN = "hopper-friction-0.5"
TINY = ["--checkpoint-every", "100", "--learning-starts", "100", "--buffer-size", "2000", "--eval-episodes", "1"]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_train_load_collect_and_resume(tmp_path, run_cli):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "run"
    code, stdout, err = run_cli(["policies", "train", "--domain", DOMAIN, "--algo", "sac", "--steps", "200",
                                 "--out", out, *TINY])
    assert code == 0, err
    man = _manifest(out)
    assert man["status"] == "complete" and man["timesteps"] == 200 and man["domain"] == DOMAIN
    assert len(man["sessions"]) == 1 and man["evaluation"]["episodes"] == 1
    assert set(man["checkpoint"]) == {"dir", "model.zip", "replay_buffer.pkl"}
    assert [d.name for d in out.glob("checkpoint-*")] == ["checkpoint-0000000200"]  # older ones pruned
    # the policy id loads through the zoo reader (no unpickling) and acts like SB3's own model
    from stable_baselines3 import SAC

    from xcurate.datasets.policies import load_policy

    pol = load_policy(f"trained:{out}", DOMAIN)
    assert pol.robot == "hopper" and pol.info["kind"] == "trained"
    sb3 = SAC.load(str(out / "policy.zip"), device="cpu")  # our own file: trusted
    obs = np.random.default_rng(0).normal(size=(16, 11)).astype(np.float32)
    np.testing.assert_allclose(pol(obs), sb3.predict(obs, deterministic=True)[0], atol=1e-5)
    with pytest.raises(ConfigError, match="trained on hopper"):
        load_policy(f"trained:{out}", "walker2d")
    # collect accepts the policy id
    code, _, err = run_cli(["collect", "--domain", DOMAIN, "--policy", f"trained:{out}", "--transitions", "50",
                            "--out", tmp_path / "d.hdf5"])
    assert code == 0, err
    from xcurate.datasets.io import load_dataset

    assert len(load_dataset(tmp_path / "d.hdf5")) == 50
    # a larger --steps continues from the last checkpoint (total budget), keeping the replay buffer
    man2 = train_policy(PolicyTrainConfig(domain=DOMAIN, steps=300, checkpoint_every=100, learning_starts=100,
                                          buffer_size=2000, eval_episodes=0), out, log=None)
    assert man2["timesteps"] == 300 and [s["from_step"] for s in man2["sessions"]] == [0, 200]
    ck = checkpoint_dir(out)
    model = SAC.load(str(ck / "model.zip"), device="cpu")
    model.load_replay_buffer(str(ck / "replay_buffer.pkl"))
    assert model.num_timesteps == 300 and model.replay_buffer.size() == 300
    # other settings on the same run folder: one line, nothing changed
    with pytest.raises(ConfigError, match="other settings"):
        train_policy(PolicyTrainConfig(domain=DOMAIN, steps=400, seed=1, learning_starts=100, buffer_size=2000),
                     out, log=None)
    # a swapped checkpoint is refused (never unpickled)
    (ck / "replay_buffer.pkl").write_bytes(b"not mine")
    with pytest.raises(DataError, match="sha256 mismatch"):
        train_policy(PolicyTrainConfig(domain=DOMAIN, steps=400, checkpoint_every=100, learning_starts=100,
                                       buffer_size=2000), out, log=None)


def test_killed_run_resumes(tmp_path, run_cli):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from xcurate.cli import entry; entry()", "policies", "train", "--domain", DOMAIN,
           "--steps", "100000", "--out", str(out), *TINY]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            m = out / "manifest.json"
            if m.exists() and _manifest(out).get("timesteps", 0) >= 100:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint within 120 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _manifest(out)["timesteps"]
    assert _manifest(out)["status"] == "running" and 100 <= done < 100000
    # a checkpoint half-written when the kill came does not matter: the manifest names the last complete one
    (out / "checkpoint-9999999999").mkdir(exist_ok=True)
    (out / "checkpoint-9999999999" / "model.zip").write_bytes(b"partial")
    code, stdout, err = run_cli(["policies", "train", "--domain", DOMAIN, "--steps", str(done + 100), "--out", out,
                                 *TINY[:-2], "--eval-episodes", "0"])
    assert code == 0, err
    assert f"from step {done:,}" in stdout
    man = _manifest(out)
    assert man["status"] == "complete" and man["timesteps"] == done + 100
    assert [s["from_step"] for s in man["sessions"]] == [0, done]
    assert [d.name for d in out.glob("checkpoint-*")] == [f"checkpoint-{done + 100:010d}"]


def test_bad_input_one_line(tmp_path, run_cli):
    for args, needle in ((["--domain", "hopper-nope", "--steps", "100"], "unknown domain 'hopper-nope'"),
                         (["--domain", DOMAIN, "--steps", "0"], "--steps must be a positive"),
                         (["--domain", DOMAIN, "--steps", "abc"], "--steps must be a positive number"),
                         (["--domain", DOMAIN, "--steps", "-5"], "--steps must be a positive"),
                         (["--domain", DOMAIN, "--steps", "100", "--algo", "ppo"], "--algo must be one of sac, tqc"),
                         (["--domain", DOMAIN, "--steps", "100", "--warm-start", str(tmp_path / "x.zip")],
                          "--warm-start")):
        code, _, err = run_cli(["policies", "train", *args, "--out", tmp_path / "o"])
        assert code == 1, (args, err)
        assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1 and needle in err, (args, err)
    assert not (tmp_path / "o").exists()
    assert parse_budget("300k") == 300_000 and parse_budget("1e6") == 10**6 and parse_budget("1_000") == 1000
    with pytest.raises(ConfigError):
        parse_budget("1.5")


def test_warm_start_copies_zoo_weights(tmp_path, shared_dir):
    zoo = shared_dir / "policies" / "sb3-zoo" / "tqc" / "Hopper-v3_1" / "Hopper-v3.zip"
    if not zoo.is_file():
        pytest.skip(f"{zoo} is absent")
    pytest.importorskip("sb3_contrib")
    from xcurate.datasets.policies import load_policy

    out = tmp_path / "warm"
    man = train_policy(PolicyTrainConfig(domain=DOMAIN, algo="tqc", steps=50, checkpoint_every=50,
                                         learning_starts=50, buffer_size=500, eval_episodes=0,
                                         warm_start="tqc/Hopper-v3_1"), out, log=None)
    assert man["warm_start"]["copied"] > 0
    obs = np.random.default_rng(1).normal(size=(8, 11))
    # no gradient step happened (learning_starts = steps): the actor is the zoo's
    np.testing.assert_allclose(load_policy(f"trained:{out}", DOMAIN)(obs), load_policy(f"sb3:{zoo}", DOMAIN)(obs),
                               atol=1e-5)
    with pytest.raises(ConfigError, match="is a tqc agent but --algo is sac"):
        train_policy(PolicyTrainConfig(domain=DOMAIN, algo="sac", steps=10, warm_start=f"sb3:{zoo}"),
                     tmp_path / "x", log=None)
