"""Hostile and careless inputs through the CLI (issue 12): each must end with exit code 1, exactly
one ``error:`` line on stderr, no traceback, and leave every input unchanged.

The cases run in-process through :func:`xcurate.cli.main` (what the console script calls) on one
small world built once per module: hopper datasets of a few hundred random-policy transitions,
a score store with a kNN run, a curated file, a damaged store, a zoo zip with a malicious
``policy.pth`` and a Minari folder outside the Minari root.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

WORLD_FILES = ("src.parquet", "tgt.hdf5", "keep.hdf5", "curated.parquet")


def _tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (by relative path)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class _Evil:
    """Pickles to a call of ``os.system``: torch's weights-only reader must refuse it."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Build the inputs once: datasets, a store with a kNN run, damaged copies, a bad zoo zip."""
    import h5py
    import torch

    from xcurate.curate.recipes import curate_to_file
    from xcurate.datasets.collect import collect
    from xcurate.datasets.io import save_dataset
    from xcurate.scoring.store import score_datasets

    w = tmp_path_factory.mktemp("world")
    src = collect("hopper", "random", 300, seed=0, progress=False, quality="random")
    tgt = collect("hopper-friction-0.5", "random", 200, seed=1, progress=False, quality="random")
    save_dataset(src, w / "src.parquet")
    save_dataset(tgt, w / "tgt.hdf5")
    save_dataset(tgt, w / "keep.hdf5")
    store = score_datasets(w / "src.parquet", w / "tgt.hdf5", ["knn"], w / "store", settings={"knn": {"k": 2}})
    curate_to_file(store, "none", w / "curated.parquet")
    store.close()
    # damaged stores: a truncated source table, a truncated score file
    for name in ("bad_transitions", "bad_scores"):
        shutil.copytree(w / "store", w / name)
    p = w / "bad_transitions" / "transitions.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    for p in (w / "bad_scores" / "runs").glob("*/scores.parquet"):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    # a dataset with act_dim = 0 (D4RL layout, written by hand: xcurate refuses to write it)
    n = 20
    with h5py.File(w / "noact.hdf5", "w") as f:
        f["observations"] = np.zeros((n, 3), np.float32)
        f["next_observations"] = np.zeros((n, 3), np.float32)
        f["actions"] = np.zeros((n, 0), np.float32)
        f["rewards"] = np.zeros(n, np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = np.r_[np.zeros(n - 1, bool), True]
    # a zoo zip whose policy.pth would run code when unpickled without weights_only
    buf = io.BytesIO()
    torch.save({"mlp_extractor.policy_net.0.weight": _Evil()}, buf)
    with zipfile.ZipFile(w / "evil.zip", "w") as z:
        z.writestr("data", json.dumps({"policy_class": {":type:": "<class 'abc.ABCMeta'>"}}))
        z.writestr("policy.pth", buf.getvalue())
    # a Minari root, and a Minari dataset folder beside it (outside the root)
    (w / "minari_root").mkdir()
    save_dataset(tgt, w / "evil", "minari")
    # a folder whose name holds Rich markup
    (w / "e[red]x").mkdir()
    save_dataset(tgt, w / "e[red]x" / "s.hdf5")
    return w


def _score_with(setting: str) -> Callable[[Path, Path], list]:
    """``score`` of the setting's scorer with one ``--set``, into a new store."""
    return lambda W, T: ["score", "--source", W / "src.parquet", "--target", W / "tgt.hdf5", "--scorers",
                         setting.split(".")[0], "--set", setting, "--no-progress", "--device", "cpu",
                         "--store", T / "newstore"]


def _train_with(setting: str) -> Callable[[Path, Path], list]:
    """A 20-update ``train`` run with one IQLConfig ``--set``."""
    return lambda W, T: ["train", "--target", W / "tgt.hdf5", "--domain", "hopper-friction-0.5", "--steps", "20",
                         "--eval-episodes", "0", "--no-progress", "--set", setting, "--out", T / "run"]


# Each case: (id, args built from the world path W and a scratch path T, paths that must not exist after).
CASES: list[tuple[str, Callable[[Path, Path], list[str]], Callable[[Path, Path], list[Path]]]] = [
    # --- read-only SQL
    ("query-copy-to", lambda W, T: ["query", f"COPY (SELECT 1 AS x) TO '{W}/store/transitions.parquet' "
                                    "(FORMAT parquet)", "--store", W / "store"], lambda W, T: []),
    ("query-attach", lambda W, T: ["query", f"ATTACH '{T}/x.duckdb'", "--store", W / "store"],
     lambda W, T: [T / "x.duckdb"]),
    ("query-read-csv", lambda W, T: ["query", "SELECT * FROM read_csv('/etc/passwd')", "--store", W / "store"],
     lambda W, T: []),
    ("query-read-outside-store", lambda W, T: ["query", f"SELECT count(*) FROM read_parquet('{W}/src.parquet')",
                                               "--store", W / "store"], lambda W, T: []),
    ("query-two-statements", lambda W, T: ["query", "SELECT 1; SELECT 2", "--store", W / "store"], lambda W, T: []),
    ("query-set", lambda W, T: ["query", "SET threads = 1", "--store", W / "store"],
     lambda W, T: []),
    ("curate-where-widens", lambda W, T: ["curate", "--store", W / "store", "--recipe", "sql", "--where",
                                          "true) OR (1=1", "--out", T / "c.parquet"], lambda W, T: [T / "c.parquet"]),
    # --- Rich markup in user strings
    ("info-markup-path", lambda W, T: ["datasets", "info", "x[/]y.hdf5"], lambda W, T: []),
    ("query-markup-store", lambda W, T: ["query", "SELECT 1", "--store", "st[/]x"], lambda W, T: []),
    ("convert-markup-missing", lambda W, T: ["datasets", "convert", "e[/red]x/s.hdf5", T / "o.parquet"],
     lambda W, T: [T / "o.parquet"]),
    # --- unwritable or invalid outputs, checked before the work
    ("curate-out-proc", lambda W, T: ["curate", "--store", W / "store", "--recipe", "none", "--out",
                                      "/proc/x.parquet"], lambda W, T: []),
    ("collect-out-below-file", lambda W, T: ["collect", "--domain", "hopper", "--policy", "random", "-n", "50",
                                             "--no-progress", "--out", W / "src.parquet" / "x.hdf5"],
     lambda W, T: []),
    ("convert-out-proc", lambda W, T: ["datasets", "convert", W / "src.parquet", "/proc/x.parquet"],
     lambda W, T: []),
    ("diagnose-out-proc", lambda W, T: ["diagnose", "--store", W / "store", "--against", "episode_return",
                                        "--out", "/proc/report"], lambda W, T: []),
    ("query-csv-out-proc", lambda W, T: ["query", "SELECT 1 AS x", "--store", W / "store", "--format", "csv",
                                         "--out", "/proc/x.csv"], lambda W, T: []),
    ("score-store-proc", lambda W, T: ["score", "--source", W / "src.parquet", "--target", W / "tgt.hdf5",
                                       "--scorers", "knn", "--no-progress", "--store", "/proc/st"], lambda W, T: []),
    ("train-out-proc", lambda W, T: ["train", "--target", W / "tgt.hdf5", "--domain", "hopper-friction-0.5",
                                     "--steps", "20", "--eval-episodes", "0", "--no-progress", "--out", "/proc/run"],
     lambda W, T: []),
    ("train-out-is-file", lambda W, T: ["train", "--target", W / "tgt.hdf5", "--domain", "hopper-friction-0.5",
                                        "--steps", "20", "--eval-episodes", "0", "--no-progress",
                                        "--out", W / "curated.parquet"], lambda W, T: []),
    # --- wrong-typed or out-of-range scorer settings
    *[(f"score-set-{s}", _score_with(s), lambda W, T: [T / "newstore"])
      for s in ("ot.eps=abc", "knn.k=abc", "contrastive.lr=abc", "ot.chunk=abc", "contrastive.steps=-1",
                "knn.k=1.5")],
    # --- invalid training settings
    *[(f"train-set-actor_lr={v}", _train_with(f"actor_lr={v}"), lambda W, T: [T / "run"])
      for v in ("nan", "inf", "-1")],
    ("train-eval-every-negative", lambda W, T: ["train", "--target", W / "tgt.hdf5", "--domain",
                                                "hopper-friction-0.5", "--steps", "20", "--eval-every", "-1",
                                                "--eval-episodes", "1", "--eval-max-steps", "5", "--no-progress",
                                                "--out", T / "run"], lambda W, T: [T / "run"]),
    # --- a damaged store
    ("query-truncated-transitions", lambda W, T: ["query", "SELECT count(*) FROM transitions", "--store",
                                                  W / "bad_transitions"], lambda W, T: []),
    ("curate-truncated-transitions", lambda W, T: ["curate", "--store", W / "bad_transitions", "--recipe", "none",
                                                   "--out", T / "c.parquet"], lambda W, T: [T / "c.parquet"]),
    ("query-truncated-scores", lambda W, T: ["query", "SELECT count(*) FROM knn", "--store", W / "bad_scores"],
     lambda W, T: []),
    # --- untrusted torch weights
    ("policy-evil-weights", lambda W, T: ["policies", "evaluate", f"sb3:sac:{W}/evil.zip", "--domain", "hopper",
                                          "--episodes", "1"], lambda W, T: []),
    # --- nothing overwritten, nothing outside its place
    ("collect-existing", lambda W, T: ["collect", "--domain", "hopper", "--policy", "random", "-n", "50",
                                       "--no-progress", "--out", W / "keep.hdf5"], lambda W, T: []),
    ("convert-existing", lambda W, T: ["datasets", "convert", W / "src.parquet", W / "keep.hdf5"], lambda W, T: []),
    ("curate-existing", lambda W, T: ["curate", "--store", W / "store", "--recipe", "none",
                                      "--out", W / "curated.parquet"], lambda W, T: []),
    ("minari-load-escape", lambda W, T: ["datasets", "info", "minari:../evil"], lambda W, T: []),
    ("minari-save-escape", lambda W, T: ["curate", "--store", W / "store", "--recipe", "none",
                                         "--out", "minari:../escaped-v0"], lambda W, T: [W / "escaped-v0"]),
    ("info-act-dim-0", lambda W, T: ["datasets", "info", W / "noact.hdf5"], lambda W, T: []),
    ("collect-no-extension", lambda W, T: ["collect", "--domain", "hopper", "--policy", "random", "-n", "50",
                                           "--no-progress", "--out", T / "noext"], lambda W, T: [T / "noext"]),
]


@pytest.mark.parametrize("args,absent", [pytest.param(a, b, id=i) for i, a, b in CASES])
def test_hostile_input_one_error_line(world, tmp_path, monkeypatch, capsys, args, absent):
    from xcurate.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(world / "minari_root"))
    monkeypatch.chdir(world)  # relative paths (x[/]y.hdf5, st[/]x, e[/red]x/...) resolve in the world
    before = _tree_hash(world)
    code = main([str(a) for a in args(world, tmp_path)])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    assert "root:" not in out  # /etc/passwd was not printed
    assert "format='minari'" not in err and "weights_only" not in err  # options the user cannot pass
    assert _tree_hash(world) == before, "an input was changed"
    for p in absent(world, tmp_path):
        assert not p.exists(), f"{p} was written"


def test_refusals_say_why(world, monkeypatch, run_cli):
    """A sample of the messages: they name the reason, the file or the setting."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(world / "minari_root"))
    store = world / "store"
    cases = [
        (["query", f"COPY (SELECT 1) TO '{world}/x.parquet'", "--store", store], "only read-only SELECT/WITH"),
        (["query", "SELECT * FROM read_csv('/etc/passwd')", "--store", store], "disabled"),
        (["query", "SELECT 1; SELECT 2", "--store", store], "exactly one SQL statement"),
        (["query", "SELECT 1", "--store", world / "bad_transitions"], "transitions.parquet: damaged"),
        (["query", "SELECT 1", "--store", world / "bad_scores"], "scores.parquet: damaged"),
        (["collect", "--domain", "hopper", "--policy", "random", "-n", "5", "--out", world / "keep.hdf5"],
         "already exists; pass --force"),
        (["score", "--source", world / "src.parquet", "--target", world / "tgt.hdf5", "--scorers", "knn",
          "--set", "knn.k=1.5", "--store", world / "nope"], "knn.k must be an integer, got 1.5"),
        (["datasets", "info", world / "noact.hdf5"], "actions have dimension 0"),
        (["datasets", "info", "minari:../evil"], "Minari id must be a relative name"),
        (["policies", "evaluate", f"sb3:sac:{world}/evil.zip", "--domain", "hopper"], "objects other than tensors"),
        (["collect", "--domain", "hopper", "--policy", "random", "-n", "5", "--out", world / "noext"],
         "minari:<id>"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(args)
        assert code == 1 and needle in err, (args, err)
