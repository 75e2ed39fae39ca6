"""PyTorch's Nesterov momentum (``nesterov=True``, constant :math:`\\beta`) and its modified equation.

PyTorch's rule is :math:`v_{n+1}=\\beta v_n+g_n`, :math:`q_{n+1}=q_n-\\eta(g_n+\\beta v_{n+1})` with :math:`v_0=0`.
Eliminating :math:`v` gives the two-step recursion

.. math:: q_{n+1}-q_n-\\beta(q_n-q_{n-1})=-\\eta g_n-\\eta\\beta(g_n-g_{n-1}),

heavy ball plus a gradient *difference*. Expanded on a smooth path (:func:`nesterov_modified_equation`) that
difference is :math:`\\eta\\beta\\nabla^2f\\,\\dot q`: a Hessian-damping term,

.. math:: \\tfrac\\eta2(1+\\beta)\\ddot q+(1-\\beta)\\dot q+\\eta\\beta\\nabla^2f\\,\\dot q+\\nabla f=0,

which the paper's Eq. 3 lacks. Table 1's Nesterov equation :math:`\\ddot q+\\tfrac3t\\dot q+\\nabla f=0`
(:func:`noether_lib.mechanics.nesterov_equation_of_motion`, Su, Boyd and Candès) models Nesterov's *original*
schedule :math:`\\beta_n=(n-1)/(n+2)` in the time :math:`t=n\\sqrt\\eta`, not a constant :math:`\\beta`
(:func:`table_one_flow` integrates it, as the control). The first-order reduction is the implicit regularization of
:mod:`noether_lib.implicit_regularization` with look-ahead :math:`c=\\beta`.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from noether_lib.implicit_regularization import ToyLoss, global_error_sweep
from noether_lib.learning_rule import check_hyperparameters
from noether_lib.rules import Gradient

__all__ = ["nesterov_iterates", "nesterov_modified_equation", "first_step_factor", "table_one_flow", "table_one_errors"]


def nesterov_iterates(gradient: Gradient, q0: np.ndarray, lr: float, steps: int, *, momentum: float) -> np.ndarray:
    """PyTorch's ``SGD(nesterov=True)`` without weight decay, in NumPy; returns :math:`q_0,\\dots,q_n`."""
    check_hyperparameters(lr, momentum, steps=steps)
    q0 = np.asarray(q0, dtype=np.float64)
    path = np.empty((steps + 1, *q0.shape))
    path[0] = q0
    buffer = np.zeros_like(q0)
    for n in range(steps):
        g = gradient(path[n])
        buffer = momentum * buffer + g
        path[n + 1] = path[n] - lr * (g + momentum * buffer)
    return path


def first_step_factor(momentum: float) -> float:
    """PyTorch's first Nesterov step is :math:`q_1=q_0-\\eta(1+\\beta)g_0`: the ``first_step`` of
    :func:`noether_lib.implicit_regularization.principal_start`."""
    check_hyperparameters(1.0, momentum)
    return 1.0 + momentum


def nesterov_modified_equation(
    q: sp.Expr, t: sp.Symbol, lr: sp.Symbol, momentum: sp.Expr, loss: sp.Function
) -> sp.Expr:
    """Derive the modified equation of PyTorch's Nesterov in one dimension: the two-step recursion (module docstring)
    on a smooth path :math:`q_{n\\pm1}=q(t\\pm\\eta)`, Taylor-expanded, divided by :math:`\\eta`, truncated before
    :math:`O(\\eta^2)`. Returns :math:`\\tfrac\\eta2(1+\\beta)\\ddot q+(1-\\beta)\\dot q+\\eta\\beta f''\\dot q+f'`."""
    if not isinstance(lr, sp.Symbol):
        raise ValueError("lr must be a sympy Symbol (the expansion variable)")
    h = sp.Symbol("h")
    ahead = sum(h**j / sp.factorial(j) * sp.diff(q, t, j) for j in range(4))
    behind = sum((-h) ** j / sp.factorial(j) * sp.diff(q, t, j) for j in range(4))
    x = sp.Dummy("x")
    grad = sp.diff(loss(x), x)
    grad_now = grad.subs(x, q)
    grad_behind = sum(sp.diff(loss(x), x, k + 1).subs(x, q) * (behind - q) ** k / sp.factorial(k) for k in range(3))
    recursion = (ahead - q - momentum * (q - behind) + h * grad_now + h * momentum * (grad_now - grad_behind)) / h
    truncated = sp.expand(sp.series(sp.expand(recursion), h, 0, 2).removeO()).subs(h, lr)
    return sp.collect(truncated, [sp.diff(q, t, 2), sp.diff(q, t)], sp.factor)


def table_one_flow(gradient: Gradient, q0: np.ndarray, end_time: float, *, start: float = 1e-6) -> np.ndarray:
    """Integrate Table 1's Nesterov equation :math:`\\ddot q+\\tfrac3t\\dot q+\\nabla f=0` from rest at :math:`q_0`
    (from ``start``, its singular point avoided) to ``end_time``; returns :math:`q(\\text{end\\_time})`."""
    q0 = np.asarray(q0, dtype=np.float64)
    size = q0.size

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        q, v = state[:size], state[size:]
        return np.concatenate([v, -3 / t * v - gradient(q.reshape(q0.shape)).ravel()])

    solution = solve_ivp(
        rhs, (start, end_time), np.concatenate([q0.ravel(), np.zeros(size)]), method="DOP853", rtol=1e-12, atol=1e-14
    )
    if not solution.success:
        raise RuntimeError(f"Table 1 integration failed: {solution.message}")
    return solution.y[:size, -1].reshape(q0.shape)


def table_one_errors(
    loss: ToyLoss, q0: np.ndarray, *, momentum: float, steps: list[int], total_time: float
) -> tuple[np.ndarray, np.ndarray]:
    """Global errors of Table 1's Nesterov equation against PyTorch's Nesterov iterates at :math:`T=n\\eta`, the ODE
    run to its own time :math:`n\\sqrt\\eta` (Su, Boyd and Candès's time scale); returns ``(lrs, errors)``."""
    return global_error_sweep(
        lambda lr, n: nesterov_iterates(loss.gradient, q0, lr, n, momentum=momentum),
        lambda lr: table_one_flow(loss.gradient, q0, total_time / np.sqrt(lr)),
        steps,
        total_time,
    )
