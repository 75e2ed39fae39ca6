"""Which optimizers and precisions the tracker records, how it reads their hyperparameters, and which predictions
of :mod:`noether_lib.noether` exist for each.

The tracker never reads the update from the optimizer's rule: it snapshots the weights before each
``optimizer.step()`` and measures :math:`u=q_{n+1}-q_n` after it, so every optimizer (SGD, Adam, AdamW, ...) and
every precision is recorded as it happened, and :math:`C_{n+1}=C_n+2P_n+U_n` holds for every update. What differs
is which predictions exist (:data:`PREDICTIONS_BY_OPTIMIZER`); :func:`noether_lib.noether.predict_charges`
refuses the others with the reason.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

__all__ = [
    "Hyperparameters",
    "PREDICTIONS_BY_OPTIMIZER",
    "SUPPORTED_SCHEDULERS",
    "LOW_PRECISION",
    "optimizer_label",
    "read_hyperparameters",
    "check_optimizer",
]

#: The predictions that exist per optimizer (any precision records; the SGD recursions need float32 or float64).
PREDICTIONS_BY_OPTIMIZER: dict[str, tuple[str, ...]] = {
    "SGD (heavy ball)": ("identity", "exact", "exact_broken", "modified", "overdamped", "gradient_flow"),
    "SGD (nesterov=True)": ("identity", "exact", "exact_broken", "gradient_flow"),
    "any other optimizer (Adam, AdamW, RMSprop, SGD with maximize=True, ...)": ("identity",),
}

#: Schedulers whose learning rates are piecewise constant, which the continuous predictions cover too. Every
#: scheduler records, and the exact predictions hold for any learning-rate sequence.
SUPPORTED_SCHEDULERS: tuple[type, ...] = (torch.optim.lr_scheduler.StepLR, torch.optim.lr_scheduler.MultiStepLR)

#: Parameter dtypes whose stored weights are rounded so coarsely that the tracker computes in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)


class Hyperparameters(NamedTuple):
    """One parameter group's settings at one step (NaN where the optimizer has no such setting)."""

    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool


def optimizer_label(optimizer: torch.optim.Optimizer) -> str:
    """``"SGD"`` for :class:`torch.optim.SGD` minimising (the rule the SGD predictions model), else the class name
    (``"SGD(maximize)"`` for a maximising SGD)."""
    name = type(optimizer).__name__
    if isinstance(optimizer, torch.optim.SGD) and any(g.get("maximize", False) for g in optimizer.param_groups):
        return "SGD(maximize)"
    return name if type(optimizer) is not torch.optim.SGD else "SGD"


def _number(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def read_hyperparameters(optimizer: torch.optim.Optimizer, index: int) -> Hyperparameters:
    """The settings of ``optimizer.param_groups[index]`` now. Momentum and dampening are SGD's (NaN for other
    optimizers); ``weight_decay`` is the group's own (for AdamW: decoupled)."""
    group = optimizer.param_groups[index]
    sgd = isinstance(optimizer, torch.optim.SGD)
    nan = math.nan
    return Hyperparameters(
        lr=_number(group["lr"]),
        momentum=_number(group.get("momentum", 0.0)) if sgd else nan,
        dampening=_number(group.get("dampening", 0.0)) if sgd else nan,
        weight_decay=_number(group.get("weight_decay", 0.0)),
        nesterov=bool(group.get("nesterov", False)) if sgd else False,
    )


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`ValueError` unless the SGD predictions (exact recursion, modified equation) cover
    ``optimizer``: :class:`torch.optim.SGD`, minimising. Recording does not need this: the tracker records any
    optimizer."""
    label = optimizer_label(optimizer)
    if label != "SGD":
        raise ValueError(
            f"the SGD predictions cover torch.optim.SGD (heavy ball or Nesterov, dampening, weight decay), "
            f"minimising; got {label}. The tracker still records it: the identity C_(n+1) = C_n + 2 P_n + U_n "
            "holds for every update"
        )
