"""The online recorder of Noether charges during training with any ``torch.optim`` optimizer.

Usage (the loop you already have; the tracker records inside the optimizer's step hooks)::

    tracker = NoetherTracker(model, optimizer, find_symmetries(model, x))   # records step 0
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()          # recorded here: before the step (weights, gradients), after it (the update)
        scheduler.step()          # any scheduler
    table = tracker.table()       # the charges table (noether_lib.schema); tracker.save(path, config) writes it

Per symmetry group and unit it records the charge :math:`C_n` (:func:`noether_lib.symmetry.conserved_quantity`)
and, for the step :math:`n-1\\to n`, the quantities the predictions of :mod:`noether_lib.noether` need
(:data:`noether_lib.tracking.layout.ROWS`). Everything is captured in ``optimizer.register_step_pre_hook`` and
``register_step_post_hook``: the gradients the optimizer uses (after a ``GradScaler`` unscaled them; a step the
scaler skips is no step) and the weights before the step; the weights after it are measured when the next step
begins (or at :meth:`NoetherTracker.step` or :meth:`NoetherTracker.table`), so a constraint applied between steps
is part of the recorded update. So ``zero_grad`` anywhere, ``optimizer.load_state_dict``
after attaching, a forgotten ``tracker.step()``, any learning-rate or momentum schedule and any optimizer or
precision are recorded as they happened. Training in eval mode is refused (batch norm's scale symmetries do not
hold there) unless ``allow_eval=True``.

Cost: one snapshot of the tracked weights (1x their memory), the reductions in chunks (no temporary larger than
``tile_elements``), a float64 buffer of ``chunk`` rows on the device copied to the host when full. Each optimizer
step's pre-hook reads the weights once: it measures the step before (from the snapshot) and this step's gradients
and takes the new snapshot in the same pass, on the CPU in compiled code (:mod:`noether_lib.tracking.kernel`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from noether_lib.symmetry import SymmetryError, SymmetryGroup, verify_symmetries
from noether_lib.tracking import kernel as kernels
from noether_lib.tracking import records
from noether_lib.tracking.layout import DECAY, GRAD, GRAD_PROJ, ROWS, UPDATE, Entry, Workspace, measure, plan
from noether_lib.tracking.optimizers import optimizer_label, read_hyperparameters

__all__ = ["NoetherTracker", "unwrap_model"]

_KINDS = ("translation", "scale", "rescale")


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose parameter names the symmetry groups use: ``torch.compile``'s and DDP's wrappers removed."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            inner = model.module
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _unique_names(groups: Sequence[SymmetryGroup]) -> list[SymmetryGroup]:
    """The groups with repeated names made distinct (``"name"``, ``"name #2"``, ...): the table is keyed by name."""
    seen: dict[str, int] = {}
    out = []
    for group in groups:
        count = seen[group.name] = seen.get(group.name, 0) + 1
        out.append(
            group if count == 1 else SymmetryGroup(group.kind, f"{group.name} #{count}", group.members, group.num_units)
        )
    return out


class NoetherTracker:
    """Records the charges of ``groups`` while ``model`` is trained by ``optimizer``.

    Args:
        model: the network (a ``torch.compile``'d or DDP-wrapped one is unwrapped for the parameter names).
        optimizer: any ``torch.optim`` optimizer over (at least) every parameter of every group.
        groups: the symmetry groups to track (e.g. :func:`noether_lib.symmetry.find_symmetries`). Repeated names
            are made distinct with a ``" #2"`` suffix.
        every: write a row every ``every`` steps (1: every step, as the predictions need).
        scheduler: accepted for compatibility and ignored: every scheduler records (the learning rates are read
            from the optimizer at each step).
        verify: optional ``(inputs, targets)``; the groups are then proven on the model with
            :func:`noether_lib.symmetry.verify_symmetries` (with ``loss_fn``) before anything is recorded.
        loss_fn: the training loss, for ``verify`` (default cross-entropy).
        allow_eval: record optimizer steps taken in eval mode instead of refusing them.
        chunk: rows kept on the device before one copy to the host (default 1 on CPU, 64 on CUDA).
        tile_elements: about the largest block reduced at once (bounds the temporaries; default 2**16 on CPU,
            2**24 on CUDA).
        kernel: ``"auto"`` (the compiled CPU pass of ``noether_lib.tracking.kernel`` where it applies and a C
            compiler exists, else PyTorch's), ``"compiled"`` (that pass, or an error saying why it is missing) or
            ``"torch"`` (PyTorch operations only). The numbers agree to round-off; the compiled pass is faster.

    Raises:
        ValueError: a parameter that is not optimised or frozen, ``every < 1``, no groups, an unknown ``kernel``.
        RuntimeError: ``kernel="compiled"`` where the compiled pass is not available.
        noether_lib.symmetry.SymmetryError: a group that does not fit the model's parameters or (with ``verify``)
            a symmetry the model does not have.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        groups: Sequence[SymmetryGroup],
        *,
        every: int = 1,
        scheduler: Any = None,
        verify: tuple[torch.Tensor, torch.Tensor] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        allow_eval: bool = False,
        chunk: int | None = None,
        tile_elements: int | None = None,
        kernel: str = "auto",
    ) -> None:
        for name, value in (("every", every), ("chunk", chunk or 1), ("tile_elements", tile_elements or 1)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        groups = _unique_names(list(groups))
        if not groups:
            raise ValueError("no symmetry groups to track")
        del scheduler  # every schedule records; the rates are read from the optimizer at each step
        self.model, self.optimizer, self.groups, self.every = model, optimizer, groups, every
        self._named = unwrap_model(model)
        self.allow_eval = allow_eval
        params = dict(self._named.named_parameters())
        self._check_groups(params)
        if verify is not None:
            self._verify(groups, verify, loss_fn)
        device = params[groups[0].members[0].parameter].device
        self._tile_elements = tile_elements or 1 << (24 if device.type == "cuda" else 16)
        self._kernel = self._load_kernel(kernel)
        self._build(params, optimizer)
        chunk = chunk or (64 if device.type == "cuda" else 1)
        self._chunk = chunk
        self._device = device
        self._buffer = torch.zeros(chunk, len(ROWS), self._units, dtype=torch.float64, device=device)
        self._work = torch.zeros(len(ROWS), self._units, dtype=torch.float64, device=device)
        self._next = torch.zeros(len(ROWS), self._units, dtype=torch.float64, device=device)
        self._window = torch.zeros(2, self._units, dtype=torch.float64, device=device) if every > 1 else None
        self._host: list[np.ndarray] = []
        self._filled = 0
        self._meta: list[dict[str, Any]] = []  # per row: step, steps in window, hyperparameters, time increments
        self._step = 0
        self._window_steps = 0
        self._window_time = np.zeros(len(self._param_groups))
        self._hyper: list[tuple] | None = None
        self._in_step = self._pending = False
        self._decay_written: list[float] | None = None
        self._optimizer_label = optimizer_label(optimizer)
        initial = torch.zeros(len(ROWS), self._units, dtype=torch.float64, device=device)
        measure(self._plans, self._workspace, weight_decay=self._weight_decays(), charges=initial, kernel=self._kernel)
        self._initial = initial[:3].cpu().numpy()
        self._initial_hyper = [tuple(read_hyperparameters(optimizer, i)) for i in self._param_groups]
        self._hooks = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]

    # -- setup ------------------------------------------------------------------------------------------------
    @staticmethod
    def _load_kernel(choice: str) -> kernels.Kernel | None:
        if choice not in ("auto", "compiled", "torch"):
            raise ValueError(f"kernel must be 'auto', 'compiled' or 'torch', got {choice!r}")
        if choice == "torch":
            return None
        loaded = kernels.load()
        if loaded is None and choice == "compiled":
            raise RuntimeError(f"the compiled tracker pass is not available: {kernels.unavailable_reason()}")
        return loaded

    @property
    def kernel(self) -> str:
        """Which pass measures the weights, ``"compiled"`` (for the parameters it covers) or ``"torch"``."""
        return "compiled" if self._kernel is not None and any(pl.compiled for pl in self._plans) else "torch"

    def _check_groups(self, params: Mapping[str, torch.Tensor]) -> None:
        for group in self.groups:
            if group.kind not in _KINDS:
                raise SymmetryError(f"group {group.name!r}: the tracker records {_KINDS}, not {group.kind!r}")
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
                if not p.dtype.is_floating_point:
                    raise ValueError(f"group {group.name!r}: parameter {m.parameter!r} is not floating point")

    def _verify(
        self,
        groups: list[SymmetryGroup],
        verify: tuple[torch.Tensor, torch.Tensor],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    ) -> None:
        options: dict[str, Any] = {}
        if "loss_fn" in inspect.signature(verify_symmetries).parameters:
            options["loss_fn"] = loss_fn or F.cross_entropy
        elif loss_fn is not None:
            raise ValueError("this version of verify_symmetries takes no loss_fn; verify with cross-entropy only")
        verify_symmetries(self._named, groups, *verify, **options)

    def _build(self, params: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        owner = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        tensors: list[torch.Tensor] = []
        entries: list[tuple[int, Entry]] = []
        self._unit_group: list[int] = []
        self._group_param_groups: list[list[int]] = []
        dtypes: list[set[torch.dtype]] = []
        unit = 0
        for gi, group in enumerate(self.groups):
            indices = []
            for m in group.members:
                p = params[m.parameter]
                if id(p) not in owner:
                    raise ValueError(f"group {group.name!r}: parameter {m.parameter!r} is not in the optimizer")
                entry = Entry(
                    m.dim % max(p.dim(), 1),
                    group.num_units,
                    float(m.sign),
                    group.kind == "translation",
                    owner[id(p)],
                    unit,
                    len(entries),
                )
                entries.append((len(tensors), entry))
                tensors.append(p)
                indices.append(owner[id(p)])
            self._unit_group.extend([gi] * group.num_units)
            self._group_param_groups.append(sorted(set(indices)))
            dtypes.append({params[m.parameter].dtype for m in group.members})
            unit += group.num_units
        self._entries = [e for _, e in entries]
        self._plans = plan(tensors, entries, self._tile_elements, self._kernel)
        self._workspace = Workspace(self._plans)
        self._units = unit
        self._param_groups = sorted({e.param_group for e in self._entries})
        self._position = {pg: i for i, pg in enumerate(self._param_groups)}
        self._dtypes = [str(max(d, key=lambda t: torch.finfo(t).eps)).replace("torch.", "") for d in dtypes]

    # -- recording --------------------------------------------------------------------------------------------
    def _weight_decays(self) -> list[float]:
        return [float(self.optimizer.param_groups[e.param_group].get("weight_decay", 0.0)) for e in self._entries]

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.allow_eval and not self.model.training:
            raise RuntimeError(
                "optimizer.step() in eval mode: batch norm then normalises with running statistics and its scale "
                "symmetries do not hold, so the recorded charges would not be the ones the predictions describe. "
                "Call model.train() before training, or build the tracker with allow_eval=True"
            )
        self._next.zero_()
        if self._pending:  # the step before this one and this step's gradients, in one pass over the weights
            self._finish(self._next)
        else:
            charges = self._next if self._decay_changed() else None
            measure(
                self._plans,
                self._workspace,
                weight_decay=self._weight_decays(),
                charges=charges,
                gradients=self._next,
                kernel=self._kernel,
            )
            if charges is not None:
                self._patch_decay(charges[DECAY])
        self._hyper = [tuple(read_hyperparameters(optimizer, i)) for i in self._param_groups]
        self._work.zero_()
        self._work[[GRAD, GRAD_PROJ]] = self._next[[GRAD, GRAD_PROJ]]
        for pl in self._plans:  # torch.optim skips a parameter without a gradient: G and gamma do not exist
            if pl.param.grad is None:
                for e in pl.entries:
                    self._work[GRAD : GRAD_PROJ + 1, e.first_unit : e.first_unit + e.units] = float("nan")
        self._in_step = True

    def _decay_changed(self) -> bool:
        """Whether the weight decay changed since :meth:`step` measured the last written row's decay term (which
        the next step's recursion uses)."""
        return self._decay_written is not None and self._decay_written != self._weight_decays()

    def _patch_decay(self, decay: torch.Tensor) -> None:
        """The last written row's decay term, measured again with the weight decay of the step about to run."""
        if self._filled:
            self._buffer[self._filled - 1, DECAY] = decay
        else:
            self._host[-1][-1, DECAY] = decay.cpu().numpy()
        self._decay_written = None

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._in_step:
            self._in_step, self._pending = False, True

    def _finish(self, gradients: torch.Tensor | None = None) -> None:
        """Measure the step taken: called lazily (by the next step, :meth:`step`, :meth:`table`, ...), so that what
        the loop does to the weights between optimizer steps (a projection, a constraint) counts in the update.
        Called by the next step's pre-hook, the same pass adds that step's gradient rows into ``gradients`` and
        takes its snapshot."""
        if not self._pending:
            return
        self._pending = False
        groups, state = self.optimizer.param_groups, self.optimizer.state
        buffers = {
            i: state[pl.param]["momentum_buffer"]
            for i, pl in enumerate(self._plans)
            if any(groups[e.param_group].get("nesterov", False) for e in pl.entries)
            and state.get(pl.param, {}).get("momentum_buffer") is not None
        }
        measure(
            self._plans,
            self._workspace,
            weight_decay=self._weight_decays(),
            charges=self._work,
            update=True,
            buffers=buffers,
            gradients=gradients,
            kernel=self._kernel,
        )
        self._step += 1
        self._window_steps += 1
        assert self._hyper is not None
        self._window_time += np.array([h[0] for h in self._hyper])
        if self._window is not None:
            self._window[0].add_(self._work[UPDATE])
            self._window[1].add_(self._work[GRAD])
        if self._step % self.every == 0:
            self._write()
        # finished by step() or table(), before the next step's hook: its weight decay may still change
        self._decay_written = self._weight_decays() if gradients is None and self._step % self.every == 0 else None

    def step(self) -> None:
        """Optional: finish recording the optimizer step just taken (otherwise done by the next one or by
        :meth:`table`). Call it after whatever the loop does to the weights after ``optimizer.step()`` (a
        constraint), or not at all; loops written for earlier versions, which called it, keep working."""
        self._finish()

    def _write(self) -> None:
        if self._filled == self._chunk:
            self._flush()
        row = self._buffer[self._filled]
        row.copy_(self._work)
        if self._window is not None:
            row[UPDATE].copy_(self._window[0])
            row[GRAD].copy_(self._window[1])
            self._window.zero_()
        self._filled += 1
        self._meta.append(
            {
                "step": self._step,
                "steps": self._window_steps,
                "hyper": list(self._hyper or []),
                "time": self._window_time.copy(),
            }
        )
        self._window_steps = 0
        self._window_time[:] = 0.0

    def _flush(self) -> None:
        if self._filled:
            self._host.append(self._buffer[: self._filled].cpu().numpy().copy())
            self._filled = 0

    def close(self) -> None:
        """Detach from the optimizer (the recorded table stays available)."""
        self._finish()
        for hook in self._hooks:
            hook.remove()

    # -- state ------------------------------------------------------------------------------------------------
    #: The attributes that hold the record so far; everything else is rebuilt from the model, optimizer and groups.
    _RECORD = (
        "_initial",
        "_initial_hyper",
        "_host",
        "_buffer",
        "_filled",
        "_meta",
        "_step",
        "_window_steps",
        "_window_time",
        "_window",
    )

    def state_dict(self) -> dict[str, Any]:
        """A copy of the record so far (tensors on the host), for checkpoints of interrupted runs."""
        self._finish()
        self._flush()
        state: dict[str, Any] = {}
        for name in self._RECORD:
            value = getattr(self, name, None)
            state[name] = value.detach().cpu().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the record saved by :meth:`state_dict` (build the tracker on the same model, optimizer and
        groups, then call this)."""
        missing = [name for name in self._RECORD if name not in state]
        if missing:
            raise ValueError(f"not a NoetherTracker state: missing {missing}")
        for name in self._RECORD:
            current, value = getattr(self, name, None), state[name]
            if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor) and current.shape == value.shape:
                current.copy_(value)
            else:
                setattr(self, name, value.to(self._device) if isinstance(value, torch.Tensor) else copy.deepcopy(value))

    # -- output -----------------------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """The records as the charges table (:data:`noether_lib.schema.CHARGES_COLUMNS`), one row per (recorded
        step, group, unit); step 0 holds the initial charge (its step columns are NaN)."""
        self._finish()
        self._flush()
        rows = np.concatenate(self._host) if self._host else np.zeros((0, len(ROWS), self._units))
        layout = records.Layout(
            names=[g.name for g in self.groups],
            kinds=[g.kind for g in self.groups],
            num_units=[g.num_units for g in self.groups],
            unit_group=self._unit_group,
            group_param_groups=[[self._position[i] for i in pgs] for pgs in self._group_param_groups],
            optimizer=self._optimizer_label,
            dtypes=self._dtypes,
        )
        return records.charges_table(layout, self._initial, self._initial_hyper, rows, self._meta)

    def save(self, path: str | Path, config: Mapping[str, Any]) -> Path:
        """Write :meth:`table` as CSV to ``path`` and, beside it (``.json``), ``config`` with the tracked groups.

        Returns the CSV's path; :func:`noether_lib.tracking.load_tracking` reads both back.
        """
        return records.save_table(self.table(), path, config, self.every, self.groups)
