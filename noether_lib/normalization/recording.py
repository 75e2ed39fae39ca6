"""Recording the filter norms during training, in the charges table's columns (``noether_lib.schema``).

:class:`NormRecorder` keeps, per step, the loss, every filter's :math:`r^2` and :math:`|\\hat g|^2` and the squared
update :math:`U_n=|q_{n+1}-q_n|^2`; :meth:`NormRecord.table` writes them as rows of the charges table (the scale
charge is :math:`C=r^2`), and :func:`unit_gradient_sq_from_table` reads :math:`|\\hat g_n|^2` back from any such table,
the tracker's included. :func:`train_and_record` is the training loop chapter 4 uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.nn import Module

from noether_lib.learning_rule import check_hyperparameters
from noether_lib.normalization.filters import check_scale_groups, filter_norms, unit_gradient_norms_sq
from noether_lib.normalization.optimizers import UnitFilterSGD
from noether_lib.schema import check_columns, column_names
from noether_lib.symmetry import SymmetryGroup

__all__ = ["NormRecord", "NormRecorder", "unit_gradient_sq_from_table", "train_and_record"]


@dataclass
class NormRecord:
    """What :class:`NormRecorder` saw: row ``n`` is step ``n``, before that step's update.

    ``update_sq[n]`` is :math:`U_n=|q_{n+1}-q_n|^2` per filter (NaN in the last row, whose update was not seen).
    """

    loss: np.ndarray
    norm_squared: np.ndarray
    g_hat_sq: np.ndarray
    update_sq: np.ndarray
    g_hat: np.ndarray | None = None
    groups: list[SymmetryGroup] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The record as rows of the charges table: ``step``, ``group``, ``kind``, ``unit``, ``charge``
        (:math:`C_n=r_n^2`), ``norm_sq``, ``grad_signed_sq`` (:math:`|g_{n-1}|^2`) and ``update_signed_sq``
        (:math:`U_{n-1}`), with the tracker's convention that row ``n`` holds the step :math:`n-1\\to n` (NaN at 0)."""
        steps, units = self.norm_squared.shape
        nan = np.full((1, units), np.nan)
        grad = np.vstack([nan, self.g_hat_sq[:-1] / self.norm_squared[:-1]])
        update = np.vstack([nan, self.update_sq[:-1]])
        names = [(g.name, g.kind, u) for g in self.groups for u in range(g.num_units)]
        if len(names) != units:
            raise ValueError("the record does not know its groups; build it with NormRecorder")
        step = np.repeat(np.arange(steps), units)
        frame = pd.DataFrame(
            {
                "step": step,
                "group": [names[i][0] for i in range(units)] * steps,
                "kind": [names[i][1] for i in range(units)] * steps,
                "unit": [names[i][2] for i in range(units)] * steps,
                "charge": self.norm_squared.reshape(-1),
                "norm_sq": self.norm_squared.reshape(-1),
                "grad_signed_sq": grad.reshape(-1),
                "update_signed_sq": update.reshape(-1),
            }
        )
        assert set(frame.columns) <= set(column_names()), "NormRecord.table writes charges-table columns only"
        return frame


def unit_gradient_sq_from_table(table: pd.DataFrame) -> np.ndarray:
    """:math:`|\\hat g_n|^2=r_n^2\\,|g_n|^2` per filter from a charges table of scale groups recorded every step,
    ``n = 0..N-1`` (shape ``(N, units)``, units in the table's group order): row ``n+1``'s ``grad_signed_sq`` times
    row ``n``'s ``norm_sq``."""
    check_columns(table.columns, {"step", "group", "kind", "unit", "norm_sq", "grad_signed_sq"})
    if (table["kind"] != "scale").any():
        raise ValueError("|g_hat|^2 is defined for scale groups only")
    parts = []
    for _, rows in table.groupby("group", sort=False):
        wide = {
            c: rows.pivot(index="step", columns="unit", values=c).sort_index().to_numpy()
            for c in ("norm_sq", "grad_signed_sq")
        }
        parts.append(wide["norm_sq"][:-1] * wide["grad_signed_sq"][1:])
    return np.hstack(parts)


class NormRecorder:
    """Call :meth:`record` after each backward pass: keeps the loss, every filter's :math:`r^2`,
    :math:`|\\hat g|^2`, and optionally the updates :math:`U` (``keep_updates``; NaN otherwise) and the unit-norm
    gradients :math:`\\hat g=r\\nabla f` (``keep_gradients``)."""

    def __init__(
        self,
        model: Module,
        groups: Sequence[SymmetryGroup],
        *,
        keep_gradients: bool = False,
        keep_updates: bool = False,
    ) -> None:
        check_scale_groups(groups)
        self.groups, self.keep_gradients, self.keep_updates = list(groups), keep_gradients, keep_updates
        self.params = dict(model.named_parameters())
        self._rows: list[tuple] = []
        self._updates: list[np.ndarray] = []
        self._previous: list[torch.Tensor] | None = None

    def record(self, loss: torch.Tensor) -> None:
        """Record this step's ``loss`` and, from the current parameters and gradients, every filter's numbers."""
        with torch.no_grad():
            grads = {n: p.grad for n, p in self.params.items() if p.grad is not None}
            r = filter_norms(self.groups, self.params)
            if self.keep_updates:
                filters = [torch.cat(g.slices(self.params), dim=1).detach().double().clone() for g in self.groups]
                if self._previous is not None:
                    self._updates.append(
                        torch.cat([((a - b) ** 2).sum(1) for a, b in zip(filters, self._previous)]).numpy()
                    )
                self._previous = filters
            g_hat = None
            if self.keep_gradients:
                parts = [
                    torch.cat(g.slices(grads), dim=1) * filter_norms([g], self.params)[:, None] for g in self.groups
                ]
                g_hat = torch.cat([p.reshape(-1) for p in parts]).double().numpy()
            g_sq = unit_gradient_norms_sq(self.groups, self.params, grads).double().numpy()
            self._rows.append((float(loss), (r**2).double().numpy(), g_sq, g_hat))

    def result(self) -> NormRecord:
        """Everything recorded so far, one row per step."""
        loss, r2, g2, gh = zip(*self._rows)
        norm_squared = np.stack(r2)
        update = np.full(norm_squared.shape, np.nan)
        if self._updates:
            update[:-1] = np.stack(self._updates)
        return NormRecord(
            np.array(loss),
            norm_squared,
            np.stack(g2),
            update,
            np.stack(gh) if self.keep_gradients else None,
            self.groups,
        )


def train_and_record(
    model: Module,
    groups: Sequence[SymmetryGroup],
    loss_at: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    filters: UnitFilterSGD | None = None,
    norm_squared: np.ndarray | float | None = None,
    keep_gradients: bool = False,
    keep_updates: bool = False,
) -> NormRecord:
    """Train with PyTorch's SGD (momentum, weight decay) and record every filter's :math:`r^2,|\\hat g|^2` (and
    :math:`U`, :math:`\\hat g` on request, see :class:`NormRecorder`).

    With ``filters`` (a :class:`UnitFilterSGD`, :class:`~noether_lib.normalization.SphereSGD` or
    :class:`~noether_lib.normalization.FilterRMSProp`) the filters are
    trained by it instead and SGD gets the other parameters. A plain :class:`UnitFilterSGD` divides step ``n`` by
    ``norm_squared[n]`` (one row per step), or by ``norm_squared`` itself when it is a number or one value per filter
    (the constrained, non-adaptive control); the other two compute their own divisor.
    """
    check_hyperparameters(lr, momentum, weight_decay=weight_decay, steps=steps)
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    owned = filters.parameter_names if filters is not None else set()
    rest = [p for n, p in model.named_parameters() if n not in owned]
    sgd = torch.optim.SGD(rest, lr=lr, momentum=momentum, weight_decay=weight_decay) if rest else None
    adaptive = filters is not None and type(filters) is not UnitFilterSGD
    if filters is not None and not adaptive and norm_squared is None:
        raise ValueError("a UnitFilterSGD needs norm_squared: one row per step, or a constant")
    recorder = NormRecorder(model, groups, keep_gradients=keep_gradients, keep_updates=keep_updates)
    for n in range(steps):
        model.zero_grad(set_to_none=True)
        loss = loss_at(n)
        loss.backward()
        recorder.record(loss.detach())
        if sgd is not None:
            sgd.step()
        if filters is None:
            continue
        if adaptive:
            filters.step()
        else:
            given = np.asarray(norm_squared, dtype=np.float64)
            divisor = given[n] if given.ndim == 2 else np.broadcast_to(given, (filters.num_units,))
            filters.step(torch.as_tensor(np.array(divisor), dtype=torch.float64))
    return recorder.result()
