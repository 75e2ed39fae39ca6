"""The tracker's records as the charges table (:mod:`noether_lib.schema`), and saving and loading it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noether_lib.schema import column_names
from noether_lib.symmetry import SymmetryGroup
from noether_lib.tracking.layout import ROWS

__all__ = ["Layout", "charges_table", "save_table", "load_tracking"]

_HYPER = ("lr", "momentum", "dampening", "weight_decay", "nesterov")


@dataclass(frozen=True)
class Layout:
    """What the unit axis of the records means: per group its name, kind, units, optimizer parameter groups
    (positions in the recorded hyperparameters) and its weights' lowest precision."""

    names: list[str]
    kinds: list[str]
    num_units: list[int]
    unit_group: list[int]
    group_param_groups: list[list[int]]
    optimizer: str
    dtypes: list[str]


def _per_group(layout: Layout, values: np.ndarray) -> np.ndarray:
    """``values[..., position]`` per group: the shared value of the group's parameter groups, NaN if they differ."""
    out = np.empty(values.shape[:-1] + (len(layout.names),))
    for gi, positions in enumerate(layout.group_param_groups):
        picked = values[..., positions]
        same = np.all(picked == picked[..., :1], axis=-1)
        out[..., gi] = np.where(same, picked[..., 0], np.nan)
    return out


def charges_table(
    layout: Layout,
    initial: np.ndarray,
    initial_hyper: Sequence[tuple],
    rows: np.ndarray,
    meta: Sequence[Mapping[str, Any]],
) -> pd.DataFrame:
    """Assemble the charges table from the initial charges ``(3, units)``, the recorded ``rows`` ``(count, len(ROWS),
    units)`` and their ``meta`` (step, steps in the window, hyperparameters per parameter group, time increments).

    Columns whose members disagree (a unit spanning optimizer parameter groups with different learning rates, say)
    are NaN; the decay term ``decay_charge`` is recorded per member and so is always defined.
    """
    count, units = len(meta), len(layout.unit_group)
    unit_group = np.asarray(layout.unit_group)
    start = np.asarray(initial_hyper, dtype=np.float64).reshape(1, -1, len(_HYPER))
    positions = start.shape[1]
    hyper = np.array([m["hyper"] for m in meta], dtype=np.float64).reshape(count, positions, len(_HYPER))
    hyper_all = np.concatenate([start, hyper]) if count else start
    by_group = {h: _per_group(layout, hyper_all[..., i])[:, unit_group] for i, h in enumerate(_HYPER)}
    # members under different Nesterov settings: no single SGD rule, so the momentum is left undefined too
    by_group["momentum"] = np.where(np.isnan(by_group["nesterov"]), np.nan, by_group["momentum"])
    increments = np.array([m["time"] for m in meta], dtype=np.float64).reshape(count, positions)
    times = np.concatenate([np.zeros((1, units)), np.cumsum(_per_group(layout, increments), axis=0)[:, unit_group]])
    nan_row = np.full((1, units), np.nan)
    record = {name: np.concatenate([nan_row, rows[:, i]]) for i, name in enumerate(ROWS)}
    for i, name in enumerate(("charge", "norm_sq", "decay_charge")):
        record[name][0] = initial[i]
    steps = np.array([m["steps"] for m in meta], dtype=np.float64)
    kinds = np.asarray(layout.kinds)[unit_group]
    wanted = (by_group["nesterov"] > 0) & (kinds != "translation")  # R enters only Nesterov's quadratic recursion
    record["update_momentum"] = np.where(wanted, record["update_momentum"], np.nan)
    record["update_momentum"][0] = np.nan
    data = {
        "step": np.repeat(np.concatenate([[0], [m["step"] for m in meta]]).astype(int), units),
        "time": times.reshape(-1),
        "group": np.tile(np.asarray(layout.names)[unit_group], count + 1),
        "kind": np.tile(kinds, count + 1),
        "unit": np.tile(np.concatenate([np.arange(n) for n in layout.num_units]), count + 1),
        **{name: record[name].reshape(-1) for name in ROWS},
        "lr": np.concatenate([nan_row, by_group["lr"][1:]]).reshape(-1),
        "steps": np.concatenate([nan_row, np.repeat(steps[:, None], units, axis=1)]).reshape(-1),
        "momentum": by_group["momentum"].reshape(-1),
        "dampening": by_group["dampening"].reshape(-1),
        "weight_decay": by_group["weight_decay"].reshape(-1),
        "nesterov": (by_group["nesterov"] > 0).reshape(-1),
        "optimizer": np.full(units * (count + 1), layout.optimizer),
        "dtype": np.tile(np.asarray(layout.dtypes)[unit_group], count + 1),
    }
    return pd.DataFrame({name: data[name] for name in column_names()})


def save_table(
    table: pd.DataFrame, path: str | Path, config: Mapping[str, Any], every: int, groups: Sequence[SymmetryGroup]
) -> Path:
    """Write ``table`` as CSV to ``path`` and, beside it (``.json``), ``config``, ``every`` and the groups."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    meta = {
        "config": dict(config),
        "every": every,
        "groups": [
            {
                "name": g.name,
                "kind": g.kind,
                "num_units": g.num_units,
                "members": [[m.parameter, m.dim, m.sign] for m in g.members],
            }
            for g in groups
        ],
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    return path


def load_tracking(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read what :meth:`noether_lib.tracking.NoetherTracker.save` wrote: ``(table, metadata)``."""
    path = Path(path)
    return pd.read_csv(path), json.loads(path.with_suffix(".json").read_text())
