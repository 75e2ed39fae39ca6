"""How the tracker lays out the members of the symmetry groups and reduces them per unit, in chunks.

Each member is one *entry*: its parameter seen as ``(before, units, after)`` (unit ``u``'s slice is ``[:, u, :]``,
as in :meth:`noether_lib.symmetry.SymmetryGroup.slices`), its sign, its optimizer parameter group and the range of
units it adds into. The per-unit sums and dot products are formed chunk by chunk (at most ``chunk`` elements), so
no temporary is larger than a chunk whatever the size of the layer, and each chunk of weights, gradients and
snapshot is read once for all its products. Low-precision weights (bfloat16, float16) are reduced in float32.

The eight recorded rows per unit (:data:`ROWS`), after one update :math:`q\\to q'=q+u`, with :math:`J` the member
signs: the charge :math:`C'` (:math:`\\langle q',Jq'\\rangle`, or the signed sum for translations), the unsigned
squared norm, the decay term :math:`\\sum_mk_m\\,C'_m`, :math:`U=\\langle u,Ju\\rangle`, :math:`P=\\langle\\xi(q),u\\rangle`,
:math:`G=\\langle g,Jg\\rangle`, :math:`\\gamma=\\langle\\xi(q),g\\rangle` and :math:`R=\\langle Ju,b\\rangle` with
:math:`b` SGD's momentum buffer after the step (Nesterov only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from noether_lib.tracking.optimizers import LOW_PRECISION

__all__ = ["ROWS", "Entry", "pre_step", "post_step", "current_charges"]

ROWS = (
    "charge",
    "norm_sq",
    "decay_charge",
    "update_signed_sq",
    "projected_update",
    "grad_signed_sq",
    "grad_proj",
    "update_momentum",
)
CHARGE, NORM, DECAY, UPDATE, PROJECTED, GRAD, GRAD_PROJ, MOMENTUM = range(len(ROWS))


@dataclass
class Entry:
    """One member of one symmetry group, ready to be reduced."""

    param: torch.Tensor
    snapshot: torch.Tensor  # the weights before the step (shared by the entries of one parameter)
    owner: bool  # this entry writes the snapshot of its parameter
    before: int
    units: int
    after: int
    sign: float
    translation: bool
    param_group: int
    first_unit: int  # where its units start in the tracker's unit axis

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(self.before, self.units, self.after)

    def blocks(self, chunk: int) -> list[tuple[slice, slice]]:
        """Index pairs ``(before, units)`` covering the entry with blocks of at most ``chunk`` elements (when a
        single row exceeds ``chunk``, one row)."""
        if self.before == 1:
            rows = max(1, chunk // max(self.after, 1))
            return [(slice(0, 1), slice(u, min(u + rows, self.units))) for u in range(0, self.units, rows)]
        rows = max(1, chunk // max(self.units * self.after, 1))
        return [(slice(b, min(b + rows, self.before)), slice(0, self.units)) for b in range(0, self.before, rows)]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-unit :math:`\\sum x y` of two ``(before, units, after)`` blocks."""
    return torch.linalg.vecdot(x, y, dim=2).sum(0) if x.shape[0] > 1 else torch.linalg.vecdot(x[0], y[0], dim=1)


def _add(out: torch.Tensor, row: int, entry: Entry, units: slice, value: torch.Tensor) -> None:
    start = entry.first_unit + (units.start or 0)
    out[row, start : start + value.shape[0]] += value.to(out.dtype)


@torch.no_grad()
def pre_step(entries: list[Entry], out: torch.Tensor, chunk: int) -> None:
    """Before ``optimizer.step()``: snapshot the weights and add :math:`G` and :math:`\\gamma` into ``out`` (rows of
    :data:`ROWS`; the gradients are those the optimizer is about to use)."""
    for e in entries:
        grad = e.param.grad
        q, snap = e.view(e.param.detach()), e.view(e.snapshot)
        g = None if grad is None else e.view(grad)
        cdt = _compute_dtype(e.param.dtype)
        for b, u in e.blocks(chunk):
            if e.owner:
                snap[b, u].copy_(q[b, u])
            if g is None:
                continue
            gc = g[b, u].to(cdt)
            _add(out, GRAD, e, u, e.sign * _dot(gc, gc))
            proj = gc.sum((0, 2)) if e.translation else _dot(q[b, u].to(cdt), gc)
            _add(out, GRAD_PROJ, e, u, e.sign * proj)


@torch.no_grad()
def post_step(
    entries: list[Entry], out: torch.Tensor, chunk: int, weight_decay: list[float], buffers: list[torch.Tensor | None]
) -> None:
    """After ``optimizer.step()``: add the rows of :data:`ROWS` that depend on the new weights into ``out``.

    ``weight_decay[i]`` is entry ``i``'s (for the decay term); ``buffers[i]`` its momentum buffer when :math:`R` is
    wanted (Nesterov), else ``None``. The update is measured as :math:`u=q'-q` from the snapshot (computed in the
    compute dtype, exactly for weights that moved by less than a factor two), never read from the optimizer.
    """
    for e, k, buffer in zip(entries, weight_decay, buffers):
        q, snap = e.view(e.param.detach()), e.view(e.snapshot)
        buf = None if buffer is None else e.view(buffer)
        cdt = _compute_dtype(e.param.dtype)
        for b, u in e.blocks(chunk):
            qc = q[b, u].to(cdt)
            w = snap[b, u].to(cdt) - qc  # -u
            qq, ww = _dot(qc, qc), _dot(w, w)
            charge = qc.sum((0, 2)) if e.translation else qq
            projected = w.sum((0, 2)) if e.translation else _dot(qc, w) + ww
            _add(out, CHARGE, e, u, e.sign * charge)
            _add(out, NORM, e, u, qq)
            _add(out, DECAY, e, u, (e.sign * k) * charge)
            _add(out, UPDATE, e, u, e.sign * ww)
            _add(out, PROJECTED, e, u, -e.sign * projected)
            if buf is not None and not e.translation:
                _add(out, MOMENTUM, e, u, -e.sign * _dot(w, buf[b, u].to(cdt)))


@torch.no_grad()
def current_charges(entries: list[Entry], out: torch.Tensor, chunk: int, weight_decay: list[float]) -> None:
    """Add the charge, squared norm and decay term of the current weights into ``out`` (rows 0-2 of :data:`ROWS`)."""
    for e, k in zip(entries, weight_decay):
        q = e.view(e.param.detach())
        cdt = _compute_dtype(e.param.dtype)
        for b, u in e.blocks(chunk):
            qc = q[b, u].to(cdt)
            qq = _dot(qc, qc)
            charge = qc.sum((0, 2)) if e.translation else qq
            _add(out, CHARGE, e, u, e.sign * charge)
            _add(out, NORM, e, u, qq)
            _add(out, DECAY, e, u, (e.sign * k) * charge)
