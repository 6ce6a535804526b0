"""The Ray engine on a local cluster: equal to the local engine bitwise, every row once, resume, retry, errors."""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from xcurate.datasets.io import save_dataset
from xcurate.datasets.synthetic import planted_shift
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring import engine as eng
from xcurate.scoring import store as store_mod
from xcurate.scoring.base import Scorer, make_scorer
from xcurate.scoring.scorer_knn import KNNScorer
from xcurate.scoring.store import Store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> tuple[TransitionDataset, TransitionDataset]:
    target, source = planted_shift(n_target=200, n_source=1200, seed=2)
    source.observations[7, 1] = np.nan  # one non-finite row: NULL scores under both engines
    return target, source


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xcurate[ray]'); "
                              "the Ray engine tests are skipped")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test scorers travel by value
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@dataclass
class SmallKNN(KNNScorer):
    chunk_size: ClassVar[int] = 250


@dataclass
class LoggingKNN(SmallKNN):
    """Writes the transition ids of every score() call to its own file (calls happen in workers)."""

    log_dir: ClassVar[str] = ""

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        np.save(Path(self.log_dir) / f"{uuid.uuid4().hex}.npy", chunk.transition_ids)
        return super().score(chunk)


@dataclass
class CrashOnceKNN(SmallKNN):
    """Kills its worker process the first time it scores the chunk holding ``victim`` (then behaves)."""

    marker: ClassVar[str] = ""
    victim: ClassVar[int] = 0

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        if self.victim in set(chunk.transition_ids.tolist()):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)  # the worker dies mid-chunk
        return super().score(chunk)


def _tables(st: Store, rid: str) -> tuple:
    rdir = st.dir / "runs" / rid
    hold = rdir / "holdout.parquet"
    return pq.read_table(rdir / "scores.parquet"), pq.read_table(hold) if hold.exists() else None


@pytest.mark.parametrize("name", ["knn", "ot"])
def test_ray_equals_local_bitwise(tmp_path, data, ray_cluster, name):
    target, source = data

    def scorer() -> Scorer:
        return SmallKNN() if name == "knn" else make_scorer("ot", chunk=300)

    local = Store.create(tmp_path / "local", source, target)
    rid_l = local.run(scorer(), progress=False, holdout=0.2)
    remote = Store.create(tmp_path / "ray", source, target)
    rid_r = remote.run(scorer(), progress=False, holdout=0.2, engine="ray", workers=2)
    assert rid_l == rid_r  # the engine is not part of the run id
    (sl, hl), (sr, hr) = _tables(local, rid_l), _tables(remote, rid_r)
    assert sr.equals(sl) and hr.equals(hl)  # bitwise: same values, same NULLs, same order
    assert sr.column(1).null_count == 1
    m = json.loads((remote.dir / "runs" / rid_r / "manifest.json").read_text())
    assert m["engine"]["kind"] == "ray" and m["engine"]["workers"] == 2 and m["n_chunks"] > 2
    assert not (remote.dir / "runs" / rid_r / "inputs").exists()  # chunk inputs removed when complete


def test_every_row_is_scored_exactly_once(tmp_path, data, ray_cluster):
    target, source = data
    log = tmp_path / "log"
    log.mkdir()
    LoggingKNN.log_dir = str(log)
    st = Store.create(tmp_path / "s", source, target)
    st.run(LoggingKNN(), progress=False, engine="ray")
    seen = np.concatenate([np.load(p) for p in sorted(log.glob("*.npy"))])
    finite = np.flatnonzero(source.finite_mask())
    assert len(seen) == len(finite)  # no row scored twice
    assert np.array_equal(np.sort(seen), np.sort(source.transition_ids[finite]))  # and none missed


def test_killed_driver_resumes_and_matches(tmp_path, data, ray_cluster, monkeypatch):
    target, source = data
    ref = Store.create(tmp_path / "ref", source, target)
    ref_tab, _ = _tables(ref, ref.run(SmallKNN(), progress=False))

    st = Store.create(tmp_path / "s", source, target)
    calls = {"n": 0}
    real_advance = store_mod._Progress.advance

    def advance(self, n):  # the driver is interrupted (Ctrl-C / kill) after two chunks came back
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("simulated kill of the driver")
        real_advance(self, n)

    monkeypatch.setattr(store_mod._Progress, "advance", advance)
    with pytest.raises(KeyboardInterrupt):
        st.run(SmallKNN(), progress=False, engine="ray", workers=1)
    monkeypatch.setattr(store_mod._Progress, "advance", real_advance)
    rid = st.run_id(SmallKNN())
    kept = sorted((st.dir / "runs" / rid / "chunks").glob("part-*.parquet"))
    assert 2 <= len(kept) < 5
    assert st.run(SmallKNN(), progress=False, engine="ray", workers=2) == rid
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m["status"] == "complete" and m["sessions"] == 2 and m["reused_chunks"] == len(kept)
    got, _ = _tables(st, rid)
    assert got.equals(ref_tab)


def test_a_failed_workers_chunk_is_retried(tmp_path, data, ray_cluster):
    target, source = data
    ref = Store.create(tmp_path / "ref", source, target)
    ref_tab, _ = _tables(ref, ref.run(SmallKNN(), progress=False))
    CrashOnceKNN.marker = str(tmp_path / "crashed")
    CrashOnceKNN.victim = int(source.transition_ids[100])
    st = Store.create(tmp_path / "s", source, target)
    rid = st.run(CrashOnceKNN(), progress=False, engine="ray", workers=2)
    assert Path(CrashOnceKNN.marker).exists()  # a worker really died on that chunk
    got, _ = _tables(st, rid)
    assert got.equals(ref_tab)  # Ray's max_retries re-ran the chunk


def test_store_invisible_to_workers_is_refused_before_scoring(tmp_path, data, ray_cluster, monkeypatch):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    # the workers are told another path, as a node whose disk does not hold the store would see it
    monkeypatch.setattr(eng, "_worker_path", lambda p: str(tmp_path / "elsewhere" / p.name))
    with pytest.raises(ConfigError, match=r"--store .*not visible from Ray node"):
        st.run(SmallKNN(), progress=False, engine="ray")
    assert not (st.dir / "runs").exists()  # nothing was scored or written
    assert not list(st.dir.glob(".xcurate-visible-*"))


def test_ray_engine_errors(tmp_path, data, ray_cluster, run_cli, capsys):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    with pytest.raises(ConfigError, match="--workers must be >= 1"):
        st.run(SmallKNN(), progress=False, engine="ray", workers=0)
    with pytest.raises(ConfigError, match=r"--address 127\.0\.0\.1:9: no Ray cluster reachable"):
        st.run(SmallKNN(), progress=False, engine="ray", address="127.0.0.1:9")
    with pytest.raises(ConfigError, match="--device cuda: the Ray cluster has no GPUs"):
        st.run(make_scorer("ot", chunk=300, device="cuda"), progress=False, engine="ray")
    with pytest.raises(ConfigError, match="--engine must be one of"):
        st.run(SmallKNN(), progress=False, engine="spark")
    save_dataset(source.select(source.finite_mask()), tmp_path / "src.parquet")
    save_dataset(target, tmp_path / "tgt.parquet")
    capsys.readouterr()  # drop the warnings of the runs above
    base = ["score", "--source", tmp_path / "src.parquet", "--target", tmp_path / "tgt.parquet",
            "--scorers", "knn", "--store", tmp_path / "cli", "--no-progress"]
    for extra, msg in ((["--engine", "ray", "--workers", "0"], "--workers must be >= 1"),
                       (["--engine", "ray", "--address", "127.0.0.1:9"], "--address 127.0.0.1:9"),
                       (["--workers", "2"], "need --engine ray")):
        code, _, err = run_cli([*base, *extra])
        assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and msg in err, err
    code, out, err = run_cli([*base, "--engine", "ray", "--workers", "2"])  # reuses the test's Ray
    assert code == 0, err
    m = [m for m in Store(tmp_path / "cli").manifests() if m["scorer"] == "knn"][0]
    assert m["engine"]["kind"] == "ray" and m["status"] == "complete"


def test_engine_ray_without_ray_says_how_to_install(tmp_path, data, run_cli, monkeypatch):
    target, source = data
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    save_dataset(source.select(source.finite_mask()), tmp_path / "src.parquet")
    save_dataset(target, tmp_path / "tgt.parquet")
    code, _, err = run_cli(["score", "--source", tmp_path / "src.parquet", "--target", tmp_path / "tgt.parquet",
                            "--scorers", "knn", "--store", tmp_path / "st", "--engine", "ray"])
    assert code == 1 and err.count("\n") == 1
    assert "pip install 'ray>=2.40' (xcurate's ray extra)" in err
    assert not (tmp_path / "st").exists()  # refused before the store was created


_KILLED_DRIVER = r"""
import sys, time
from dataclasses import dataclass
from typing import ClassVar
import ray, torch
from xcurate.scoring.scorer_knn import KNNScorer
from xcurate.scoring.store import Store

torch.set_num_threads(1)


@dataclass
class SmallKNN(KNNScorer):  # same name, settings and chunk size as the test's SmallKNN: the same run id
    chunk_size: ClassVar[int] = 250

    def score(self, chunk):
        time.sleep(1.0)  # slow enough to be killed mid-run
        return super().score(chunk)


ray.init(address=sys.argv[2], log_to_driver=False, configure_logging=False)
Store(sys.argv[1]).run(SmallKNN(), progress=False, engine="ray", workers=1)
"""


def test_sigkilled_driver_resumes(tmp_path, data, ray_cluster):
    """SIGKILL a driver (another process on the same cluster) mid-run; a new driver finishes the run."""
    import signal
    import subprocess
    import time

    target, source = data
    ref = Store.create(tmp_path / "ref", source, target)
    ref_tab, _ = _tables(ref, ref.run(SmallKNN(), progress=False))
    st = Store.create(tmp_path / "s", source, target)
    rid = st.run_id(SmallKNN())
    script = tmp_path / "driver.py"
    script.write_text(_KILLED_DRIVER)
    gcs = ray_cluster.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, str(script), str(st.dir), gcs], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cdir = st.dir / "runs" / rid / "chunks"
    deadline = time.time() + 90  # generous: the child imports torch and connects to Ray first
    while time.time() < deadline and len(list(cdir.glob("part-*.parquet"))) < 2 and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    kept = len(list(cdir.glob("part-*.parquet")))
    assert 2 <= kept < 5
    assert st.run(SmallKNN(), progress=False, engine="ray", workers=2) == rid  # the dead holder's lock is free
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m["status"] == "complete" and m["sessions"] == 2 and m["reused_chunks"] >= kept
    got, _ = _tables(st, rid)
    assert got.equals(ref_tab)
