"""Continuous-time models of the discrete learning rules: gradient flow and the modified equation (Eq. 3).

Heavy-ball momentum in PyTorch's convention (see :mod:`noether_lib.rules`) with learning rate :math:`\\eta`,
momentum :math:`\\beta`, dampening :math:`\\delta` and weight decay :math:`k` is, for :math:`n\\ge1`,

.. math:: q_{n+1}-q_n=\\beta\\,(q_n-q_{n-1})-h\\,\\big(\\nabla f(q_n)+kq_n\\big),\\qquad h=\\eta(1-\\delta).

So the natural time is :math:`t=nh=n\\eta(1-\\delta)` (:func:`time_scale`). Taylor-expanding :math:`q(t\\pm h)` and
keeping :math:`O(h)` gives the modified equation, Eq. 3 of the paper,

.. math:: m\\ddot q+\\mu\\dot q=-\\nabla f(q)-kq,\\qquad m=\\frac{\\eta(1-\\delta)(1+\\beta)}{2},\\quad \\mu=1-\\beta,

whose truncation error is :math:`O(h^2)` (:func:`effective_mass`, :func:`damping`; with :math:`\\delta=0` these are
the paper's :math:`m=\\eta(1+\\beta)/2`, :math:`\\mu=1-\\beta`). Its :math:`m\\to0` limit is gradient flow
:math:`\\mu\\dot q=-\\nabla f-kq`. In this time, the velocity of the iterates is
:math:`\\dot q\\approx(q_{n+1}-q_n)/h=-v_{n+1}/(1-\\delta)` (:func:`velocity_from_momentum_buffer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.integrate import solve_ivp

from noether_lib.learning_rule import check_hyperparameters, damping, effective_mass, time_scale
from noether_lib.rules import Gradient

__all__ = [
    "time_scale",
    "effective_mass",
    "damping",
    "velocity_from_momentum_buffer",
    "step_times",
    "matched_initial_velocity",
    "gradient_flow",
    "modified_flow",
    "GlobalErrors",
    "global_errors",
    "fitted_order",
]

#: Default integration tolerances: far below the :math:`O(\eta^2)` errors the book measures.
RTOL: float = 1e-11
ATOL: float = 1e-13


def velocity_from_momentum_buffer(buffer: np.ndarray, dampening: float = 0.0) -> np.ndarray:
    """The velocity :math:`\\dot q=-v/(1-\\delta)` of the iterates, from PyTorch's momentum buffer :math:`v`.

    Since :math:`q_{n+1}-q_n=-\\eta v_{n+1}` and a step lasts :math:`h=\\eta(1-\\delta)`.
    """
    check_hyperparameters(1.0, dampening=dampening)
    return -np.asarray(buffer) / (1.0 - dampening)


def step_times(steps: int, lr: float, dampening: float = 0.0) -> np.ndarray:
    """The times :math:`t_n=nh`, :math:`n=0,\\dots,` ``steps``, at which the iterates :math:`q_n` are compared."""
    check_hyperparameters(lr, dampening=dampening, steps=steps)
    return np.arange(steps + 1) * time_scale(lr, dampening)


def matched_initial_velocity(first_force: np.ndarray, momentum: float = 0.0, dampening: float = 0.0) -> np.ndarray:
    """Initial velocity of the modified equation that reproduces the discrete start-up transient to :math:`O(h^2)`.

    Args:
        first_force: :math:`d_0=\\nabla f(q_0)+kq_0`, the first (weight-decayed) gradient.
        momentum, dampening: :math:`\\beta,\\delta`.

    Returns:
        :math:`\\dot q(0)=-\\frac{1+\\delta}{(1-\\delta)(1+\\beta)}\\,d_0=\\frac{1+\\delta}{1+\\beta}\\,\\frac{q_1-q_0}{h}`.

    Derivation. Both the iterates and Eq. 3 relax, within :math:`O(1)` steps (time :math:`O(h)`), onto a slow
    solution that drifts at :math:`\\dot q=-d/\\mu`; over so short a time the force is constant,
    :math:`d=d_0+O(h)`. The discrete steps are :math:`\\Delta_0=q_1-q_0=-\\eta d_0=-h d_0/(1-\\delta)` (PyTorch
    does not dampen the first step) and :math:`\\Delta_n=\\beta\\Delta_{n-1}-hd_0`, so
    :math:`\\Delta_n=-hd_0\\big[\\beta^n/(1-\\delta)+(1-\\beta^n)/(1-\\beta)\\big]`. Summing, :math:`q_n` approaches
    the drift :math:`q_0-nh\\,d_0/\\mu` shifted by :math:`hd_0\\,[1-(1-\\beta)/(1-\\delta)]/(1-\\beta)^2`. The
    solution of :math:`m\\ddot q+\\mu\\dot q=-d_0` is shifted by :math:`(\\dot q(0)+d_0/\\mu)\\,m/\\mu`. Equating the
    two shifts, with :math:`m/\\mu=h(1+\\beta)/(2(1-\\beta))`, gives the velocity above; the errors left are
    :math:`O(h^2)`, as is the truncation error of Eq. 3, so the global error stays :math:`O(h^2)`. Starting instead
    at the first step's velocity :math:`(q_1-q_0)/h` misplaces the slow solution by
    :math:`O(h)` unless :math:`\\beta=\\delta=0` (gradient descent, where the two coincide).
    """
    check_hyperparameters(1.0, momentum, dampening)
    return -(1.0 + dampening) / ((1.0 - dampening) * (1.0 + momentum)) * np.asarray(first_force, dtype=np.float64)


def _times(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) < 1 or times[0] != 0.0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be a one-dimensional increasing array starting at 0")
    return times


def gradient_flow(
    gradient: Gradient,
    q0: np.ndarray,
    times: np.ndarray,
    *,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> np.ndarray:
    """Gradient flow :math:`\\mu\\dot q=-\\nabla f(q)-kq`, the :math:`m\\to0` limit of Eq. 3, solved at ``times``.

    With :math:`\\beta=0` this is :math:`\\dot q=-\\nabla f-kq`; with momentum, heavy ball to leading order only
    rescales time by :math:`\\mu=1-\\beta`. Returns an array of shape ``(len(times), *q0.shape)``.
    """
    check_hyperparameters(1.0, momentum, weight_decay=weight_decay)
    q0 = np.asarray(q0, dtype=np.float64)
    times = _times(times)
    mu = damping(momentum)

    def rhs(_: float, q: np.ndarray) -> np.ndarray:
        return -(gradient(q.reshape(q0.shape)).ravel() + weight_decay * q) / mu

    if len(times) == 1:
        return q0[None].copy()
    solution = solve_ivp(rhs, (0.0, times[-1]), q0.ravel(), method="DOP853", t_eval=times, rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"gradient flow integration failed: {solution.message}")
    return solution.y.T.reshape(len(times), *q0.shape)


def modified_flow(
    gradient: Gradient,
    q0: np.ndarray,
    times: np.ndarray,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    initial_velocity: np.ndarray | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> np.ndarray:
    """The modified equation (Eq. 3) :math:`m\\ddot q+\\mu\\dot q=-\\nabla f(q)-kq`, solved at ``times``.

    :math:`m` and :math:`\\mu` come from :func:`effective_mass` and :func:`damping`; time is measured in units of
    :func:`time_scale`. The initial velocity defaults to :func:`matched_initial_velocity`. Returns an array of
    shape ``(len(times), *q0.shape)`` (positions only).
    """
    check_hyperparameters(lr, momentum, dampening, weight_decay)
    q0 = np.asarray(q0, dtype=np.float64)
    times = _times(times)
    m, mu = effective_mass(lr, momentum, dampening), damping(momentum, dampening)
    if initial_velocity is None:
        initial_velocity = matched_initial_velocity(gradient(q0) + weight_decay * q0, momentum, dampening)
    v0 = np.asarray(initial_velocity, dtype=np.float64)
    if v0.shape != q0.shape:
        raise ValueError(f"initial_velocity must have the shape of q0, {q0.shape}, got {v0.shape}")
    size = q0.size

    def rhs(_: float, state: np.ndarray) -> np.ndarray:
        q, v = state[:size], state[size:]
        force = gradient(q.reshape(q0.shape)).ravel() + weight_decay * q
        return np.concatenate([v, -(force + mu * v) / m])

    if len(times) == 1:
        return q0[None].copy()
    start = np.concatenate([q0.ravel(), v0.ravel()])
    solution = solve_ivp(rhs, (0.0, times[-1]), start, method="DOP853", t_eval=times, rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"modified-equation integration failed: {solution.message}")
    return solution.y[:size].T.reshape(len(times), *q0.shape)


@dataclass(frozen=True)
class GlobalErrors:
    """Global errors :math:`|q(T)-q_n|` of the continuous models against the iterates, one entry per learning rate."""

    lrs: np.ndarray
    gradient_flow: np.ndarray
    modified_equation: np.ndarray


def global_errors(
    iterates: Callable[[float, int], np.ndarray],
    gradient: Gradient,
    q0: np.ndarray,
    steps: Sequence[int],
    total_time: float,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    initial_velocity: Literal["matched", "first step"] = "matched",
    rtol: float = RTOL,
    atol: float = ATOL,
) -> GlobalErrors:
    """Error at time :math:`T` of gradient flow and of the modified equation (Eq. 3) against discrete iterates.

    For each number of steps :math:`n` the learning rate is :math:`\\eta=T/(n(1-\\delta))`, so that :math:`n` steps
    last exactly :math:`T` (:func:`time_scale`).

    Args:
        iterates: ``iterates(lr, n)`` returns the discrete trajectory :math:`q_0,\\dots,q_n` (e.g.
            :func:`noether_lib.rules.heavy_ball`, or :func:`noether_lib.rules.torch_sgd_trajectory` for a network),
            run with the same momentum, dampening and weight decay.
        gradient: the loss gradient the continuous models follow.
        q0: the common starting point.
        steps: the step counts :math:`n` of the sweep.
        total_time: :math:`T`.
        momentum, dampening, weight_decay: :math:`\\beta,\\delta,k`.
        initial_velocity: ``"matched"`` (:func:`matched_initial_velocity`) or ``"first step"``,
            :math:`(q_1-q_0)/h`, which is only first-order accurate with momentum.
        rtol, atol: integration tolerances.
    """
    if initial_velocity not in ("matched", "first step"):
        raise ValueError(f"initial_velocity must be 'matched' or 'first step', got {initial_velocity!r}")
    if not total_time > 0 or not steps or any(not isinstance(n, int | np.integer) or n < 1 for n in steps):
        raise ValueError("total_time must be positive and steps a non-empty sequence of positive integers")
    q0 = np.asarray(q0, dtype=np.float64)
    span = np.array([0.0, total_time])
    flow_end = gradient_flow(gradient, q0, span, momentum=momentum, weight_decay=weight_decay, rtol=rtol, atol=atol)[-1]
    lrs, flow_errors, modified_errors = [], [], []
    for n in steps:
        lr = total_time / (int(n) * (1.0 - dampening))
        path = np.asarray(iterates(lr, int(n)), dtype=np.float64).reshape(int(n) + 1, *q0.shape)
        v0 = (path[1] - path[0]) / time_scale(lr, dampening) if initial_velocity == "first step" else None
        modified_end = modified_flow(
            gradient,
            q0,
            span,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            initial_velocity=v0,
            rtol=rtol,
            atol=atol,
        )[-1]
        lrs.append(lr)
        flow_errors.append(np.linalg.norm(flow_end - path[-1]))
        modified_errors.append(np.linalg.norm(modified_end - path[-1]))
    return GlobalErrors(np.array(lrs), np.array(flow_errors), np.array(modified_errors))


def fitted_order(lrs: np.ndarray, errors: np.ndarray) -> float:
    """Order of accuracy: the least-squares slope of :math:`\\log(\\text{error})` against :math:`\\log\\eta`."""
    lrs, errors = np.asarray(lrs, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    if lrs.shape != errors.shape or lrs.ndim != 1 or len(lrs) < 2 or np.any(lrs <= 0) or np.any(errors <= 0):
        raise ValueError("need at least two positive learning rates and errors of the same length")
    return float(np.polyfit(np.log(lrs), np.log(errors), 1)[0])
