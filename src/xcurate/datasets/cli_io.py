"""``xcurate datasets info|convert|list|show|combine|split|sample``: inspect, convert, combine datasets.

The ``datasets`` Typer group is created here (or reused if another module created it first);
other modules may add commands to it with :func:`datasets_group`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from xcurate.console import make_console


def datasets_group(app: typer.Typer) -> typer.Typer:
    """The ``datasets`` sub-app of ``app`` (created on first use, reused afterwards)."""
    for info in app.registered_groups:
        if info.name == "datasets" and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(name="datasets", help="Inspect, convert and list transition datasets.",
                      no_args_is_help=True)
    app.add_typer(sub, name="datasets")
    return sub


def _fmt_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _size_of(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0


def _short(v: Any, width: int = 80) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= width else s[: width - 3] + "..."


def _info_table(path: Path, fmt: str, summary: dict[str, Any], title: str) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    rows = [
        ("path", str(path)), ("format", fmt), ("size", _fmt_size(_size_of(path))),
        ("transitions", f"{summary['transitions']:,}"), ("episodes", f"{summary['episodes']:,}"),
        ("obs_dim / act_dim", f"{summary['obs_dim']} / {summary['act_dim']}"),
        ("terminals / timeouts", f"{summary['terminals']:,} / {summary['timeouts']:,}"),
        ("qpos/qvel", "yes" if summary["has_qpos_qvel"] else "no"),
        ("return (per episode)", f"{summary['return_mean']:.2f} ± {summary['return_std']:.2f}"),
        ("reward (per step)", f"{summary['reward_mean']:.4f}"),
        ("extra columns", ", ".join(summary["extras"]) or "-"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    for k, v in sorted(summary["metadata"].items()):
        t.add_row(f"metadata.{k}", _short(v))
    return t


def _format_label(path: Path) -> str:
    from xcurate.datasets.io import _dataset_root_of, detect_format, hdf5_layout

    fmt = detect_format(path)
    if fmt == "hdf5":
        fmt = f"hdf5 ({hdf5_layout(_dataset_root_of(path))} layout)"
    return fmt


def register(app: typer.Typer) -> None:
    """Add ``datasets info|convert|list|show|combine|split|sample`` to the main app."""
    group = datasets_group(app)

    @group.command("info")
    def info(spec: str = typer.Argument(..., help="A file, a Minari folder, a dataset id or minari:<id>."),
             format: str | None = typer.Option(None, "--format", "-f",
                                               help="Force the input format (hdf5|parquet|minari|cs285)."),
             as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
             ) -> None:
        """Summarise a dataset: sizes, dims, terminals/timeouts, returns, metadata."""
        from xcurate.datasets.io import load_dataset, resolve_spec

        path = resolve_spec(spec)
        ds = load_dataset(spec, format)
        summary = ds.summary()
        label = format or _format_label(path)
        if as_json:
            typer.echo(json.dumps({**summary, "format": label}, default=str, indent=2))
            return
        make_console().print(_info_table(path, label, summary, title=f"dataset {spec}"))

    @group.command("convert")
    def convert(src: str = typer.Argument(..., help="Input file, folder, dataset id or minari:<id>."),
                dst: str = typer.Argument(..., help="Output file (.hdf5/.parquet), folder, dataset id or "
                                                     "minari:<id>."),
                format: str | None = typer.Option(None, "--format", "-f",
                                                  help="Output format: hdf5|parquet|minari (default: from "
                                                       "the extension)."),
                in_format: str | None = typer.Option(None, "--in-format",
                                                     help="Force the input format (hdf5|parquet|minari|cs285)."),
                drop_nonfinite: bool = typer.Option(False, "--drop-nonfinite",
                                                    help="Drop NaN/Inf rows instead of failing."),
                keep_contact_dims: bool = typer.Option(False, "--keep-contact-dims",
                                                       help="Keep the 84 contact-force dims of 111-dim Ant data "
                                                            "(default: dropped when all zero, else refused)."),
                force: bool = typer.Option(False, "--force", help="Replace an existing dataset at DST."),
                ) -> None:
        """Convert a dataset between formats (lossless; writes a manifest with the input's hash)."""
        from xcurate.datasets.io import (
            check_dataset_output,
            load_dataset,
            manifest_path,
            resolve_spec,
            save_dataset,
        )

        t0 = time.perf_counter()
        in_path = resolve_spec(src)
        check_dataset_output(dst, format, force=force, what="DST")
        ds = load_dataset(src, in_format, on_nonfinite="drop" if drop_nonfinite else "error",
                          keep_contact_dims=keep_contact_dims)
        t1 = time.perf_counter()
        out = save_dataset(ds, dst, format, inputs={"input": str(in_path.resolve())},
                           config={"command": "datasets convert", "input": src, "output": dst,
                                   "in_format": in_format, "drop_nonfinite": drop_nonfinite,
                                   "read_s": round(t1 - t0, 4)})
        make_console().print(f"wrote {out} ({len(ds):,} transitions, {ds.n_episodes:,} episodes) in "
                      f"{time.perf_counter() - t0:.2f} s; manifest {manifest_path(out)}", highlight=False)

    @group.command("list")
    def list_(minari: bool = typer.Option(False, "--minari",
                                          help="Also list Minari datasets under $MINARI_DATASETS_PATH."),
              ) -> None:
        """List dataset ids under the data root ($XCURATE_DATA/datasets) with sizes.

        Transition and episode counts come from each dataset's manifest ('?' when it has none).
        """
        from xcurate.datasets import ids
        from xcurate.datasets.io import manifest_path, minari_root

        t = Table(title=f"datasets under {ids.datasets_root()}", title_justify="left")
        t.add_column("id", no_wrap=True)
        for c in ("size", "transitions", "episodes"):
            t.add_column(c, justify="right", no_wrap=True)
        n = 0
        rows: list[tuple[str, Path]] = [(i, ids.dataset_path(i)) for i in ids.list_ids()]
        if minari and minari_root().exists():
            for meta in sorted(minari_root().rglob("data/metadata.json")):
                folder = meta.parent.parent
                rows.append((f"minari:{folder.relative_to(minari_root())}", folder))
        for name, path in rows:
            m = manifest_path(path)
            man = json.loads(m.read_text()) if m.exists() else {}
            t.add_row(name, _fmt_size(_size_of(path.parent if path.name == "data.hdf5" else path)),
                      f"{man['transitions']:,}" if "transitions" in man else "?",
                      f"{man['episodes']:,}" if "episodes" in man else "?")
            n += 1
        if n == 0:
            make_console().print(f"no datasets under {ids.datasets_root()}", highlight=False)
            return
        make_console().print(t)

    @group.command("show")
    def show(dataset_id: str = typer.Argument(..., help="A dataset id (or path / minari:<id>)."),
             ) -> None:
        """Show a dataset's manifest (provenance) and summary."""
        from xcurate.datasets.io import load_dataset, read_manifest, resolve_spec

        path = resolve_spec(dataset_id)
        man = read_manifest(path)
        ds = load_dataset(dataset_id)
        make_console().print(_info_table(path, _format_label(path), ds.summary(), title=f"dataset {dataset_id}"))
        if man is None:
            make_console().print("no manifest", highlight=False)
            return
        t = Table(title="manifest", show_header=False, title_justify="left")
        t.add_column("field", style="bold")
        t.add_column("value")
        for k in ("kind", "created", "xcurate_version", "seed", "fingerprint"):
            t.add_row(k, str(man.get(k)))
        if ds.fingerprint() != man.get("fingerprint"):
            t.add_row("fingerprint check", Text("MISMATCH: data changed after the manifest was written", style="red"))
        else:
            t.add_row("fingerprint check", "ok")
        for name, inp in (man.get("inputs") or {}).items():
            t.add_row(f"input.{name}", f"{inp.get('path')} (sha256 {str(inp.get('sha256'))[:12]})")
        for k, v in sorted((man.get("config") or {}).items()):
            t.add_row(f"config.{k}", _short(v))
        for k, v in sorted((man.get("timings") or {}).items()):
            t.add_row(f"timing.{k}", f"{v}")
        make_console().print(t)


    @group.command("combine")
    def combine_cmd(inputs: list[str] = typer.Argument(..., help="Two or more datasets (files, ids, minari:<id>)."),
                    out: str = typer.Option(..., "--out", "-o", help="Output file (.hdf5/.parquet), folder, "
                                                                    "dataset id or minari:<id>."),
                    format: str | None = typer.Option(None, "--format", "-f",
                                                      help="Output format: hdf5|parquet|minari."),
                    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
                    ) -> None:
        """Combine datasets (any dynamics, same dims): new ids, per-row provenance (part, domain, policy, quality)."""
        from xcurate.datasets.io import manifest_path
        from xcurate.datasets.ops import combine_files

        t0 = time.perf_counter()
        ds, path = combine_files(inputs, out, format=format, force=force)
        t = Table(title=f"combined -> {path}", title_justify="left")
        for c in ("part", "source", "domain", "policy", "quality", "transitions", "episodes"):
            t.add_column(c, overflow="fold")
        for p in ds.metadata["parts"]:
            t.add_row(str(p["part"]), str(p["source"]), str(p.get("domain")), _short(str(p.get("policy")), 40),
                      str(p.get("quality")), f"{p['transitions']:,}", f"{p['episodes']:,}")
        make_console().print(t)
        make_console().print(f"wrote {path} ({len(ds):,} transitions, {ds.n_episodes:,} episodes) in "
                             f"{time.perf_counter() - t0:.2f} s; manifest {manifest_path(path)}", highlight=False)

    @group.command("split")
    def split_cmd(src: str = typer.Argument(..., help="The dataset to split (file, id, minari:<id>)."),
                  out: list[str] = typer.Option(..., "--out", "-o", help="One output per part (repeat)."),
                  fractions: str | None = typer.Option(None, "--fractions",
                                                       help="Fractions of the episodes, e.g. 0.8,0.2."),
                  counts: str | None = typer.Option(None, "--counts", help="Episode counts, e.g. 90,10."),
                  seed: int = typer.Option(0, "--seed", help="Seed of the episode shuffle."),
                  format: str | None = typer.Option(None, "--format", "-f", help="Output format."),
                  force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
                  ) -> None:
        """Split a dataset by whole episodes (seeded) into disjoint parts; ids are kept."""
        from xcurate.datasets.ops import split_file

        fr = _number_list(fractions, float, "--fractions") if fractions is not None else None
        cn = _number_list(counts, int, "--counts") if counts is not None else None
        if (fr is None) == (cn is None):
            from xcurate.errors import ConfigError

            raise ConfigError("datasets split: give exactly one of --fractions or --counts")
        for ds, path in split_file(src, out, fractions=fr, counts=cn, seed=seed, format=format, force=force):
            make_console().print(f"wrote {path} ({len(ds):,} transitions, {ds.n_episodes:,} episodes)",
                                 highlight=False)

    @group.command("sample")
    def sample_cmd(src: str = typer.Argument(..., help="The dataset to sample from (file, id, minari:<id>)."),
                   out: str = typer.Option(..., "--out", "-o", help="Output file, folder, id or minari:<id>."),
                   n: int | None = typer.Option(None, "--n", help="How many transitions/episodes."),
                   fraction: float | None = typer.Option(None, "--fraction", help="Or which fraction, in (0, 1]."),
                   episodes: bool = typer.Option(False, "--episodes", help="Sample whole episodes "
                                                                           "(default: transitions)."),
                   seed: int = typer.Option(0, "--seed", help="Sampling seed."),
                   format: str | None = typer.Option(None, "--format", "-f", help="Output format."),
                   force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
                   ) -> None:
        """Sample transitions or whole episodes uniformly without replacement (seeded); ids are kept."""
        from xcurate.datasets.ops import sample_file

        ds, path = sample_file(src, out, n=n, fraction=fraction, unit="episodes" if episodes else "transitions",
                               seed=seed, format=format, force=force)
        make_console().print(f"wrote {path} ({len(ds):,} transitions, {ds.n_episodes:,} episodes)",
                             highlight=False)


def _number_list(text: str, kind: type, option: str) -> list:
    """``"0.8,0.2"`` -> ``[0.8, 0.2]``; a bad entry is a one-line ConfigError naming the option."""
    from xcurate.errors import ConfigError

    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated {kind.__name__} values, got {text!r}") from None
