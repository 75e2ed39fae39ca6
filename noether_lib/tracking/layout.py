"""How the tracker lays out the members of the symmetry groups and reduces them per unit, tile by tile.

Each member is one *entry*: its parameter, the axis of its units, its sign, its optimizer parameter group and where
its units start on the tracker's unit axis. A parameter may be a member of several groups (a convolution is the
incoming side of a scale symmetry along its output axis and the outgoing side of a rescale along its input axis),
so the work is planned per parameter (:class:`Plan`): each tile of rows along its first axis is read once, each
elementwise product (:math:`q\\cdot g`, :math:`g\\cdot g`, ...) is formed once per tile, and every entry of that
parameter reduces the same product along its own axis. No temporary is larger than a tile, whatever the size of the
layer. Low-precision weights (bfloat16, float16) are reduced in float32.

The eight recorded rows per unit (:data:`ROWS`), after one update :math:`q\\to q'=q+u`, with :math:`J` the member
signs: the charge :math:`C'` (:math:`\\langle q',Jq'\\rangle`, or the signed sum for translations), the unsigned
squared norm, the decay term :math:`\\sum_mk_m\\,C'_m`, :math:`U=\\langle u,Ju\\rangle`, :math:`P=\\langle\\xi(q),u\\rangle`,
:math:`G=\\langle g,Jg\\rangle`, :math:`\\gamma=\\langle\\xi(q),g\\rangle` and :math:`R=\\langle Ju,b\\rangle` with
:math:`b` SGD's momentum buffer after the step (Nesterov only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from noether_lib.tracking.optimizers import LOW_PRECISION

__all__ = ["ROWS", "Entry", "Plan", "Workspace", "plan", "pre_step", "post_step", "current_charges"]

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
    """One member of one symmetry group."""

    dim: int  # the axis of the units (normalised to be non-negative)
    units: int
    sign: float
    translation: bool
    param_group: int
    first_unit: int  # where its units start on the tracker's unit axis
    index: int  # position among all entries (for per-entry settings)


@dataclass
class Plan:
    """The entries of one parameter, its snapshot (the weights before the step) and its tile height."""

    param: torch.Tensor
    snapshot: torch.Tensor
    entries: list[Entry] = field(default_factory=list)
    rows: int = 1

    @property
    def quadratic(self) -> bool:
        return any(not e.translation for e in self.entries)

    @property
    def linear(self) -> bool:
        return any(e.translation for e in self.entries)

    def tiles(self) -> list[tuple[int, int]]:
        length = self.param.shape[0] if self.param.dim() else 1
        return [(r, min(r + self.rows, length)) for r in range(0, length, self.rows)]


def plan(params: list[torch.Tensor], entries: list[tuple[int, Entry]], tile_elements: int) -> list[Plan]:
    """One :class:`Plan` per distinct parameter (``entries``: ``(index into params, entry)``), with tiles of about
    ``tile_elements`` elements that never split a unit along the first axis."""
    plans: dict[int, Plan] = {}
    for i, entry in entries:
        p = params[i]
        if id(p) not in plans:
            plans[id(p)] = Plan(p, torch.empty(p.shape, dtype=p.dtype, device=p.device))
        plans[id(p)].entries.append(entry)
    for pl in plans.values():
        p = pl.param
        length = p.shape[0] if p.dim() else 1
        row = max(p.numel() // max(length, 1), 1)
        step = 1
        for e in pl.entries:
            if e.dim == 0 and e.units > 1:
                step = math.lcm(step, length // e.units)
        pl.rows = max(step, (tile_elements // row) // step * step)
    return list(plans.values())


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _rows(tensor: torch.Tensor, r0: int, r1: int, dtype: torch.dtype) -> torch.Tensor:
    tile = tensor.detach()
    tile = (tile if r0 == 0 and r1 == tile.shape[0] else tile[r0:r1]) if tile.dim() else tile.reshape(1)
    return tile if tile.dtype == dtype else tile.to(dtype)


class Workspace:
    """Preallocated stacked tiles for the elementwise products, per compute dtype (no allocation per step)."""

    SLOTS = 6

    def __init__(self, plans: list[Plan]) -> None:
        self._tiles: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        for pl in plans:
            key = (_compute_dtype(pl.param.dtype), pl.param.device)
            size = min(
                pl.rows * max(pl.param.numel() // max(pl.param.shape[0] if pl.param.dim() else 1, 1), 1),
                pl.param.numel(),
            )
            if key not in self._tiles or self._tiles[key].shape[1] < size:
                self._tiles[key] = torch.empty(self.SLOTS, size, dtype=key[0], device=key[1])
        self._coefficients: dict[tuple, torch.Tensor] = {}
        self._views: dict[tuple, torch.Tensor] = {}

    def stack(self, slots: int, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``slots`` tiles shaped like ``like``, stacked: ``(slots, *like.shape)`` (views made once)."""
        key = (slots, like.shape, dtype, like.device)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self._tiles[(dtype, like.device)][:slots, : like.numel()].view(slots, *like.shape)
        return view

    def coefficients(self, key: tuple, rows: list[dict[int, float]], device: torch.device) -> torch.Tensor:
        """The ``(len(ROWS), slots)`` matrix mapping an entry's reduced products to the recorded rows (cached)."""
        if key not in self._coefficients:
            matrix = torch.zeros(len(ROWS), key[-1], dtype=torch.float64)
            for slot, row in enumerate(rows):
                for r, c in row.items():
                    matrix[r, slot] = c
            self._coefficients[key] = matrix.to(device)
        return self._coefficients[key]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tiles.values())


def _reduce_into(
    out: torch.Tensor, entry: Entry, stacked: torch.Tensor, r0: int, r1: int, length: int, matrix: torch.Tensor
) -> None:
    """Reduce the stacked products of rows ``r0:r1`` per unit of ``entry`` and add ``matrix @ sums`` into ``out``."""
    n = stacked.shape[0]
    if entry.units == 1:
        start, sums = 0, stacked.reshape(n, 1, -1).sum(2)
    elif entry.dim == 0:
        per_unit = length // entry.units
        start, sums = r0 // per_unit, stacked.reshape(n, (r1 - r0) // per_unit, -1).sum(2)
    else:
        shape = stacked.shape[1:]
        after = math.prod(shape[entry.dim + 1 :]) * (shape[entry.dim] // entry.units)
        start, sums = 0, stacked.reshape(n, -1, entry.units, after).sum(1).sum(2)
    begin = entry.first_unit + start
    out[:, begin : begin + sums.shape[1]].addmm_(matrix, sums if sums.dtype == out.dtype else sums.to(out.dtype))


def _pre_rows(e: Entry) -> list[dict[int, float]]:
    """Slots ``[g*g, q*g, g]`` to rows."""
    return [{GRAD: e.sign}, {} if e.translation else {GRAD_PROJ: e.sign}, {GRAD_PROJ: e.sign} if e.translation else {}]


def _post_rows(e: Entry, k: float) -> list[dict[int, float]]:
    """Slots ``[w, q*q, w*w, q*w, w*b, q]`` (``w = -u``) to rows."""
    s = e.sign
    if e.translation:
        return [{PROJECTED: -s}, {NORM: 1.0}, {UPDATE: s}, {}, {}, {CHARGE: s, DECAY: s * k}]
    return [{}, {CHARGE: s, NORM: 1.0, DECAY: s * k}, {UPDATE: s, PROJECTED: -s}, {PROJECTED: -s}, {MOMENTUM: -s}, {}]


@torch.no_grad()
def pre_step(plans: list[Plan], out: torch.Tensor, work: Workspace) -> None:
    """Before ``optimizer.step()``: snapshot the weights and add :math:`G` and :math:`\\gamma` into ``out`` (rows of
    :data:`ROWS`; the gradients are those the optimizer is about to use)."""
    for pl in plans:
        p, grad = pl.param, pl.param.grad
        cdt = _compute_dtype(p.dtype)
        length = p.shape[0] if p.dim() else 1
        slots = 3 if pl.linear else 2
        for r0, r1 in pl.tiles():
            if p.dim():
                pl.snapshot[r0:r1].copy_(p.detach()[r0:r1])
            else:
                pl.snapshot.copy_(p.detach())
            if grad is None:
                continue
            g = _rows(grad, r0, r1, cdt)
            stacked = work.stack(slots, g, cdt)
            torch.mul(g, g, out=stacked[0])
            torch.mul(g, _rows(p, r0, r1, cdt), out=stacked[1])
            if pl.linear:
                stacked[2].copy_(g)
            for e in pl.entries:
                matrix = work.coefficients(("pre", e.index, slots), _pre_rows(e)[:slots], out.device)
                _reduce_into(out, e, stacked, r0, r1, length, matrix)


@torch.no_grad()
def post_step(
    plans: list[Plan], out: torch.Tensor, weight_decay: list[float], buffers: list[torch.Tensor | None], work: Workspace
) -> None:
    """After the step: add the rows of :data:`ROWS` that depend on the new weights into ``out``.

    ``weight_decay[e.index]`` is entry ``e``'s (for the decay term), ``buffers[e.index]`` its momentum buffer when
    :math:`R` is wanted (Nesterov), else ``None``. The update is measured as :math:`u=q'-q` from the snapshot
    (computed in the compute dtype: exact for weights that moved by less than a factor two), never read from the
    optimizer.
    """
    for pl in plans:
        p = pl.param
        cdt = _compute_dtype(p.dtype)
        length = p.shape[0] if p.dim() else 1
        buffer = next((buffers[e.index] for e in pl.entries if buffers[e.index] is not None), None)
        slots = 6 if pl.linear else (5 if buffer is not None else 4)
        for r0, r1 in pl.tiles():
            q = _rows(p, r0, r1, cdt)
            stacked = work.stack(slots, q, cdt)
            w = torch.sub(_rows(pl.snapshot, r0, r1, cdt), q, out=stacked[0])  # -u
            torch.mul(q, q, out=stacked[1])
            torch.mul(w, w, out=stacked[2])
            torch.mul(q, w, out=stacked[3])
            if slots > 4:
                if buffer is not None:
                    torch.mul(w, _rows(buffer, r0, r1, cdt), out=stacked[4])
                else:
                    stacked[4].zero_()
            if slots > 5:
                stacked[5].copy_(q)
            first = 0 if pl.linear else 1  # -u itself is summed for translations only
            for e in pl.entries:
                k = weight_decay[e.index]
                rows = _post_rows(e, k)[:slots]
                if buffers[e.index] is None and slots > 4:
                    rows[4] = {}
                key = ("post", e.index, k, buffers[e.index] is not None, slots - first)
                matrix = work.coefficients(key, rows[first:], out.device)
                _reduce_into(out, e, stacked[first:], r0, r1, length, matrix)


@torch.no_grad()
def current_charges(plans: list[Plan], out: torch.Tensor, weight_decay: list[float], work: Workspace) -> None:
    """Add the charge, squared norm and decay term of the current weights into ``out`` (rows 0-2 of :data:`ROWS`)."""
    for pl in plans:
        p = pl.param
        cdt = _compute_dtype(p.dtype)
        length = p.shape[0] if p.dim() else 1
        for r0, r1 in pl.tiles():
            q = _rows(p, r0, r1, cdt)
            stacked = work.stack(2, q, cdt)
            torch.mul(q, q, out=stacked[0])
            stacked[1].copy_(q)
            for e in pl.entries:
                k = weight_decay[e.index]
                charge = {CHARGE: e.sign, DECAY: e.sign * k}
                rows = [{NORM: 1.0}, charge] if e.translation else [{NORM: 1.0, **charge}, {}]
                _reduce_into(
                    out, e, stacked, r0, r1, length, work.coefficients(("now", e.index, k, 2), rows, out.device)
                )
