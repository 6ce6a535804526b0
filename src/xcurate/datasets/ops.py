"""Dataset operations: combine several datasets into one, split by episodes, sample.

INTERFACE:

    combine(parts, metadata=None) -> TransitionDataset       # renumbered ids, provenance per row
    split(ds, fractions=None, counts=None, seed=0) -> list[TransitionDataset]   # by episodes
    sample(ds, n=None, fraction=None, unit="transitions", seed=0) -> TransitionDataset
    provenance_labels(ds, key) -> (N,) object array          # per-row domain / policy / quality / source
    combine_files / split_file / sample_file                 # the same from and to files (atomic, manifests)

Provenance. :func:`combine` adds the numeric extra column ``part`` (int32: which input a row came
from) and records one entry per input in ``metadata["parts"]`` (``part``, ``source``, ``domain``,
``policy``, ``quality``, ``transitions``, ``episodes``, ``fingerprint``). Dataset files store
numeric extras only, so the text labels live in that table; :func:`provenance_labels` expands them
per row and the score store writes them as the columns ``part``, ``domain``, ``policy`` and
``quality`` of its ``transitions`` and ``scores`` views (SQL: ``WHERE domain = 'hopper'``). The
row-level quality labels also go to ``metadata["quality_ranges"]`` (transition-id ranges), which
:meth:`TransitionDataset.quality_labels` already reads. Combining a combined dataset flattens
its parts (the provenance of every row is kept).

Unlike Minari's ``combine``, inputs may come from different dynamics (that is the data-lake
case); only the observation and action dims must agree. Inputs whose ``qpos``/``qvel`` widths
differ are combined without them (``metadata["combine_dropped"]`` says so).

:func:`split` and :func:`sample` keep the transition and episode ids (score tables still join on
them) and the metadata; they are seeded and deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError

#: Labels of each part recorded in ``metadata["parts"]`` and exposed per row by the store.
PROVENANCE_KEYS = ("domain", "policy", "quality")
#: Name of the extra column that holds each row's part index.
PART_COLUMN = "part"
#: Units of :func:`sample`.
SAMPLE_UNITS = ("transitions", "episodes")


# ============================================================================================ combine


def _part_entries(ds: TransitionDataset) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The parts of one input (one entry, or its own parts when it is a combination) and each row's."""
    parts = ds.metadata.get("parts")
    if (isinstance(parts, list) and parts and all(isinstance(p, dict) for p in parts)
            and PART_COLUMN in ds.extras):
        return [dict(p) for p in parts], np.asarray(ds.extras[PART_COLUMN], np.int64)
    entry = {"source": ds.source, "transitions": len(ds), "episodes": ds.n_episodes,
             "fingerprint": ds.fingerprint()}
    for k in PROVENANCE_KEYS:
        v = ds.metadata.get(k)
        entry[k] = None if v is None else str(v)
    labels = {str(q) for q in ds.quality_labels() if q is not None}
    if len(labels) > 1:  # e.g. a medium-expert concatenation: the per-row labels are kept below
        entry["quality"] = "+".join(sorted(labels))
    return [entry], np.zeros(len(ds), np.int64)


def _common(values: list[Any]) -> Any:
    vals = {v for v in values if v is not None}
    if not vals:
        return None
    return vals.pop() if len(vals) == 1 else "mixed"


def _ranges(ids: np.ndarray, labels: np.ndarray) -> list[list[Any]]:
    """``[[first_id, end_id, label], ...]`` runs of equal labels over consecutive ids (None skipped)."""
    out: list[list[Any]] = []
    for tid, lab in zip(ids.tolist(), labels.tolist(), strict=True):
        if lab is None:
            continue
        if out and out[-1][2] == lab and out[-1][1] == tid:
            out[-1][1] = tid + 1
        else:
            out.append([tid, tid + 1, str(lab)])
    return out


def combine(parts: Sequence[TransitionDataset], metadata: dict[str, Any] | None = None) -> TransitionDataset:
    """Concatenate datasets (any dynamics) with renumbered ids and per-row provenance.

    Args:
        parts: two or more datasets with equal observation and action dims.
        metadata: extra metadata of the result (merged over the computed one).

    Returns:
        The combination: transition ids ``0..N-1``, episode ids renumbered part by part, the
        extra column ``part`` and ``metadata["parts"]`` (see the module docstring). Extras kept
        are those every input has.

    Raises:
        DataError: fewer than one input, or inputs with different obs/act dims (naming both).
    """
    parts = list(parts)
    if not parts:
        raise DataError("combine: no datasets given")
    first = parts[0]
    for p in parts[1:]:
        if p.obs_dim != first.obs_dim or p.act_dim != first.act_dim:
            raise DataError(f"combine: {p.source} has obs/act dims ({p.obs_dim}, {p.act_dim}) but "
                            f"{first.source} has ({first.obs_dim}, {first.act_dim})")
    entries: list[dict[str, Any]] = []
    part_col, quality = [], []
    clean = []
    for p in parts:
        ents, rows = _part_entries(p)
        part_col.append(rows + len(entries))
        entries.extend(ents)
        q = p.quality_labels()
        if all(v is None for v in q):  # a part without labels: its entry's label (if any) per row
            q = np.array([ents[r].get("quality") for r in rows], dtype=object)
        quality.append(q)
        extras = {k: v for k, v in p.extras.items() if k != PART_COLUMN}
        clean.append(TransitionDataset(
            observations=p.observations, actions=p.actions, rewards=p.rewards,
            next_observations=p.next_observations, terminals=p.terminals, timeouts=p.timeouts,
            episode_ids=p.episode_ids, steps=p.steps, transition_ids=p.transition_ids,
            qpos=p.qpos, qvel=p.qvel, extras=extras, metadata={}, source=p.source))
    for i, e in enumerate(entries):
        e["part"] = i
    dropped: list[str] = []
    if all(p.has_state for p in clean):
        if len({p.qpos.shape[1] for p in clean}) > 1 or len({p.qvel.shape[1] for p in clean}) > 1:
            for p in clean:
                p.qpos = p.qvel = None
            dropped = ["qpos", "qvel"]
    meta: dict[str, Any] = {
        "combined": True, "parts": entries,
        **{k: _common([e.get(k) for e in entries]) for k in PROVENANCE_KEYS},
        "domains": sorted({str(e["domain"]) for e in entries if e.get("domain") is not None}),
    }
    obs_space = {p.metadata.get("robot") for p in parts} - {None}
    if len(obs_space) == 1:
        meta["robot"] = obs_space.pop()
    if dropped:
        meta["combine_dropped"] = dropped
    meta.update(metadata or {})
    out = TransitionDataset.concat(clean, renumber=True, metadata={**meta, "quality_ranges": []})
    labels = np.concatenate(quality)
    ranges = _ranges(out.transition_ids, labels)
    if ranges:
        out.metadata["quality_ranges"] = ranges
    else:
        out.metadata.pop("quality_ranges")
    out.extras[PART_COLUMN] = np.concatenate(part_col).astype(np.int32)
    out.source = "combine(" + ", ".join(p.source for p in parts) + ")"
    return out.validate()


def provenance_labels(ds: TransitionDataset, key: str) -> np.ndarray | None:
    """(N,) object array of each row's ``key`` (``domain``, ``policy``, ``quality``, ``source``).

    ``quality`` comes from :meth:`TransitionDataset.quality_labels`; the others from
    ``metadata["parts"]`` through the ``part`` column. None when the dataset has no such
    provenance (not a combination).
    """
    if key == "quality":
        return ds.quality_labels()
    parts = ds.metadata.get("parts")
    if PART_COLUMN not in ds.extras or not isinstance(parts, list) or not parts:
        return None
    if not all(isinstance(p, dict) for p in parts):
        return None
    table = {int(p.get("part", i)): p.get(key) for i, p in enumerate(parts)}
    idx = np.asarray(ds.extras[PART_COLUMN], np.int64)
    return np.array([None if table.get(int(i)) is None else str(table[int(i)]) for i in idx], dtype=object)


# ============================================================================================ split / sample


def _episode_index(ds: TransitionDataset) -> tuple[np.ndarray, np.ndarray]:
    """(unique episode ids in order of first appearance, each row's position in that list)."""
    uniq, first, inv = np.unique(ds.episode_ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inv]


def _alloc(total: int, fractions: Sequence[float]) -> list[int]:
    """Integer counts summing to ``total`` in proportion to ``fractions`` (largest remainder)."""
    raw = np.asarray(fractions, np.float64) * total
    base = np.floor(raw).astype(int)
    rest = total - int(base.sum())
    for i in np.argsort(-(raw - base), kind="stable")[:rest]:
        base[i] += 1
    return base.tolist()


def split(ds: TransitionDataset, fractions: Sequence[float] | None = None,
          counts: Sequence[int] | None = None, seed: int = 0) -> list[TransitionDataset]:
    """Split a dataset into disjoint parts by whole episodes (seeded shuffle of the episodes).

    Args:
        ds: the dataset.
        fractions: fractions of the episodes per part, each in (0, 1], summing to 1.
        counts: numbers of episodes per part (sum <= the number of episodes; the rest is left out).
        seed: seed of the episode shuffle.

    Returns:
        One dataset per fraction/count; rows keep their original order, ids and metadata
        (plus ``metadata["split"]``).

    Raises:
        ConfigError: neither or both of fractions/counts, bad values, or a part with no episode.
    """
    if (fractions is None) == (counts is None):
        raise ConfigError("split: give exactly one of fractions or counts")
    eps, row_ep = _episode_index(ds)
    n_ep = len(eps)
    if fractions is not None:
        fr = [float(f) for f in fractions]
        if len(fr) < 2 or any(not 0 < f <= 1 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"split: fractions must be >= 2 values in (0, 1] summing to 1, got {fr}")
        sizes = _alloc(n_ep, fr)
        what = f"fractions {fr}"
    else:
        sizes = [int(c) for c in counts]
        if not sizes or any(c <= 0 for c in sizes):
            raise ConfigError(f"split: counts must be positive episode counts, got {sizes}")
        if sum(sizes) > n_ep:
            raise ConfigError(f"split: counts {sizes} ask for {sum(sizes)} episodes but {ds.source} has {n_ep}")
        what = f"counts {sizes}"
    if any(s == 0 for s in sizes):
        raise ConfigError(f"split: {what} leave a part without episodes ({ds.source} has {n_ep} episodes)")
    perm = np.random.default_rng(seed).permutation(n_ep)
    out, start = [], 0
    for i, s in enumerate(sizes):
        chosen = np.zeros(n_ep, bool)
        chosen[perm[start:start + s]] = True
        start += s
        sub = ds.select(chosen[row_ep])
        sub.metadata = {**ds.metadata, "split": {"part": i, "of": len(sizes), "episodes": s, "seed": seed,
                                                  **({"fractions": list(fractions)} if fractions is not None
                                                     else {"counts": sizes})}}
        out.append(sub)
    return out


def sample(ds: TransitionDataset, n: int | None = None, fraction: float | None = None,
           unit: str = "transitions", seed: int = 0) -> TransitionDataset:
    """A seeded uniform sample (without replacement) of transitions or whole episodes.

    Args:
        ds: the dataset.
        n: how many transitions/episodes.
        fraction: or which fraction of them, in (0, 1] (rounded to the nearest count, at least 1).
        unit: ``transitions`` or ``episodes``.
        seed: the sampling seed.

    Returns:
        The sampled rows in their original order with their ids and metadata (plus
        ``metadata["sample"]``).

    Raises:
        ConfigError: neither or both of n/fraction, a bad unit, or n larger than available.
    """
    if unit not in SAMPLE_UNITS:
        raise ConfigError(f"sample: unit must be one of {', '.join(SAMPLE_UNITS)}, got {unit!r}")
    if (n is None) == (fraction is None):
        raise ConfigError("sample: give exactly one of n or fraction")
    eps, row_ep = _episode_index(ds)
    total = len(ds) if unit == "transitions" else len(eps)
    if fraction is not None:
        if not 0 < float(fraction) <= 1:
            raise ConfigError(f"sample: fraction must be in (0, 1], got {fraction}")
        k = max(1, int(round(float(fraction) * total)))
    else:
        k = int(n)
        if k <= 0:
            raise ConfigError(f"sample: n must be positive, got {n}")
        if k > total:
            raise ConfigError(f"sample: n={k} {unit} requested but {ds.source} has {total}")
    pick = np.zeros(total, bool)
    pick[np.random.default_rng(seed).choice(total, size=k, replace=False)] = True
    mask = pick if unit == "transitions" else pick[row_ep]
    sub = ds.select(mask)
    sub.metadata = {**ds.metadata, "sample": {"unit": unit, "n": k, "of": total, "seed": seed,
                                              **({"fraction": float(fraction)} if fraction is not None else {})}}
    return sub


# ============================================================================================ files


def output_exists(out: str | Path) -> Path | None:
    """The existing path that writing to ``out`` (a path, dataset id or minari:<id>) would replace."""
    from xcurate.datasets import ids
    from xcurate.datasets.io import minari_root

    s = str(out)
    if s.startswith("minari:"):
        p = minari_root() / s[len("minari:"):]
        return p if p.exists() else None
    p = Path(s).expanduser()
    if p.exists():
        return p
    if ids.ID_RE.match(s) and ids.dataset_path(s).exists():
        return ids.dataset_path(s)
    return None


def _check_outputs(outs: Sequence[str | Path], force: bool) -> None:
    if len({str(o) for o in outs}) != len(outs):
        raise ConfigError(f"output paths must differ, got {', '.join(map(str, outs))}")
    for o in outs:
        hit = output_exists(o)
        if hit is not None and not force:
            raise ConfigError(f"{hit} exists; pass --force (force=True) to overwrite it")


def _input_paths(specs: Sequence[str | Path]) -> dict[str, str]:
    from xcurate.datasets.io import _dataset_root_of, resolve_spec

    return {f"input{i}": str(_dataset_root_of(resolve_spec(s)).resolve()) for i, s in enumerate(specs)}


def combine_files(inputs: Sequence[str | Path], out: str | Path, format: str | None = None,
                  force: bool = False) -> tuple[TransitionDataset, Path]:
    """Load ``inputs``, :func:`combine` them and write the result atomically with a manifest.

    The manifest's ``inputs`` hold every input's path and sha256. Raises :class:`ConfigError`
    when ``out`` exists and ``force`` is False (nothing is read or written then).
    """
    from xcurate.datasets.io import load_dataset, save_dataset

    if len(inputs) < 2:
        raise ConfigError(f"combine needs at least two datasets, got {len(inputs)}")
    _check_outputs([out], force)
    t0 = time.perf_counter()
    ds = combine([load_dataset(s) for s in inputs])
    path = save_dataset(ds, out, format, inputs=_input_paths(inputs),
                        config={"command": "datasets combine", "inputs": [str(s) for s in inputs]},
                        timings={"combine_s": round(time.perf_counter() - t0, 4)})
    return ds, path


def split_file(src: str | Path, outs: Sequence[str | Path], fractions: Sequence[float] | None = None,
               counts: Sequence[int] | None = None, seed: int = 0, format: str | None = None,
               force: bool = False) -> list[tuple[TransitionDataset, Path]]:
    """:func:`split` a dataset file into ``outs`` (one per fraction/count), each with a manifest."""
    from xcurate.datasets.io import load_dataset, save_dataset

    k = len(fractions) if fractions is not None else len(counts or [])
    if len(outs) != k:
        raise ConfigError(f"split: {len(outs)} output(s) given for {k} part(s); give one --out per part")
    _check_outputs(outs, force)
    ds = load_dataset(src)
    parts = split(ds, fractions=fractions, counts=counts, seed=seed)
    return [(p, save_dataset(p, o, format, inputs=_input_paths([src]), seed=seed,
                             config={"command": "datasets split", "input": str(src), **p.metadata["split"]}))
            for p, o in zip(parts, outs, strict=True)]


def sample_file(src: str | Path, out: str | Path, n: int | None = None, fraction: float | None = None,
                unit: str = "transitions", seed: int = 0, format: str | None = None,
                force: bool = False) -> tuple[TransitionDataset, Path]:
    """:func:`sample` a dataset file and write the sample atomically with a manifest."""
    from xcurate.datasets.io import load_dataset, save_dataset

    _check_outputs([out], force)
    sub = sample(load_dataset(src), n=n, fraction=fraction, unit=unit, seed=seed)
    path = save_dataset(sub, out, format, inputs=_input_paths([src]), seed=seed,
                        config={"command": "datasets sample", "input": str(src), **sub.metadata["sample"]})
    return sub, path
