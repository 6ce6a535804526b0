"""Edits of Gymnasium's own MuJoCo XML files (``gymnasium/envs/mujoco/assets``) with ``xml.etree``.

A shifted domain is a robot plus a tuple of *edit operations*. Each operation is a plain,
hashable tuple ``(op_name, *args)`` so that :class:`~xcurate.datasets.domains.Domain` stays
frozen and hashable. :func:`apply_edits` applies them to a parsed copy of the source XML and
returns the list of :class:`Change` records (element, attribute, old -> new) that
``xcurate domains show`` prints. :func:`edited_xml_path` writes the edited XML (atomically) to a
cache folder and returns its absolute path, which is passed to ``gymnasium.make(xml_file=...)``.

Operations (element lookup is by tag and ``name`` attribute):

- ``("friction", f)``: every geom's friction (all three components, floor included, geoms that
  inherit it from the default class included: they get an explicit value) x f. Because MuJoCo
  combines the two geoms of a contact with ``max()``, scaling *every* geom scales the effective
  contact friction by exactly f (max(f a, f b) = f max(a, b)). Scaling only the robot would make
  f < 1 a no-op wherever the floor has the larger value (ODRL issue #8).
- ``("gravity", g)``: ``<option gravity="0 0 -9.81 g">``.
- ``("joint_range", (names...), lo_factor, hi_factor)``: joint ``range`` bounds multiplied by
  the factors (about the joint's zero position, so the width of a symmetric scaling is x f and
  the reference pose 0 stays inside a range that contained it).
- ``("scale_vec", tag, name, attr, factors)``: multiply the numbers of a vector attribute
  (``size``, ``fromto``, ``pos``) component-wise (a scalar factor applies to all components;
  ``None`` leaves a component as is).
- ``("set_vec", tag, name, attr, index, value)``: set one component of a vector attribute.
- ``("set_attr", tag, name, attr, value)``: set an attribute to a string (``None`` removes it, e.g.
  a capsule's ``pos``/``axisangle`` when it is redefined by ``fromto``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcurate.errors import ConfigError

#: MuJoCo's built-in geom friction (sliding, torsional, rolling).
MUJOCO_DEFAULT_FRICTION = (1.0, 0.005, 0.0001)
#: MuJoCo's built-in gravity.
MUJOCO_DEFAULT_GRAVITY = (0.0, 0.0, -9.81)


@dataclass(frozen=True)
class Change:
    """One edited XML attribute.

    Attributes:
        tag: element tag (``geom``, ``joint``, ``body``, ``option``, ``default/geom``).
        name: the element's ``name`` attribute ("" where it has none).
        attr: the attribute.
        old: the value before the edit ("" where it was absent / inherited).
        new: the value after the edit.
    """

    tag: str
    name: str
    attr: str
    old: str
    new: str

    def __str__(self) -> str:
        label = f"{self.tag}[{self.name}]" if self.name else self.tag
        return f"{label}.{self.attr}: {self.old or '(inherited)'} -> {self.new}"


def gymnasium_assets() -> Path:
    """The folder holding Gymnasium's MuJoCo XML files."""
    import gymnasium.envs.mujoco as gm

    return Path(gm.__file__).resolve().parent / "assets"


def _fmt(values: list[float]) -> str:
    return " ".join(f"{float(v):.12g}" for v in values)


def _nums(text: str) -> list[float]:
    return [float(t) for t in text.split()]


def _find(root: ET.Element, tag: str, name: str) -> ET.Element:
    for el in root.iter(tag):
        if el.get("name") == name:
            return el
    raise ConfigError(f"XML edit: no <{tag} name={name!r}> in the model")


def _default_geom(root: ET.Element) -> ET.Element | None:
    d = root.find("default")
    return None if d is None else d.find("geom")


def _op_friction(root: ET.Element, factor: float) -> list[Change]:
    changes: list[Change] = []
    base = list(MUJOCO_DEFAULT_FRICTION)
    dgeom = _default_geom(root)
    if dgeom is not None and dgeom.get("friction") is not None:
        given = _nums(dgeom.get("friction"))
        base[: len(given)] = given
        new = _fmt([v * factor for v in base])
        changes.append(Change("default/geom", "", "friction", dgeom.get("friction"), new))
        dgeom.set("friction", new)
    wb = root.find("worldbody")
    for i, geom in enumerate(wb.iter("geom")):
        old = geom.get("friction")
        vals = list(base)
        if old is not None:
            given = _nums(old)
            vals[: len(given)] = given
        new = _fmt([v * factor for v in vals])
        geom.set("friction", new)
        changes.append(Change("geom", geom.get("name", f"#{i}"), "friction", old or "", new))
    return changes


def _op_gravity(root: ET.Element, factor: float) -> list[Change]:
    opt = root.find("option")
    if opt is None:
        opt = ET.SubElement(root, "option")
    old = opt.get("gravity")
    g = _nums(old) if old else list(MUJOCO_DEFAULT_GRAVITY)
    new = _fmt([v * factor for v in g])
    opt.set("gravity", new)
    return [Change("option", "", "gravity", old or "", new)]


def _op_joint_range(root: ET.Element, joints: tuple[str, ...], lo: float, hi: float) -> list[Change]:
    changes = []
    for name in joints:
        j = _find(root, "joint", name)
        old = j.get("range")
        if old is None:
            raise ConfigError(f"XML edit: joint {name!r} has no range to scale")
        a, b = _nums(old)
        new = _fmt([a * lo, b * hi])
        j.set("range", new)
        changes.append(Change("joint", name, "range", old, new))
    return changes


def _op_scale_vec(root: ET.Element, tag: str, name: str, attr: str,
                  factors: float | tuple[float | None, ...]) -> list[Change]:
    el = _find(root, tag, name)
    old = el.get(attr)
    if old is None:
        raise ConfigError(f"XML edit: <{tag} name={name!r}> has no {attr!r}")
    vals = _nums(old)
    fs = [factors] * len(vals) if isinstance(factors, (int, float)) else list(factors)
    if len(fs) != len(vals):
        raise ConfigError(f"XML edit: {tag}[{name}].{attr} has {len(vals)} values, got {len(fs)} factors")
    new = _fmt([v if f is None else v * f for v, f in zip(vals, fs, strict=True)])
    el.set(attr, new)
    return [Change(tag, name, attr, old, new)]


def _op_set_vec(root: ET.Element, tag: str, name: str, attr: str, index: int, value: float) -> list[Change]:
    el = _find(root, tag, name)
    old = el.get(attr)
    if old is None and attr != "pos":
        raise ConfigError(f"XML edit: <{tag} name={name!r}> has no {attr!r}")
    vals = _nums(old) if old is not None else [0.0, 0.0, 0.0]  # MuJoCo's default pos
    vals[index] = value
    new = _fmt(vals)
    el.set(attr, new)
    return [Change(tag, name, attr, old or "", new)]


def _op_set_attr(root: ET.Element, tag: str, name: str, attr: str, value: str | None) -> list[Change]:
    el = _find(root, tag, name)
    old = el.get(attr)
    if value is None:
        if old is None:
            return []
        del el.attrib[attr]
        return [Change(tag, name, attr, old, "(removed)")]
    el.set(attr, value)
    return [Change(tag, name, attr, old or "", value)]


_OPS: dict[str, Any] = {"friction": _op_friction, "gravity": _op_gravity, "joint_range": _op_joint_range,
                        "scale_vec": _op_scale_vec, "set_vec": _op_set_vec, "set_attr": _op_set_attr}


def apply_edits(root: ET.Element, edits: tuple[tuple, ...]) -> list[Change]:
    """Apply ``edits`` in order to the parsed XML ``root`` (in place); return the changes."""
    changes: list[Change] = []
    for op in edits:
        fn = _OPS.get(op[0])
        if fn is None:
            raise ConfigError(f"XML edit: unknown operation {op[0]!r} (known: {', '.join(_OPS)})")
        changes.extend(fn(root, *op[1:]))
    return changes


def edited_tree(xml_name: str, edits: tuple[tuple, ...]) -> tuple[ET.ElementTree, list[Change]]:
    """Parse Gymnasium's ``xml_name`` and apply ``edits``; return (tree, changes)."""
    src = gymnasium_assets() / xml_name
    tree = ET.parse(src)
    changes = apply_edits(tree.getroot(), edits)
    return tree, changes


def cache_dir() -> Path:
    """Folder for edited XML files: ``data_root()/domains``."""
    from xcurate.utils import data_root

    return Path(data_root()) / "domains"


def edited_xml_path(domain_name: str, xml_name: str, edits: tuple[tuple, ...]) -> Path:
    """Write the edited XML for a domain (once; atomically) and return its absolute path.

    The file name carries a hash of the source XML and the edits, so a changed Gymnasium
    asset or a changed definition never reuses a stale file.
    """
    from xcurate.utils import atomic_path

    src = gymnasium_assets() / xml_name
    key = hashlib.sha256(src.read_bytes() + repr(edits).encode()).hexdigest()[:12]
    fname = f"{domain_name}-{key}.xml"
    # data_root()/domains; a temporary folder where that is not writable
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / "xcurate-domains"):
        path = (folder / fname).resolve()
        if path.exists():
            return path
        tree, _ = edited_tree(xml_name, edits)
        ET.indent(tree)
        try:
            with atomic_path(path) as tmp:
                tree.write(os.fspath(tmp), encoding="unicode")
            return path
        except OSError:
            continue
    raise ConfigError(f"cannot write the edited XML {fname} under {cache_dir()} or the temp folder")
