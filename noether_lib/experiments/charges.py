"""The runner's charge recorder: :class:`~noether_lib.tracking.NoetherTracker` in stretches written to disk.

A tracker keeps its whole record in memory, and at the paper's scale that record would outgrow the host and every
checkpoint. :class:`ChargeRecorder` therefore runs one tracker per *stretch* of ``rows`` recorded steps: at the end
of a stretch (a step where the tracker has just written a row, so no sum over steps is open) it appends the
stretch's table to the run's ``charges`` and ``layers`` parts (:func:`~noether_lib.experiments.records.write_part`)
and starts a fresh tracker on the same model and optimiser. Steps and times are continued across stretches, the
fresh tracker's initial row (the same charges as the last row written) is dropped, so the parts together are the
table one tracker would have produced. A checkpoint holds only the open stretch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noether_lib.experiments.records import CHARGES, LAYERS, remove_parts, write_part
from noether_lib.symmetry import SymmetryGroup
from noether_lib.tracking import NoetherTracker

__all__ = ["ChargeRecorder", "layer_sums", "STRETCH_ROWS"]

#: Recorded steps per stretch; at the paper's scale (about 3,000 units) a stretch holds about 15 MB on the host.
STRETCH_ROWS: int = 64

#: Numeric columns that are the same for every unit of a group at one step (as are the non-numeric ones); the other
#: numeric columns are per-unit quantities and are summed over a group's units.
_SHARED = ("step", "time", "lr", "steps", "momentum", "dampening", "weight_decay", "nesterov")


def layer_sums(table: pd.DataFrame) -> pd.DataFrame:
    """The charges table summed over the units of each group: one row per (step, group), ``unit`` 0. Every column
    of the table is linear in the per-unit quantities, so the predictions apply to the sums as well."""
    keys = ["step", "group"]
    numeric = set(table.select_dtypes("number").columns) - {"unit"}
    summed = [c for c in table.columns if c in numeric and c not in _SHARED]
    shared = [c for c in table.columns if c not in summed and c not in keys and c != "unit"]
    grouped = table.groupby(keys, sort=False)
    out = grouped[shared].first().join(grouped[summed].sum(min_count=1))
    return out.reset_index().assign(unit=0)[list(table.columns)]


def _portable(value: Any) -> Any:
    """``value`` with numpy arrays turned into tensors, so that ``torch.load(weights_only=True)`` reads it."""
    if isinstance(value, np.ndarray):
        return {"__numpy__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_portable(v) for v in value)
    return value


def _native(value: Any) -> Any:
    """The inverse of ``_portable``."""
    if isinstance(value, dict):
        if set(value) == {"__numpy__"}:
            return value["__numpy__"].numpy()
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_native(v) for v in value)
    return value


class ChargeRecorder:
    """Records a run's charges into ``run_dir`` in stretches of ``rows`` recorded steps.

    Args:
        model, optimizer, groups: what :class:`~noether_lib.tracking.NoetherTracker` tracks; build the recorder
            after restoring the optimiser.
        run_dir: the run's folder.
        every: record every this many steps.
        units: keep the per-unit rows of the first this many units of each group (0: all); the layer sums
            always cover every unit.
        rows: recorded steps per stretch (default :data:`STRETCH_ROWS`).
        state: :meth:`state_dict` of an interrupted run, to continue its open stretch.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        groups: list[SymmetryGroup],
        run_dir: Path,
        *,
        every: int,
        units: int = 0,
        rows: int | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.optimizer, self.groups = model, optimizer, groups
        self.run_dir, self.every, self.units = Path(run_dir), every, units
        self.rows = rows or STRETCH_ROWS
        self.start, self.time, self.parts = 0, 0.0, 0
        self.tracker = self._new_tracker()
        if state is not None:
            self.start, self.time, self.parts = int(state["start"]), float(state["time"]), int(state["parts"])
            self.tracker.load_state_dict(_native(state["tracker"]))
        for name in (CHARGES, LAYERS):
            remove_parts(self.run_dir / name, self.parts)

    def _new_tracker(self) -> NoetherTracker:
        return NoetherTracker(self.model, self.optimizer, self.groups, every=self.every, chunk=self.rows)

    def step(self, step: int) -> None:
        """Record optimiser step ``step`` (the global count, just taken); ends the stretch when it is full."""
        self.tracker.step()
        if step % self.every == 0 and (step - self.start) // self.every >= self.rows:
            self.write(step)

    def write(self, last_step: int, *, final: bool = False) -> None:
        """Append the open stretch's rows up to ``last_step`` to the parts; unless ``final``, start a new stretch
        (``last_step`` must then be a recorded step, a multiple of ``every``)."""
        table = self.tracker.table()
        table = table[table["step"] + self.start <= last_step]
        table = table.assign(step=table["step"] + self.start, time=table["time"] + self.time)
        if self.start > 0:
            table = table[table["step"] > self.start]
        if len(table):
            write_part(
                self.run_dir / CHARGES, self.parts, table if not self.units else table[table["unit"] < self.units]
            )
            write_part(self.run_dir / LAYERS, self.parts, layer_sums(table))
            self.parts += 1
            self.time = float(table["time"].iloc[-1])
        if not final:
            self.tracker.close()
            self.start = last_step
            self.tracker = self._new_tracker()

    def state_dict(self) -> dict[str, Any]:
        """The open stretch, for a checkpoint (readable with ``torch.load(weights_only=True)``)."""
        return {
            "start": self.start,
            "time": self.time,
            "parts": self.parts,
            "tracker": _portable(copy.deepcopy(self.tracker.state_dict())),
        }

    def close(self) -> None:
        """Detach the tracker from the optimiser."""
        self.tracker.close()
