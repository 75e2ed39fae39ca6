"""How the tracker lays out the members of the symmetry groups and reduces them per unit, tile by tile.

Each member is one *entry*: its parameter, the axis of its units, its sign, its optimizer parameter group and where
its units start on the tracker's unit axis. A parameter may be a member of several groups (a convolution is the
incoming side of a scale symmetry along its output axis and the outgoing side of a rescale along its input axis),
so the work is planned per parameter (:class:`Plan`). One call of :func:`measure` reads each parameter once, tile
by tile (rows along its first axis): the weights, the weights before the step (the snapshot), the gradient. It forms
each elementwise product once per tile (:math:`q\\cdot q`, :math:`q\\cdot w`, ..., see :func:`_slots`) and reduces the
stacked products once per axis (row sums for the entries along the first axis, column sums for the others); each
entry then sums its units out of those small partial sums. No temporary is larger than a tile, whatever the size
of the layer, and the default tile (``2**16`` elements on CPU) keeps a tile's products in the core's cache.
Low-precision weights (bfloat16, float16) are reduced in float32. Where it applies (float32 or float64 weights on
the CPU, units along the first two axes, no translation), the compiled pass of :mod:`noether_lib.tracking.kernel`
computes the same row and column sums in one loop instead (the plan is marked ``compiled``).

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

from noether_lib.tracking.kernel import Kernel
from noether_lib.tracking.optimizers import LOW_PRECISION

__all__ = ["ROWS", "Entry", "Plan", "Workspace", "plan", "measure"]

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
class TileView:
    """One tile of a plan (made once): its rows, the weights' and the snapshot's rows, the workspace's stacked
    products, the tile for ``w`` and, for low-precision weights, those for ``q``, ``g``, ``b`` in float32."""

    r0: int
    r1: int
    q: torch.Tensor
    before: torch.Tensor
    products: torch.Tensor
    slots: tuple[torch.Tensor, ...]
    w: torch.Tensor
    q_wide: torch.Tensor | None
    g_wide: torch.Tensor | None
    b_wide: torch.Tensor | None


@dataclass
class ColumnSums:
    """Per-column sums of a plan's products along the axes from ``dim`` on: a tile's rows times the axes before
    ``dim`` (``height``) are summed out, ``size`` columns are kept; in float64 (``sums``), from each tile's sums in
    the compute dtype (``partial``, widened in ``wide`` when that is not float64)."""

    dim: int
    height: int
    size: int
    sums: torch.Tensor
    partial: torch.Tensor
    wide: torch.Tensor | None


@dataclass
class Plan:
    """The entries of one parameter, its snapshot (the weights before the step), its tile height and its partial
    sums: per row (for entries along the first axis) and per column of each other axis."""

    param: torch.Tensor
    snapshot: torch.Tensor
    entries: list[Entry] = field(default_factory=list)
    rows: int = 1
    compiled: bool = False
    row_sums: torch.Tensor | None = None
    row_partial: torch.Tensor | None = None
    columns: list[ColumnSums] = field(default_factory=list)
    _views: list[TileView] | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        return self.param.shape[0] if self.param.dim() else 1

    @property
    def quadratic(self) -> bool:
        return any(not e.translation for e in self.entries)

    @property
    def linear(self) -> bool:
        return any(e.translation for e in self.entries)

    @property
    def nbytes(self) -> int:
        """The bytes it holds: the snapshot and the partial sums."""
        held = [self.snapshot, self.row_sums, self.row_partial]
        held += [t for c in self.columns for t in (c.sums, c.partial, c.wide)]
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    @property
    def tile_elements(self) -> int:
        """The elements of its largest tile."""
        return min(self.rows * max(self.param.numel() // self.length, 1), max(self.param.numel(), 1))

    def tiles(self) -> list[tuple[int, int]]:
        return [(r, min(r + self.rows, self.length)) for r in range(0, self.length, self.rows)]

    def views(self, work: Workspace) -> list[TileView]:
        """The plan's tiles, with their views (made on first use, and again when the weights' storage changed)."""
        if self._views is None or self._views[0].q.data_ptr() != _tile(self.param, 0, self.rows).data_ptr():
            cdt = compute_dtype(self.param.dtype)
            self._views = []
            count = stack_size(self) - _spare(self)
            for r0, r1 in self.tiles():
                q = _tile(self.param, r0, r1)
                stack = work.tiles(stack_size(self), q, cdt)
                tiles = stack.unbind(0)
                converted = tiles[count + 1 :] if len(tiles) > count + 1 else (None, None, None)
                before = _tile(self.snapshot, r0, r1)
                self._views.append(TileView(r0, r1, q, before, stack[:count], tiles[:count], tiles[count], *converted))
        return self._views


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the products are formed in: float32 for low-precision weights, else the weights' own."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _compilable(pl: Plan) -> bool:
    """Whether the compiled pass (:mod:`noether_lib.tracking.kernel`) covers the plan's weights."""
    p = pl.param
    return (
        p.device.type == "cpu"
        and p.dtype in (torch.float32, torch.float64)
        and p.dim() >= 1
        and p.is_contiguous()
        and not pl.linear
        and all(e.dim <= 1 for e in pl.entries)
    )


def plan(
    params: list[torch.Tensor], entries: list[tuple[int, Entry]], tile_elements: int, kernel: Kernel | None = None
) -> list[Plan]:
    """One :class:`Plan` per distinct parameter (``entries``: ``(index into params, entry)``), with tiles of about
    ``tile_elements`` elements that never split a unit along the first axis, and its partial-sum buffers; with a
    compiled ``kernel``, the plans it covers are marked ``compiled``."""
    plans: dict[int, Plan] = {}
    for i, entry in entries:
        p = params[i]
        if id(p) not in plans:
            plans[id(p)] = Plan(p, torch.empty(p.shape, dtype=p.dtype, device=p.device))
        plans[id(p)].entries.append(entry)
    for pl in plans.values():
        p, length = pl.param, pl.length
        row = max(p.numel() // max(length, 1), 1)
        step = 1
        for e in pl.entries:
            if e.dim == 0 and e.units > 1:
                step = math.lcm(step, length // e.units)
        pl.rows = min(max(step, (tile_elements // row) // step * step), length)
        cdt = compute_dtype(p.dtype)
        most = len(_slots(pl, update=True, gradients=True, momentum=True))
        pl.compiled = kernel is not None and _compilable(pl)
        if any(e.dim == 0 for e in pl.entries) or pl.compiled:
            pl.row_sums = torch.empty(most, length, dtype=torch.float64, device=p.device)
            if cdt != torch.float64:
                pl.row_partial = torch.empty(most, pl.rows, dtype=cdt, device=p.device)
        for d in sorted({e.dim for e in pl.entries if e.dim > 0}):
            size = math.prod(p.shape[d:])
            sums, partial = (torch.empty(most, size, dtype=t, device=p.device) for t in (torch.float64, cdt))
            wide = None if cdt == torch.float64 else torch.empty_like(sums)
            pl.columns.append(ColumnSums(d, math.prod(p.shape[1:d]), size, sums, partial, wide))
    return list(plans.values())


class Workspace:
    """Preallocated tiles per compute dtype and device (no allocation per step), and the cached coefficient
    matrices. A plan's tile stack holds its products (:func:`stack_size`), then ``w`` and, for low-precision
    weights, ``q``, ``g`` and ``b`` in the compute dtype."""

    def __init__(self, plans: list[Plan]) -> None:
        sizes: dict[tuple[torch.dtype, torch.device], int] = {}
        for pl in plans:
            key = (compute_dtype(pl.param.dtype), pl.param.device)
            sizes[key] = max(stack_size(pl) * pl.tile_elements, sizes.get(key, 0))
        self._tiles = {key: torch.empty(size, dtype=key[0], device=key[1]) for key, size in sizes.items()}
        self._coefficients: dict[tuple, torch.Tensor] = {}

    def tiles(self, count: int, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``count`` tiles shaped like ``like``, stacked: ``(count, *like.shape)``."""
        return self._tiles[(dtype, like.device)][: count * like.numel()].view(count, *like.shape)

    def coefficients(self, key: tuple, rows: list[dict[int, float]], device: torch.device) -> torch.Tensor:
        """The ``(len(ROWS), slots)`` matrix mapping an entry's reduced slots to the recorded rows (cached)."""
        if key not in self._coefficients:
            matrix = torch.zeros(len(ROWS), len(rows), dtype=torch.float64)
            for slot, row in enumerate(rows):
                for r, c in row.items():
                    matrix[r, slot] = c
            self._coefficients[key] = matrix.to(device)
        return self._coefficients[key]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tiles.values())


def _spare(pl: Plan) -> int:
    return 1 if compute_dtype(pl.param.dtype) == pl.param.dtype else 4


def stack_size(pl: Plan) -> int:
    """Tiles in the plan's stack: the most products it forms in one pass, and the spare tiles."""
    return len(_slots(pl, update=True, gradients=True, momentum=True)) + _spare(pl)


def _slots(pl: Plan, *, update: bool, gradients: bool, momentum: bool) -> tuple[str, ...]:
    """The slots one :func:`measure` call reduces for ``pl``: products of ``q`` (the weights now), ``w`` (the
    snapshot minus ``q``, minus the update), ``g`` (the gradient) and ``b`` (the momentum buffer), named by their two
    letters, and a single letter for the quantity itself (translations)."""
    wanted = ["qq"]
    if update:
        wanted += ["qw", "ww"] + (["wb"] if momentum else [])
    if gradients:
        wanted += ["gg"] + (["qg"] if pl.quadratic else [])
    if pl.linear:
        wanted += ["q"] + (["w"] if update else []) + (["g"] if gradients else [])
    return tuple(wanted)


def _charge_rows(e: Entry, k: float) -> dict[str, dict[int, float]]:
    """Slot to rows for the charge, squared norm and decay term of the current weights."""
    charge = {CHARGE: e.sign, DECAY: e.sign * k}
    return {"qq": {NORM: 1.0}, "q": charge} if e.translation else {"qq": {NORM: 1.0, **charge}}


def _update_rows(e: Entry) -> dict[str, dict[int, float]]:
    """Slot to rows for U, P and R of the update just measured (``w = -u``: P = <xi(q_before), u>)."""
    s = e.sign
    if e.translation:
        return {"ww": {UPDATE: s}, "w": {PROJECTED: -s}}
    return {"ww": {UPDATE: s, PROJECTED: -s}, "qw": {PROJECTED: -s}, "wb": {MOMENTUM: -s}}


def _gradient_rows(e: Entry) -> dict[str, dict[int, float]]:
    """Slot to rows for G and gamma of the gradient about to be used."""
    return {"gg": {GRAD: e.sign}, "g" if e.translation else "qg": {GRAD_PROJ: e.sign}}


def _tile(tensor: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    t = tensor.detach()
    return t[r0:r1] if t.dim() else t.reshape(1)


@torch.no_grad()
def measure(
    plans: list[Plan],
    work: Workspace,
    *,
    weight_decay: list[float],
    charges: torch.Tensor | None = None,
    update: bool = False,
    buffers: dict[int, torch.Tensor] | None = None,
    gradients: torch.Tensor | None = None,
    kernel: Kernel | None = None,
) -> None:
    """One pass over the tracked parameters; adds into the rows of :data:`ROWS` (``(len(ROWS), units)``).

    Args:
        plans, work: from :func:`plan` and :class:`Workspace`.
        kernel: the compiled pass, used for the plans marked ``compiled`` (the others are reduced tile by tile).
        weight_decay: per entry (``entry.index``), for the decay term.
        charges: if given, receives the charge, squared norm and decay term of the current weights and, with
            ``update``, :math:`U`, :math:`P` and (with ``buffers``) :math:`R` of the update since the snapshot,
            measured as :math:`u=q-q_\\text{snapshot}` (in the compute dtype: exact for weights that moved by less
            than a factor two), never read from the optimizer.
        buffers: per plan (its position in ``plans``), the momentum buffer after the step, where :math:`R` is wanted.
        gradients: if given, receives :math:`G` and :math:`\\gamma` of the current gradients at the current weights
            (those the optimizer is about to use), and the snapshot is set to the current weights.
    """
    buffers = buffers or {}
    for index, pl in enumerate(plans):
        if pl.param.shape != pl.snapshot.shape or pl.param.dtype != pl.snapshot.dtype:
            raise RuntimeError(
                f"a tracked parameter changed from {tuple(pl.snapshot.shape)} {pl.snapshot.dtype} to "
                f"{tuple(pl.param.shape)} {pl.param.dtype} after the tracker was built; build a new NoetherTracker"
            )
        grad = pl.param.grad if gradients is not None else None
        buffer = buffers.get(index) if update else None
        slots = _slots(pl, update=update, gradients=grad is not None, momentum=buffer is not None)
        if charges is None:
            slots = tuple(s for s in slots if s not in ("qq", "q"))
        if not (kernel is not None and pl.compiled and _compiled(pl, kernel, slots, update, grad, buffer, gradients)):
            _reduce(pl, work, slots, update, grad, buffer, snapshot=gradients is not None)
        if slots:
            _deposit(pl, work, slots, weight_decay, charges, gradients, update)


def _compiled(
    pl: Plan,
    kernel: Kernel,
    slots: tuple[str, ...],
    update: bool,
    grad: torch.Tensor | None,
    buffer: torch.Tensor | None,
    gradients: torch.Tensor | None,
) -> bool:
    """The plan's pass by the compiled kernel; ``False`` (nothing done) where a gradient or buffer does not fit it."""
    p = pl.param.detach()
    if not p.is_contiguous():
        return False
    for other in (grad, buffer):
        if other is not None and (other.dtype != p.dtype or other.shape != p.shape or not other.is_contiguous()):
            return False
    assert pl.row_sums is not None
    flags = ("qq" in slots, update, buffer is not None, grad is not None, gradients is not None, bool(pl.columns))
    n = len(slots)
    column = pl.columns[0].sums[:n] if pl.columns else None
    if column is not None:
        column.zero_()
    rows = p.shape[0]
    g, b = (None if t is None else t.detach().view(rows, -1) for t in (grad, buffer))
    q, before = p.view(rows, -1), pl.snapshot.view(rows, -1)
    kernel.run(flags, q, before, g, b, pl.row_sums[:n], column, threads=torch.get_num_threads())
    return True


def _reduce(
    pl: Plan,
    work: Workspace,
    slots: tuple[str, ...],
    update: bool,
    grad: torch.Tensor | None,
    buffer: torch.Tensor | None,
    *,
    snapshot: bool,
) -> None:
    """Form the ``slots`` products tile by tile and reduce them into the plan's row and column sums; with
    ``snapshot``, then copy each tile of the weights into the snapshot (the next update is measured from it)."""
    n = len(slots)
    pairs = [(i, s[0], s[1] if len(s) == 2 else None) for i, s in enumerate(slots)]
    columns = [
        (c.sums[:n], c.partial[:n], None if c.wide is None else c.wide[:n], c.height, c.size) for c in pl.columns
    ]
    for sums, *_ in columns:
        sums.zero_()
    rows = pl.row_sums[:n] if pl.row_sums is not None else None
    row_partial = pl.row_partial[:n] if pl.row_partial is not None else None
    for t in pl.views(work):
        q = t.q if t.q_wide is None else t.q_wide.copy_(t.q)
        vectors = {"q": q}
        if update:
            vectors["w"] = torch.sub(t.before, q, out=t.w)
        if snapshot:
            t.before.copy_(t.q)  # the next step's snapshot, while the tile is in cache
        if grad is not None:
            g = _tile(grad, t.r0, t.r1)
            vectors["g"] = g if t.g_wide is None else t.g_wide.copy_(g)
        if buffer is not None:
            b = _tile(buffer, t.r0, t.r1)
            vectors["b"] = b if t.b_wide is None else t.b_wide.copy_(b)
        for i, first, second in pairs:
            if second is None:
                t.slots[i].copy_(vectors[first])
            else:
                torch.mul(vectors[first], vectors[second], out=t.slots[i])
        if n:
            products = t.products[:n]
            if rows is not None:
                height = t.r1 - t.r0
                if row_partial is None:
                    torch.sum(products.view(n, height, -1), dim=2, out=rows[:, t.r0 : t.r1])
                else:
                    torch.sum(products.view(n, height, -1), dim=2, out=row_partial[:, :height])
                    rows[:, t.r0 : t.r1].copy_(row_partial[:, :height])
            for sums, partial, widened, height, size in columns:
                torch.sum(products.view(n, (t.r1 - t.r0) * height, size), dim=1, out=partial)
                sums.add_(partial if widened is None else widened.copy_(partial))


def _deposit(
    pl: Plan,
    work: Workspace,
    slots: tuple[str, ...],
    weight_decay: list[float],
    charges: torch.Tensor | None,
    gradients: torch.Tensor | None,
    update: bool,
) -> None:
    """Each entry's per-unit sums from the plan's partial sums, mapped to the recorded rows."""
    n = len(slots)
    device = pl.param.device
    for e in pl.entries:
        if e.dim == 0:
            assert pl.row_sums is not None
            sums = pl.row_sums[:n].reshape(n, e.units, -1).sum(2)
        else:
            sums = next(c for c in pl.columns if c.dim == e.dim).sums[:n].reshape(n, e.units, -1).sum(2)
        k = weight_decay[e.index]
        targets: list[tuple[torch.Tensor, tuple, dict[str, dict[int, float]]]] = []
        if charges is not None:
            rows = _charge_rows(e, k) | (_update_rows(e) if update else {})
            targets.append((charges, ("charges", e.index, k, update, slots), rows))
        if gradients is not None:
            targets.append((gradients, ("gradients", e.index, slots), _gradient_rows(e)))
        for out, key, mapping in targets:
            matrix = work.coefficients(key, [mapping.get(s, {}) for s in slots], device)
            out[:, e.first_unit : e.first_unit + e.units].addmm_(matrix, sums)
