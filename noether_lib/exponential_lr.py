"""Li & Arora's exponential learning rate: weight decay on scale-invariant weights is a learning-rate schedule.

For a loss invariant under scaling of the weights :math:`q` (:math:`\\nabla f(cq)=\\nabla f(q)/c`), heavy ball with
weight decay, :math:`q_{n+1}=(1+\\beta-\\eta k)q_n-\\beta q_{n-1}-\\eta\\nabla f(q_n)`, becomes after the substitution
:math:`q_n=\\alpha^n\\tilde q_n` heavy ball *without* weight decay in PyTorch's form
(:math:`\\tilde v_{n+1}=\\beta\\tilde v_n+\\tilde g_n`, :math:`\\tilde q_{n+1}=\\tilde q_n-\\tilde\\eta_n\\tilde v_{n+1}`) with
the exponentially growing learning rate

.. math:: \\tilde\\eta_n=\\eta\\,\\alpha^{-2n-1},\\qquad \\alpha^2-(1+\\beta-\\eta k)\\alpha+\\beta=0

(:func:`growth_factor`, the larger root; Li & Arora 2020). At :math:`\\beta=0`, :math:`\\alpha=1-\\eta k` and the
equivalence holds from the first step. With momentum both runs start from an empty buffer and the first steps
differ by :math:`O(\\eta k\\beta/(1-\\beta))`; starting the schedule's run with the buffer
:func:`matched_initial_buffer` makes the equivalence exact again. Parameters that are not scale-invariant get no
weight decay and a constant learning rate in both runs. The identities need *exact* invariance: batch norm with
:math:`\\epsilon=0` (:func:`noether_lib.epsilon_breaking.set_normalization_epsilon`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from torch import nn

from noether_lib.learning_rule import check_hyperparameters
from noether_lib.symmetry import SymmetryGroup

__all__ = [
    "growth_factor",
    "empty_buffer_deviation",
    "equivalent_learning_rates",
    "matched_initial_buffer",
    "equivalence_residual",
    "EquivalentRuns",
    "minibatch_cross_entropy",
    "train_equivalent_runs",
]


def growth_factor(lr: float, momentum: float, weight_decay: float) -> float:
    """:math:`\\alpha`, the larger root of :math:`x^2-(1+\\beta-\\eta k)x+\\beta=0` (:math:`1-\\eta k` at :math:`\\beta=0`)."""
    check_hyperparameters(lr, momentum, weight_decay=weight_decay)
    if not lr * weight_decay < 1:
        raise ValueError(f"eta k = {lr * weight_decay} must be below 1 (weight decay would flip the weights)")
    b = 1 + momentum - lr * weight_decay
    disc = b * b - 4 * momentum
    if disc < 0:
        raise ValueError(f"eta k = {lr * weight_decay} is too large: the roots are complex (no real schedule)")
    return (b + math.sqrt(disc)) / 2


def equivalent_learning_rates(lr: float, momentum: float, weight_decay: float, steps: int) -> np.ndarray:
    """The schedule :math:`\\tilde\\eta_n=\\eta\\alpha^{-2n-1}`, :math:`n=0,\\dots,` ``steps``-1."""
    alpha = growth_factor(lr, momentum, weight_decay)
    return lr * alpha ** (-2.0 * np.arange(steps) - 1.0)


def empty_buffer_deviation(lr: float, momentum: float, weight_decay: float) -> float:
    """The relative deviation of the two runs from empty buffers once the first step's mismatch has settled,
    :math:`\\eta k\\beta/(1-\\beta)^2` to first order (derived here). The first steps differ by
    :math:`(1-\\eta k)/\\alpha-1\\approx\\eta k\\beta/(1-\\beta)` along :math:`q_0`: a radial step, in the direction
    along which a scale-invariant loss is flat, so momentum carries it on to :math:`1/(1-\\beta)` times its size.
    This holds while the filter norms barely respond to the mismatch over the run (small gradients, small
    :math:`\\eta k`); a fast norm dynamics feeds it back."""
    check_hyperparameters(lr, momentum, weight_decay=weight_decay)
    return lr * weight_decay * momentum / (1 - momentum) ** 2


def matched_initial_buffer(q0: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> torch.Tensor:
    """The momentum buffer :math:`\\tilde v_0=(\\alpha-1+\\eta k)\\,q_0/(\\eta\\beta)` that makes the schedule's first
    step :math:`\\tilde q_1=q_1/\\alpha` (zero at :math:`\\beta=0`, where none is needed)."""
    if momentum == 0:
        return torch.zeros_like(q0)
    alpha = growth_factor(lr, momentum, weight_decay)
    return (alpha - 1 + lr * weight_decay) * q0 / (lr * momentum)


def equivalence_residual() -> tuple[sp.Expr, sp.Expr]:
    """The exact algebra, in sympy: insert :math:`q_n=\\alpha^n\\tilde q_n` into heavy ball with weight decay, use
    :math:`\\nabla f(\\alpha^nq)=\\alpha^{-n}\\nabla f(q)` and the schedule's recursion for :math:`\\tilde q_{n+1}`.
    Returns ``(residual, quadratic)``: the residual factors as :math:`\\alpha^{n-1}\\tilde q_n` times the quadratic
    :math:`\\alpha^2-(1+\\beta-\\eta k)\\alpha+\\beta`, so it vanishes exactly at :func:`growth_factor`."""
    alpha, beta, eta, k, n = sp.symbols("alpha beta eta k n", positive=True)
    q_prev, q_now, g_now = sp.symbols("qtilde_prev qtilde_n gtilde_n")
    q_next = (1 + beta / alpha**2) * q_now - beta / alpha**2 * q_prev - eta * alpha ** (-2 * n - 1) * g_now
    residual = (
        alpha ** (n + 1) * q_next
        - (1 + beta - eta * k) * alpha**n * q_now
        + beta * alpha ** (n - 1) * q_prev
        + eta * alpha ** (-n) * g_now
    )
    return sp.factor(sp.expand(residual)), alpha**2 - (1 + beta - eta * k) * alpha + beta


def minibatch_cross_entropy(
    inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int = 0
) -> Callable[[nn.Module, int], torch.Tensor]:
    """``loss_at(model, n)``: cross-entropy of ``model`` on mini-batch ``n``, drawn with replacement from a seeded
    generator per step, so that two runs see the same batches."""
    if not 0 < batch_size <= len(inputs):
        raise ValueError(f"batch_size must lie in [1, {len(inputs)}], got {batch_size}")

    def loss_at(model: nn.Module, n: int) -> torch.Tensor:
        idx = torch.randint(0, len(inputs), (batch_size,), generator=torch.Generator().manual_seed(seed + n))
        return nn.functional.cross_entropy(model(inputs[idx]), targets[idx])

    return loss_at


@dataclass
class EquivalentRuns:
    """Both runs' scale-invariant weights, step by step: ``decayed[n]`` is :math:`q_n` (weight decay, constant
    :math:`\\eta`), ``scheduled[n]`` is :math:`\\tilde q_n` (no weight decay, :math:`\\tilde\\eta_n`); ``others`` the
    largest difference of the remaining parameters; ``alpha`` the growth factor."""

    decayed: np.ndarray
    scheduled: np.ndarray
    others: float
    alpha: float

    def deviations(self) -> np.ndarray:
        """:math:`|q_n-\\alpha^n\\tilde q_n|/|q_n|` for every step :math:`n`."""
        powers = self.alpha ** np.arange(len(self.decayed))[:, None]
        return np.linalg.norm(self.decayed - powers * self.scheduled, axis=1) / np.linalg.norm(self.decayed, axis=1)

    def deviation(self) -> float:
        """The largest of :meth:`deviations` and of the other parameters' relative difference."""
        return float(max(self.deviations().max(), self.others))


def train_equivalent_runs(
    model: nn.Module,
    groups: Sequence[SymmetryGroup],
    loss_at: Callable[[nn.Module, int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    matched_start: bool = True,
) -> EquivalentRuns:
    """Train two copies of ``model``: SGD with weight decay on the members of the scale ``groups``, and SGD without
    weight decay and the schedule :func:`equivalent_learning_rates` on them (optionally from
    :func:`matched_initial_buffer`). ``loss_at(model, n)`` is the loss of step ``n`` (same batches for both)."""
    check_hyperparameters(lr, momentum, weight_decay=weight_decay, steps=steps)
    if any(g.kind != "scale" for g in groups):
        raise ValueError("the equivalence needs scale-invariant groups only")
    names = sorted({m.parameter for g in groups for m in g.members})
    schedule = equivalent_learning_rates(lr, momentum, weight_decay, steps)
    models = [model, copy.deepcopy(model)]
    optimizers = []
    for i, net in enumerate(models):
        params = dict(net.named_parameters())
        scale = [params[n] for n in names]
        rest = [p for n, p in params.items() if n not in names]
        optimizers.append(
            torch.optim.SGD(
                [
                    {
                        "params": scale,
                        "lr": lr if i == 0 else schedule[0],
                        "weight_decay": weight_decay if i == 0 else 0.0,
                    },
                    {"params": rest, "lr": lr, "weight_decay": 0.0},
                ],
                momentum=momentum,
            )
        )
    if matched_start and momentum > 0:
        for p in optimizers[1].param_groups[0]["params"]:
            optimizers[1].state[p]["momentum_buffer"] = matched_initial_buffer(
                p.detach().clone(), lr, momentum, weight_decay
            )

    def flat(net: nn.Module, which: Sequence[str]) -> np.ndarray:
        params = dict(net.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in which]).double().numpy().copy()

    rest_names = [n for n, _ in model.named_parameters() if n not in names]
    trajectories: list[list[np.ndarray]] = [[flat(m, names)] for m in models]
    others = 0.0
    for n in range(steps):
        optimizers[1].param_groups[0]["lr"] = float(schedule[n])
        for net, opt, path in zip(models, optimizers, trajectories):
            opt.zero_grad(set_to_none=True)
            loss_at(net, n).backward()
            opt.step()
            path.append(flat(net, names))
        if rest_names:
            diff = flat(models[0], rest_names) - flat(models[1], rest_names)
            others = max(others, float(np.abs(diff).max() / np.abs(flat(models[0], rest_names)).max()))
    return EquivalentRuns(
        np.stack(trajectories[0]), np.stack(trajectories[1]), others, growth_factor(lr, momentum, weight_decay)
    )
