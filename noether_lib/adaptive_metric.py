"""Adam and AdamW on scale-invariant weights: a non-Euclidean kinetic energy (Eq. 7) and the metric term of NLD.

Adam's step is :math:`u_n=-\\eta\\,G_n^{-1}\\hat m_n` with the diagonal metric :math:`G_n=\\sqrt{\\hat v_n}+\\epsilon`
(:func:`adam_metric`); AdamW adds the decoupled decay :math:`-\\eta kq_n`. Its kinetic energy is
:math:`\\tfrac m2\\langle\\dot q,G\\dot q\\rangle` (Eq. 7), whose Noether charge for scale is the *metric* projection
:math:`\\langle q,G\\dot q\\rangle`. For a scale-invariant loss :math:`\\langle q,g\\rangle=0`, so without momentum
:math:`\\langle q_n,G_nu_n\\rangle=-\\eta\\langle q_n,g_n\\rangle=0`, while the filter norm moves with the *Euclidean*
projection :math:`\\langle q_n,u_n\\rangle=-\\eta\\langle q_n,G_n^{-1}g_n\\rangle\\neq0`: the metric term of NLD.

Whatever the optimizer, the squared norm :math:`C_n=|q_n|^2` obeys the exact bookkeeping
:math:`C_{n+1}=C_n+2P_n+U_n` with :math:`P_n=\\langle q_n,u_n\\rangle` and :math:`U_n=|u_n|^2`.
:func:`record_charges` measures these per filter from the weights before and after each step (no assumption on the
rule) and splits :math:`P_n` into the decoupled weight decay, an isotropic part
:math:`-\\eta\\,\\tfrac{|G^{-1}\\hat m|}{|\\hat m|}\\langle q,\\hat m\\rangle` (the same step length along the
Euclidean direction :math:`\\hat m`) and the metric remainder, the part due to :math:`G` turning the step.

AdamW's equilibrium. Dropping the cross term, :math:`C_{n+1}=(1-\\eta k)^2C_n+\\eta^2|a_n|^2` with
:math:`a=G^{-1}\\hat m`, so :math:`C_\\star=\\eta\\langle|a|^2\\rangle/(k(2-\\eta k))` and the angular step
:math:`\\eta|a|/r_\\star=\\sqrt{\\eta k(2-\\eta k)}` (:func:`adamw_angular_update`), without SGD's momentum factor
:math:`1/(1+\\beta)`. Adam's step size does not scale with the gradient, so the direction's effective step is
:math:`\\propto\\eta/r`, not SGD's :math:`\\eta/r^2` (derived here; cf. Heo et al. 2021, Wan et al. 2021).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from noether_lib.learning_rule import check_hyperparameters
from noether_lib.symmetry import SymmetryGroup

__all__ = [
    "adam_metric",
    "ChargeRecord",
    "record_charges",
    "table_matrix",
    "table_bookkeeping_residual",
    "metric_share",
    "adamw_equilibrium_norm_sq",
    "adamw_angular_update",
    "angular_step_exponent",
]

_ADAMS = (torch.optim.Adam, torch.optim.AdamW)


def adam_metric(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """After ``optimizer.step()``: Adam's metric :math:`G=\\sqrt{\\hat v}+\\epsilon` and its bias-corrected first
    moment :math:`\\hat m`, so that the step was :math:`-\\eta G^{-1}\\hat m` (plus AdamW's decay)."""
    if type(optimizer) not in _ADAMS:
        raise ValueError(f"adam_metric reads torch.optim.Adam or AdamW, got {type(optimizer).__name__}")
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    if group.get("amsgrad") or group.get("maximize"):
        raise ValueError("amsgrad and maximize are not covered")
    state = optimizer.state[param]
    if "step" not in state:
        raise ValueError("no Adam state yet: call optimizer.step() first")
    step = float(state["step"])
    beta1, beta2 = group["betas"]
    v_hat = state["exp_avg_sq"] / (1 - beta2**step)
    return v_hat.sqrt() + group["eps"], state["exp_avg"] / (1 - beta1**step)


def _direction(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(metric G, un-preconditioned direction d, decoupled decay k) with u = -lr (G^-1 d + k q)."""
    if type(optimizer) in _ADAMS:
        metric, m_hat = adam_metric(optimizer, param)
        group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
        decoupled = group["weight_decay"] if type(optimizer) is torch.optim.AdamW else 0.0
        return metric, m_hat, decoupled
    if type(optimizer) is torch.optim.SGD:
        state = optimizer.state[param]
        group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
        if group.get("nesterov") or group["dampening"] != 0:
            raise ValueError("the split covers SGD with heavy-ball momentum and no dampening")
        if group["momentum"] == 0:  # the step is -lr d with d = g + k q of the previous weights
            return torch.ones_like(param), torch.full_like(param, math.nan), 0.0
        return torch.ones_like(param), state["momentum_buffer"], 0.0
    raise ValueError(f"no metric split for {type(optimizer).__name__}")


@dataclass
class ChargeRecord:
    """Per step :math:`n` (rows) and filter (columns): ``charge`` :math:`C_n` (``steps + 1`` rows), ``projected``
    :math:`P_n`, ``update_sq`` :math:`U_n`, ``grad_proj`` :math:`\\langle q_n,g_n\\rangle`, ``metric_charge``
    :math:`\\langle q_n,G_n(u_n+\\eta k_{\\rm dec}q_n)\\rangle`, the split of :math:`P_n` into ``decay``,
    ``isotropic`` and ``metric``, ``precond_sq`` :math:`|G^{-1}\\hat m|^2`, ``angle`` the angle between
    :math:`q_n` and :math:`q_{n+1}`, and the ``loss``."""

    charge: np.ndarray
    projected: np.ndarray
    update_sq: np.ndarray
    grad_proj: np.ndarray
    metric_charge: np.ndarray
    decay: np.ndarray
    isotropic: np.ndarray
    metric: np.ndarray
    precond_sq: np.ndarray
    angle: np.ndarray
    loss: np.ndarray

    def bookkeeping_residual(self) -> float:
        """:math:`\\max|C_{n+1}-C_n-2P_n-U_n|/\\max C`: an identity, zero up to round-off."""
        residual = self.charge[1:] - self.charge[:-1] - 2 * self.projected - self.update_sq
        return float(np.abs(residual).max() / np.abs(self.charge).max())

    def split_residual(self) -> float:
        """:math:`\\max|P_n-(\\text{decay}+\\text{isotropic}+\\text{metric})|/\\max|P_n|`: zero up to round-off when the
        update is the optimizer's formula."""
        rest = self.projected - self.decay - self.isotropic - self.metric
        return float(np.abs(rest).max() / np.abs(self.projected).max())


def record_charges(
    model: nn.Module,
    groups: Sequence[SymmetryGroup],
    loss_at: Callable[[int], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    tracker: Any = None,
) -> ChargeRecord:
    """Train ``model`` for ``steps`` steps with any ``optimizer`` (Adam, AdamW, SGD with momentum) and record, per
    filter of the scale ``groups``, the charge bookkeeping and the split of :math:`P_n` (see the module docstring),
    from the weights before and after each step. ``loss_at(n)`` is the loss of step ``n``. A
    :class:`noether_lib.tracking.NoetherTracker` attached to the same model and optimizer is stepped after each
    update, so that its table and this record describe the same run."""
    if steps < 1 or any(g.kind != "scale" for g in groups):
        raise ValueError("need steps >= 1 and scale groups only")
    params = dict(model.named_parameters())

    def per_unit(tensors: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """One (units, size) matrix per group: the groups' units may have different sizes."""
        return [torch.cat(g.slices(tensors), dim=1).double() for g in groups]

    def reduce(fn: Callable[..., torch.Tensor], *blocks: list[torch.Tensor]) -> np.ndarray:
        return torch.cat([fn(*parts) for parts in zip(*blocks)]).numpy()

    names = sorted({m.parameter for g in groups for m in g.members})

    def filters_lr() -> float:
        """The filters' learning rate now (read at every step: a scheduler may change it)."""
        lr = {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]}
        rates = {lr[id(params[n])] for n in names}
        if len(rates) != 1:
            raise ValueError("the filters' parameters must share one learning rate")
        return rates.pop()

    filters_lr()
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ChargeRecord.__dataclass_fields__}
    with torch.no_grad():
        rows["charge"].append(reduce(lambda q: (q * q).sum(1), per_unit(params)))
    for n in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_at(n)
        loss.backward()
        with torch.no_grad():
            q = per_unit({k: v.detach().clone() for k, v in params.items()})
            g = per_unit({k: v.grad for k, v in params.items() if v.grad is not None})
        eta = filters_lr()
        optimizer.step()
        if tracker is not None:
            tracker.step()
        with torch.no_grad():
            q_new = per_unit(params)
            parts = {k: _direction(optimizer, params[k]) for k in names}
            metric = per_unit({k: p[0] for k, p in parts.items()})
            direction = [
                torch.where(d.isnan(), -du / eta, d)
                for d, du in zip(per_unit({k: p[1] for k, p in parts.items()}), [b - a for a, b in zip(q, q_new)])
            ]
            decoupled = {p[2] for p in parts.values()}
            if len(decoupled) != 1:
                raise ValueError("the filters' parameters must share one weight decay")
            k_dec = decoupled.pop()
            u = [b - a for a, b in zip(q, q_new)]

            def isotropic(q: torch.Tensor, G: torch.Tensor, d: torch.Tensor, eta: float = eta) -> torch.Tensor:
                length = (d / G).norm(dim=1) / d.norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
                return -eta * length * (q * d).sum(1)

            def anisotropic(q: torch.Tensor, G: torch.Tensor, d: torch.Tensor, eta: float = eta) -> torch.Tensor:
                return -eta * (q * d / G).sum(1) - isotropic(q, G, d)

            def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return torch.arccos(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).clamp(-1, 1))

            rows["projected"].append(reduce(lambda q, u: (q * u).sum(1), q, u))
            rows["update_sq"].append(reduce(lambda u: (u * u).sum(1), u))
            rows["grad_proj"].append(reduce(lambda q, g: (q * g).sum(1), q, g))
            rows["metric_charge"].append(reduce(lambda q, G, u: (q * G * (u + eta * k_dec * q)).sum(1), q, metric, u))
            rows["decay"].append(reduce(lambda q: -eta * k_dec * (q * q).sum(1), q))
            rows["isotropic"].append(reduce(isotropic, q, metric, direction))
            rows["metric"].append(reduce(anisotropic, q, metric, direction))
            rows["precond_sq"].append(reduce(lambda G, d: ((d / G) ** 2).sum(1), metric, direction))
            rows["angle"].append(reduce(angle, q, q_new))
            rows["charge"].append(reduce(lambda q: (q * q).sum(1), q_new))
            rows["loss"].append(np.array(float(loss)))
    return ChargeRecord(**{k: np.stack(v) for k, v in rows.items()})


def table_matrix(table: Any, column: str) -> np.ndarray:
    """One column of the tracker's charges table (``noether_lib.schema``) as a ``(steps, units)`` array, rows by
    step, columns by (group, unit) in the table's order; rows whose entries are all missing (step 0's step columns)
    are dropped."""
    wide = table.pivot_table(index="step", columns=["group", "unit"], values=column, sort=False, dropna=True)
    return wide.to_numpy(dtype=np.float64)


def table_bookkeeping_residual(table: Any) -> float:
    """:math:`\\max|C_n-C_{n-1}-2P_n-U_n|/\\max C` from the tracker's table (``charge``, ``projected_update``,
    ``update_signed_sq``; scale groups, recorded every step): the identity at round-off."""
    if set(table["kind"]) != {"scale"} or (table["steps"].dropna() != 1).any():
        raise ValueError("the bookkeeping here is for scale groups recorded every step")
    charge = table_matrix(table, "charge")
    residual = (
        charge[1:] - charge[:-1] - 2 * table_matrix(table, "projected_update") - table_matrix(table, "update_signed_sq")
    )
    return float(np.abs(residual).max() / np.abs(charge).max())


def metric_share(record: ChargeRecord, span: slice = slice(None)) -> dict[str, float]:
    """Each term's share of the charge's motion :math:`\\sum_n|\\Delta C_n|`-budget over ``span``: the sums of
    :math:`|2\\,\\text{decay}|`, :math:`|2\\,\\text{isotropic}|`, :math:`|2\\,\\text{metric}|` and :math:`U_n`, each
    divided by their total."""
    terms = {
        "decay": 2 * np.abs(record.decay[span]).sum(),
        "isotropic": 2 * np.abs(record.isotropic[span]).sum(),
        "metric": 2 * np.abs(record.metric[span]).sum(),
        "update_sq": np.abs(record.update_sq[span]).sum(),
    }
    total = sum(terms.values())
    return {k: float(v / total) for k, v in terms.items()}


def adamw_equilibrium_norm_sq(lr: float, weight_decay: float, precond_sq: np.ndarray | float) -> np.ndarray:
    """:math:`C_\\star=\\eta\\langle|a|^2\\rangle/(k(2-\\eta k))`, AdamW's equilibrium squared filter norm, with the
    cross term (the metric term) neglected; ``precond_sq`` is :math:`\\langle|G^{-1}\\hat m|^2\\rangle`."""
    check_hyperparameters(lr, weight_decay=weight_decay)
    if not weight_decay > 0:
        raise ValueError("an equilibrium needs weight decay > 0")
    return lr * np.asarray(precond_sq) / (weight_decay * (2 - lr * weight_decay))


def adamw_angular_update(lr: float, weight_decay: float) -> float:
    """AdamW's equilibrium angular step per update, :math:`\\sqrt{\\eta k(2-\\eta k)}\\approx\\sqrt{2\\eta k}`, for any
    :math:`\\beta_1` (SGD's is :math:`\\sqrt{2\\eta k/(1+\\beta)}`, :func:`noether_lib.normalization.angular_update`)."""
    check_hyperparameters(lr, weight_decay=weight_decay)
    return math.sqrt(lr * weight_decay * (2 - lr * weight_decay))


def _loss_of(loss: Callable[[nn.Module], torch.Tensor], net: nn.Module, _: int) -> torch.Tensor:
    return loss(net)


def angular_step_exponent(
    model: nn.Module,
    groups: Sequence[SymmetryGroup],
    loss: Callable[[nn.Module], torch.Tensor],
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    factors: Sequence[float],
) -> float:
    """The exponent :math:`p` of the first step's mean angular step :math:`\\propto c^{p}` when every filter of
    ``groups`` is scaled by :math:`c` (``factors``), from a fresh ``make_optimizer``: :math:`-1` for Adam's
    :math:`\\eta/r`, :math:`-2` for SGD's :math:`\\eta/r^2`. The model is copied, not changed."""
    import copy

    from noether_lib.symmetry import scale_filter_norms

    angles = []
    for c in factors:
        net = scale_filter_norms(copy.deepcopy(model), groups, c)
        rec = record_charges(
            net, groups, functools.partial(_loss_of, loss, net), make_optimizer(list(net.parameters())), 1
        )
        angles.append(rec.angle.mean())
    return float(np.polyfit(np.log(factors), np.log(angles), 1)[0])
