"""An online recorder of Noether charges during training with :class:`torch.optim.SGD`.

Usage::

    tracker = NoetherTracker(model, optimizer, find_symmetries(model, x))   # records step 0
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        tracker.step()            # right after optimizer.step(), before any scheduler.step()
    table = tracker.table()       # tidy pandas table; tracker.save(path, config) writes it with the run config

Per symmetry group and unit it records the charge :math:`C_n` (:func:`noether_lib.symmetry.conserved_quantity`)
and, for the step :math:`n-1\\to n`, the quantities the predictions of :mod:`noether_lib.noether` need: the signed
squared norms :math:`\\langle g,Jg\\rangle` of the loss gradient and :math:`\\langle u,Ju\\rangle` of the update
:math:`u=q_n-q_{n-1}`, the projected update :math:`\\langle\\xi(q_{n-1}),u\\rangle` (the discrete Noether charge) and
the projected gradient :math:`\\langle\\xi(q_{n-1}),g\\rangle` (zero when the symmetry holds).

How it stays cheap: the update is read from the optimizer, not from a copy of the weights (:math:`u=-\\eta v` from
the momentum buffer :math:`v`; without momentum :math:`u=-\\eta(g+kq_n)/(1-\\eta k)` from the new weights). Each step
concatenates the tracked parameters, gradients and buffers into one flat tensor, forms the few products needed
(:math:`q\\cdot q`, :math:`g\\cdot g`, :math:`q\\cdot g`, ... and the plain sums for translations), reduces them per
unit with one ``index_add_`` and one small matrix product, and writes the result into a float64 buffer on the
device: a fixed number of kernels, whatever the number of layers, and no host synchronisation. The buffer is copied
to the host once per ``chunk`` records. With ``every=N`` a row is written every N steps; the squared norms are then
summed over the steps since the last row (in float64) and ``steps`` says how many.
"""
from __future__ import annotations

import copy

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noether_lib.symmetry import SymmetryError, SymmetryGroup, verify_symmetries

__all__ = ["NoetherTracker", "SUPPORTED_SCHEDULERS", "check_optimizer", "load_tracking"]

#: Learning-rate schedulers whose schedules are piecewise constant, which the predictions cover.
SUPPORTED_SCHEDULERS: tuple[type, ...] = (torch.optim.lr_scheduler.StepLR, torch.optim.lr_scheduler.MultiStepLR)

_HYPER = ("momentum", "dampening", "weight_decay")
_STACKED = ("q", "g", "b")  # the flat rows: weights, gradients and (with momentum) momentum buffers


def _row_names(momentum: bool) -> list[str]:
    """Names of the recorded rows: the plain sums (q, g[, b]), the squares (qq, gg[, bb]) and the cross products
    of each row with the previous one, cyclically (qb, qg, gb with momentum; qg, qg without)."""
    names = list(_STACKED[: 3 if momentum else 2])
    k = len(names)
    crossed = ["".join(sorted((names[i], names[i - 1]), key=_STACKED.index)) for i in range(k)]
    return names + [a + a for a in names] + crossed


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`ValueError` unless ``optimizer`` is one the predictions cover: :class:`torch.optim.SGD` with
    heavy-ball momentum (not Nesterov), dampening and weight decay, minimising."""
    if type(optimizer) is not torch.optim.SGD:
        raise ValueError(
            f"the Noether predictions cover torch.optim.SGD (heavy-ball momentum, dampening, weight decay) only; "
            f"got {type(optimizer).__name__}, whose update is not the modified equation of Eq. 3"
        )
    for i, group in enumerate(optimizer.param_groups):
        if group.get("nesterov", False):
            raise ValueError(f"param group {i}: nesterov=True is not covered (the predictions model heavy ball)")
        if group.get("maximize", False):
            raise ValueError(f"param group {i}: maximize=True is not covered")
        if not 0.0 <= group["momentum"] < 1.0:
            raise ValueError(f"param group {i}: momentum must lie in [0, 1), got {group['momentum']}")
        if group["momentum"] > 0 and not 0.0 <= group["dampening"] < 1.0:
            raise ValueError(f"param group {i}: dampening must lie in [0, 1), got {group['dampening']}")


class NoetherTracker:
    """Records the charges of ``groups`` while ``model`` is trained by ``optimizer``.

    Args:
        model: the network.
        optimizer: a :class:`torch.optim.SGD` over (at least) every parameter of every group.
        groups: the symmetry groups to track (e.g. :func:`noether_lib.symmetry.find_symmetries`).
        every: write a row every ``every`` steps (1: every step, as the predictions need).
        scheduler: the learning-rate scheduler, if any; it must be piecewise constant
            (:data:`SUPPORTED_SCHEDULERS`).
        verify: optional ``(inputs, targets)``; the groups are then proven on the model with
            :func:`noether_lib.symmetry.verify_symmetries` before anything is recorded.
        chunk: rows kept on the device before one copy to the host.

    Attach the tracker after any ``optimizer.load_state_dict``: it keeps references to the optimizer's per-parameter
    state.

    Raises:
        ValueError: an optimizer or scheduler the predictions do not cover, a parameter that is not optimised,
            members of a group with different hyperparameters, ``every < 1``.
        noether_lib.symmetry.SymmetryError: a group that does not fit the model's parameters or (with ``verify``)
            a symmetry the model does not have.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, groups: Sequence[SymmetryGroup], *,
                 every: int = 1, scheduler: Any = None, verify: tuple[torch.Tensor, torch.Tensor] | None = None,
                 chunk: int = 256) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if not (isinstance(chunk, int) and chunk >= 1):
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        check_optimizer(optimizer)
        if scheduler is not None and not isinstance(scheduler, SUPPORTED_SCHEDULERS):
            raise ValueError(
                f"{type(scheduler).__name__} changes the learning rate in a way the predictions do not cover; "
                f"use a piecewise-constant schedule: {', '.join(s.__name__ for s in SUPPORTED_SCHEDULERS)}"
            )
        groups = list(groups)
        if not groups:
            raise ValueError("no symmetry groups to track")
        self.model, self.optimizer, self.groups, self.every = model, optimizer, groups, every
        params = dict(model.named_parameters())
        self._check_groups(params)
        if verify is not None:
            verify_symmetries(model, groups, *verify)

        owner = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self._group_owner: list[int] = []
        for group in groups:
            owners = set()
            for m in group.members:
                p = params[m.parameter]
                if id(p) not in owner:
                    raise ValueError(f"group {group.name!r}: parameter {m.parameter!r} is not in the optimizer")
                owners.add(owner[id(p)])
            settings = {tuple(optimizer.param_groups[i][h] for h in ("lr",) + _HYPER) for i in owners}
            if len(settings) > 1:
                raise ValueError(f"group {group.name!r}: its members are optimised with different hyperparameters")
            self._group_owner.append(min(owners))
        self._settings = [{h: float(optimizer.param_groups[i][h]) for h in _HYPER} for i in self._group_owner]
        self._momentum = any(s["momentum"] > 0 for s in self._settings)
        self._build_layout(params)

        self._names = _row_names(self._momentum)
        rows = self._rows = len(self._names)
        self._chunk = chunk
        device = self._tensors[0].device
        self._buffer = torch.zeros(chunk, 2 if every > 1 else 1, rows, self._slots, dtype=torch.float64, device=device)
        self._window = torch.zeros(rows, self._slots, dtype=torch.float64, device=device) if every > 1 else None
        # the per-element rows live in one persistent tensor; its views are made once, not every step
        # row 0 repeats the last stacked row, so that each row times the one above it is a single product of views
        k = 3 if self._momentum else 2
        values = self._values = torch.empty(rows + 1, self._numel, dtype=self._dtype, device=device)
        self._flat_stacked = values[: k + 1].view(-1)
        self._stacked, self._shifted = values[1: k + 1], values[:k]
        self._squares, self._crossed = values[k + 1: 2 * k + 1], values[2 * k + 1:]
        self._segment_views = [values[1:, a:b].view(rows, before, units, after)
                               for a, b, before, units, after in self._segments]
        self._flat_buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._host: list[np.ndarray] = []
        self._filled = 0
        self._meta: list[tuple[int, list[float], int]] = []   # (step, lr per group, steps in window)
        self._step = 0
        self._window_steps = 0
        self._window_lr: list[float] | None = None
        self._last_lr: list[float] | None = None
        self._lr_changed_last = False
        self._pending = 0
        self._snapshot: list[float] | None = None
        self._hook = optimizer.register_step_post_hook(self._after_optimizer_step)
        self._last_values: torch.Tensor | None = None
        self._initial = self._reduce(initial=True).to(torch.float64).cpu().numpy() @ self._mix

    # -- setup ------------------------------------------------------------------------------------------------
    def _check_groups(self, params: Mapping[str, torch.Tensor]) -> None:
        dtypes = set()
        for group in self.groups:
            if group.kind not in ("translation", "scale", "rescale"):
                raise SymmetryError(f"group {group.name!r}: unknown kind {group.kind!r}")
            for m in group.members:
                if m.parameter not in params:
                    raise SymmetryError(f"group {group.name!r}: the model has no parameter {m.parameter!r}")
                p = params[m.parameter]
                bad_dim = not -p.dim() <= m.dim < max(p.dim(), 1)
                if bad_dim or (group.num_units > 1 and p.shape[m.dim] % group.num_units):
                    raise SymmetryError(
                        f"group {group.name!r}: parameter {m.parameter!r} of shape {tuple(p.shape)} has no "
                        f"{group.num_units} units along dim {m.dim}"
                    )
                if not p.requires_grad:
                    raise ValueError(f"group {group.name!r}: parameter {m.parameter!r} is frozen")
                dtypes.add(p.dtype)
        if len(dtypes) > 1:
            raise ValueError(f"tracked parameters must share one dtype, got {sorted(map(str, dtypes))}")

    def _build_layout(self, params: Mapping[str, torch.Tensor]) -> None:
        """Lay the members out in one flat row: each as ``(before, units, after)`` (unit ``u``'s slice is
        ``[:, u, :]``, as in :meth:`SymmetryGroup.slices`), ordered so that members with ``before == 1`` and the
        same ``after`` are adjacent and are reduced by one ``sum`` (all biases together, for instance)."""
        entries = []  # (before, after, units, parameter, sign, first unit)
        unit = 0
        self._unit_group: list[int] = []
        self._translation: list[bool] = []
        for gi, group in enumerate(self.groups):
            for m in group.members:
                p = params[m.parameter]
                dim = m.dim % max(p.dim(), 1)
                units = group.num_units
                before = 1 if units == 1 else int(np.prod(p.shape[:dim], dtype=np.int64))
                entries.append((before, p.numel() // (before * units), units, p, float(m.sign), unit))
            self._unit_group.extend([gi] * group.num_units)
            self._translation.extend([group.kind == "translation"] * group.num_units)
            unit += group.num_units
        entries.sort(key=lambda e: (e[0] != 1, e[1] if e[0] == 1 else 0))
        segments: list[list[int]] = []  # [start, end, before, units, after]
        signs, slot_unit = [], []
        start = 0
        for before, after, units, p, sign, first in entries:
            if segments and before == 1 and segments[-1][2] == 1 and segments[-1][4] == after:
                segments[-1][1] += p.numel()
                segments[-1][3] += units
            else:
                segments.append([start, start + p.numel(), before, units, after])
            start += p.numel()
            signs.extend([sign] * units)
            slot_unit.extend(range(first, first + units))
        tensors = [e[3] for e in entries]
        self._tensors = tensors
        self._units, self._slots = unit, len(slot_unit)
        dtype = tensors[0].dtype
        self._dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        self._segments = [tuple(seg) for seg in segments]
        # slots to units: signed sums per unit (the charges), then unsigned ones (the unit's total squared norm)
        slots = np.arange(len(slot_unit))
        mix = np.zeros((len(slot_unit), 2 * unit))
        mix[slots, slot_unit] = signs
        mix[slots, np.asarray(slot_unit) + unit] = 1.0
        self._mix = mix
        self._flat_q = [p.detach().view(-1) if p.is_contiguous() else None for p in tensors]
        self._states = [self.optimizer.state[p] for p in tensors]
        self._numel = sum(p.numel() for p in tensors)

    # -- recording --------------------------------------------------------------------------------------------
    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._pending += 1
        self._snapshot = [float(optimizer.param_groups[i]["lr"]) for i in self._group_owner]
        for i, settings in zip(self._group_owner, self._settings):
            for h in _HYPER:
                if float(optimizer.param_groups[i][h]) != settings[h]:
                    raise RuntimeError(f"{h} changed during training; the predictions assume it constant")

    @torch.no_grad()
    def _reduce(self, initial: bool = False) -> torch.Tensor:
        """Per-slot (member and unit) sums of the rows of :func:`_row_names`, shape ``(rows, slots)``."""
        q = [f if f is not None else p.detach().reshape(-1) for f, p in zip(self._flat_q, self._tensors)]
        if initial:
            zeros = [torch.zeros_like(x) for x in q]
            pieces = q + zeros + (zeros if self._momentum else [])
        else:
            grads = []
            for p in self._tensors:
                if p.grad is None:
                    raise RuntimeError("a tracked parameter has no gradient: was backward() called before step()?")
                grads.append(p.grad.reshape(-1))
            pieces = q + grads
            if self._momentum:
                pieces += [self._flat_buffer(i, x) for i, x in enumerate(q)]
        pieces = pieces[-len(q):] + pieces
        if pieces[0].dtype == self._values.dtype:
            torch.cat(pieces, out=self._flat_stacked)
        else:
            self._flat_stacked.copy_(torch.cat(pieces))
        torch.mul(self._stacked, self._stacked, out=self._squares)
        torch.mul(self._stacked, self._shifted, out=self._crossed)
        return torch.cat([view.sum((1, 3)) for view in self._segment_views], dim=1)

    def _flat_buffer(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """The flattened momentum buffer of a tracked tensor (zeros before it exists), cached while it is the same."""
        buffer = self._states[index].get("momentum_buffer")
        if buffer is None:
            return torch.zeros_like(like)
        cached = self._flat_buffers.get(index)
        if cached is None or cached[0] is not buffer:
            cached = self._flat_buffers[index] = (buffer, buffer.view(-1) if buffer.is_contiguous() else None)
        return cached[1] if cached[1] is not None else buffer.reshape(-1)

    def step(self) -> None:
        """Record the step just taken; call it once right after each ``optimizer.step()``."""
        if self._pending != 1:
            raise RuntimeError(
                f"tracker.step() must follow exactly one optimizer.step(); {self._pending} happened since the last call"
            )
        self._pending = 0
        lr = self._snapshot
        changed = self._last_lr is not None and lr != self._last_lr
        if changed and self._lr_changed_last:
            raise RuntimeError(
                f"the learning rate changed on two consecutive steps (step {self._step + 1}): only piecewise-constant "
                "schedules are covered by the predictions"
            )
        self._lr_changed_last, self._last_lr = changed, lr
        if self._window is not None and self._window_steps and lr != self._window_lr:
            self._write(None)  # close the window at a learning-rate change, so each window has one rate
        self._step += 1
        values = self._reduce()
        self._window_lr = lr
        self._window_steps += 1
        if self._window is not None:
            self._window.add_(values)
            self._last_values = values
        if self._step % self.every == 0:
            self._write(values)

    def _write(self, values: torch.Tensor | None) -> None:
        if self._filled == self._chunk:
            self._flush()
        row = self._buffer[self._filled]
        if self._window is not None:
            row[0].copy_(values if values is not None else self._last_values)
            row[1].copy_(self._window)
            self._window.zero_()
        else:
            row[0].copy_(values)
        self._filled += 1
        self._meta.append((self._step, list(self._window_lr), self._window_steps))
        self._window_steps = 0

    def _flush(self) -> None:
        if self._filled:
            self._host.append(self._buffer[: self._filled].cpu().numpy().copy())
            self._filled = 0

    def close(self) -> None:
        """Detach from the optimizer (the recorded table stays available)."""
        self._hook.remove()

    # -- output -----------------------------------------------------------------------------------------------
    #: The attributes that hold the record so far; everything else is rebuilt from the model, optimizer and groups.
    _RECORD = ("_initial", "_host", "_buffer", "_filled", "_meta", "_step", "_window_steps", "_window_lr", "_last_lr",
               "_lr_changed_last", "_window", "_last_values")

    def state_dict(self) -> dict[str, Any]:
        """A copy of the record so far (tensors on the host), for checkpoints of interrupted runs."""
        state: dict[str, Any] = {}
        for name in self._RECORD:
            value = getattr(self, name, None)
            state[name] = value.detach().cpu().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the record saved by :meth:`state_dict`.

        Build the tracker on the same model, optimizer and groups *after* restoring the model and the optimizer
        (it holds references to the optimizer's state), then call this.
        """
        missing = [name for name in self._RECORD if name not in state]
        if missing:
            raise ValueError(f"not a NoetherTracker state: missing {missing}")
        for name in self._RECORD:
            current, value = getattr(self, name, None), state[name]
            if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor) and current.shape == value.shape:
                current.copy_(value)
            else:
                setattr(self, name, value.to(self._buffer.device) if isinstance(value, torch.Tensor)
                        else copy.deepcopy(value))

    def table(self) -> pd.DataFrame:
        """The records as a tidy table, one row per (recorded step, unit).

        Columns: ``step`` (updates taken), ``time`` (:math:`t=\\sum\\eta`), ``group``, ``kind``, ``unit``,
        ``charge`` (:math:`C_n`), ``norm_sq`` (the unit's unsigned :math:`\\sum|\\text{slice}|^2` over its members);
        for the step(s) since the previous row ``grad_sq`` (:math:`\\langle g,Jg\\rangle`), ``update_sq``
        (:math:`\\langle u,Ju\\rangle`), ``projected_update`` (:math:`\\langle\\xi(q_{n-1}),u_{n-1}\\rangle`),
        ``grad_proj`` (:math:`\\langle\\xi(q_{n-1}),g_{n-1}\\rangle`), ``lr``, ``steps``; and the hyperparameters
        ``momentum``, ``dampening``, ``weight_decay``. Step 0 holds the initial charge (the step columns are NaN).
        """
        self._flush()
        records = np.concatenate(self._host) if self._host else np.zeros((0, 1, self._rows, self._slots))
        records = records @ self._mix  # per slot to per unit: signed sums, then unsigned ones
        unsigned = records[..., self._units:]
        records = records[..., : self._units]
        count = len(self._meta)
        lr = np.array([m[1] for m in self._meta], dtype=np.float64).reshape(count, len(self.groups))
        lr_unit = lr[:, self._unit_group]
        steps_in = np.array([m[2] for m in self._meta], dtype=np.float64)
        instant = records[:, 0]
        summed = records[:, -1]
        names = self._names
        inst = {n: instant[:, i] for i, n in enumerate(names)}
        tot = {n: summed[:, i] for i, n in enumerate(names)}
        k = np.array([self._settings[g]["weight_decay"] for g in self._unit_group])
        beta = np.array([self._settings[g]["momentum"] for g in self._unit_group])
        with_momentum = beta > 0
        translation = np.array(self._translation)

        def derived(r: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            denom = 1.0 - lr_unit * k
            zeros = np.zeros_like(r["q"])
            bb, qb, gb, b = (r["bb"], r["qb"], r["gb"], r["b"]) if self._momentum else (zeros,) * 4
            update_sq = np.where(with_momentum, lr_unit**2 * bb,
                                 lr_unit**2 * (r["gg"] + 2 * k * r["qg"] + k**2 * r["qq"]) / denom**2)
            new_q_dot_u = np.where(with_momentum, -lr_unit * qb, -lr_unit * (r["qg"] + k * r["qq"]) / denom)
            u_dot_g = np.where(with_momentum, -lr_unit * gb, -lr_unit * (r["gg"] + k * r["qg"]) / denom)
            sum_u = np.where(with_momentum, -lr_unit * b, -lr_unit * (r["g"] + k * r["q"]) / denom)
            return {
                "grad_sq": r["gg"],
                "update_sq": update_sq,
                "projected_update": np.where(translation, sum_u, new_q_dot_u - update_sq),
                "grad_proj": np.where(translation, r["g"], r["qg"] - u_dot_g),
            }

        now, window = derived(inst), derived(tot)
        charge = np.where(translation, inst["q"], inst["qq"]) if count else np.zeros((0, self._units))
        qq = names.index("qq")
        initial = np.where(translation, self._initial[0, : self._units], self._initial[qq, : self._units])
        norm_sq = unsigned[:, 0, qq]
        times = np.concatenate([np.zeros((1, self._units)), np.cumsum(lr_unit * steps_in[:, None], axis=0)])

        def column(first: np.ndarray | float, rest: np.ndarray) -> np.ndarray:
            return np.concatenate([np.broadcast_to(first, (1, self._units)), rest]).reshape(-1)

        nan = np.nan
        units = self._units
        data = {
            "step": np.repeat(np.concatenate([[0], [m[0] for m in self._meta]]).astype(int), units),
            "time": times.reshape(-1),
            "group": np.tile([self.groups[g].name for g in self._unit_group], count + 1),
            "kind": np.tile([self.groups[g].kind for g in self._unit_group], count + 1),
            "unit": np.tile(np.concatenate([np.arange(g.num_units) for g in self.groups]), count + 1),
            "charge": column(initial, charge),
            "norm_sq": column(self._initial[qq, self._units:], norm_sq),
            "grad_sq": column(nan, window["grad_sq"]),
            "update_sq": column(nan, window["update_sq"]),
            "projected_update": column(nan, now["projected_update"]),
            "grad_proj": column(nan, now["grad_proj"]),
            "lr": column(nan, lr_unit),
            "steps": column(nan, np.repeat(steps_in[:, None], units, axis=1)),
        }
        for h in _HYPER:
            data[h] = np.tile([self._settings[g][h] for g in self._unit_group], count + 1)
        return pd.DataFrame(data)

    def save(self, path: str | Path, config: Mapping[str, Any]) -> Path:
        """Write :meth:`table` as CSV to ``path`` and, beside it (``.json``), ``config`` with the tracked groups.

        Returns the CSV's path; :func:`load_tracking` reads both back.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table().to_csv(path, index=False)
        meta = {"config": dict(config), "every": self.every,
                "groups": [{"name": g.name, "kind": g.kind, "num_units": g.num_units,
                            "members": [[m.parameter, m.dim, m.sign] for m in g.members]} for g in self.groups]}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
        return path


def load_tracking(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read what :meth:`NoetherTracker.save` wrote: ``(table, metadata)``."""
    path = Path(path)
    return pd.read_csv(path), json.loads(path.with_suffix(".json").read_text())
