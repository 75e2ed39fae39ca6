"""The modified equation as implicit gradient regularization (Barrett & Dherin 2021; Smith et al. 2021).

Backward error analysis of a two-step learning rule: look for the first-order flow :math:`\\dot q=F(q)` whose exact
solution, sampled every :math:`\\eta`, satisfies the rule's recursion up to :math:`O(\\eta^3)` per step. For heavy
ball, :math:`q_{n+1}-q_n-\\beta(q_n-q_{n-1})=-\\eta\\nabla f(q_n)`, the answer is gradient flow on a *modified loss*

.. math:: (1-\\beta)\\,\\dot q=-\\nabla\\tilde f,\\qquad
   \\tilde f=f+\\frac{\\eta(1+\\beta)}{4(1-\\beta)^2}\\,|\\nabla f|^2 ,

the overdamped reduction of the paper's Eq. 3 (:math:`\\ddot q` replaced by the time derivative of the leading
flow). With :math:`\\beta=0` it is Barrett and Dherin's :math:`f+\\tfrac\\eta4|\\nabla f|^2`. The same analysis covers
PyTorch's Nesterov (:mod:`noether_lib.nesterov`): the rule's gradient may be *looked ahead*,
:math:`-\\eta[(1+c)\\nabla f(q_n)-c\\nabla f(q_{n-1})]`, with :math:`c=0` for heavy ball and :math:`c=\\beta` for Nesterov.

A two-step rule also has a parasitic mode :math:`\\propto\\beta^n`. PyTorch starts from an empty momentum buffer, so
the iterates follow the modified flow from a shifted start :func:`principal_start`, an :math:`O(\\eta)` shift; without
it the flow is only first-order accurate (derived here, not in the paper).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from noether_lib.learning_rule import Scalar, check_hyperparameters
from noether_lib.rules import Gradient

__all__ = [
    "Hessian",
    "ToyLoss",
    "toy_loss",
    "two_step_modified_field",
    "regularization_coefficient",
    "modified_loss",
    "principal_start",
    "regularized_flow",
    "global_error_sweep",
    "FlowModel",
    "order_sweep",
]

#: The type of a Hessian field, which maps parameters (a float64 array) to the Hessian of the loss there.
Hessian = Callable[[np.ndarray], np.ndarray]

_RTOL, _ATOL = 1e-12, 1e-14


@dataclass(frozen=True)
class ToyLoss:
    """A smooth loss as a sympy expression with its numerical gradient and Hessian."""

    expression: sp.Expr
    variables: tuple[sp.Symbol, ...]
    gradient: Gradient
    hessian: Hessian

    def __call__(self, q: np.ndarray) -> float:
        return float(sp.lambdify(self.variables, self.expression, "numpy")(*q))


def toy_loss(expression: sp.Expr | None = None, variables: tuple[sp.Symbol, ...] | None = None) -> ToyLoss:
    """A toy loss with gradient and Hessian from sympy; default the non-quadratic
    :math:`f=\\tfrac12(x^2+3y^2)+\\tfrac14x^2y^2` (its Hessian varies, so :math:`\\nabla|\\nabla f|^2` is not linear)."""
    if expression is None:
        x, y = sp.symbols("x y", real=True)
        variables = (x, y)
        expression = (x**2 + 3 * y**2) / 2 + x**2 * y**2 / 4
    if variables is None:
        raise ValueError("give the variables of the expression")
    grad = [sp.diff(expression, v) for v in variables]
    hess = sp.hessian(expression, variables)
    grad_f = sp.lambdify(variables, grad, "numpy")
    hess_f = sp.lambdify(variables, hess, "numpy")
    return ToyLoss(
        expression,
        tuple(variables),
        lambda q: np.asarray(grad_f(*q), dtype=np.float64),
        lambda q: np.asarray(hess_f(*q), dtype=np.float64),
    )


def two_step_modified_field(
    lr: sp.Symbol, momentum: sp.Expr, lookahead: sp.Expr, q: sp.Symbol, loss: sp.Function
) -> sp.Expr:
    """Derive, in one dimension, the modified vector field :math:`F=a_0f'+\\eta a_1f'f''` of the two-step rule
    :math:`q_{n+1}-q_n-\\beta(q_n-q_{n-1})=-\\eta[(1+c)f'(q_n)-cf'(q_{n-1})]` (``lookahead`` :math:`c`).

    The exact flow of :math:`F` is expanded in a Lie series, :math:`q(t\\pm\\eta)=\\sum_j(\\pm\\eta)^jD^jq/j!` with
    :math:`D=F\\,\\partial_q`, inserted into the recursion and solved order by order in :math:`\\eta` up to
    :math:`\\eta^2`. In several dimensions :math:`f'f''` reads :math:`\\nabla^2f\\nabla f=\\tfrac12\\nabla|\\nabla f|^2`.
    """
    a0, a1 = sp.symbols("a0 a1")
    fp = sp.diff(loss(q), q)
    field = a0 * fp + lr * a1 * fp * sp.diff(fp, q)

    def shifted(sign: int, order: int = 2) -> sp.Expr:
        term, total = q, q
        for j in range(1, order + 1):
            term = sp.diff(term, q) * field
            total += (sign * lr) ** j / sp.factorial(j) * term
        return total

    ahead, behind = shifted(+1), shifted(-1)
    # f'(q(t - eta)) as a Taylor series around q: behind - q is O(eta)
    gradient_behind = sum(sp.diff(loss(q), q, k + 1) * (behind - q) ** k / sp.factorial(k) for k in range(2))
    residual = ahead - q - momentum * (q - behind) + lr * ((1 + lookahead) * fp - lookahead * gradient_behind)
    series = sp.expand(sp.series(residual, lr, 0, 3).removeO())
    first = sp.solve(series.coeff(lr, 1), a0)[0]
    second = sp.solve(series.coeff(lr, 2).subs(a0, first), a1)[0]
    return sp.factor(first) * fp + lr * sp.factor(second) * fp * sp.diff(fp, q)


def regularization_coefficient(lr: Scalar, momentum: Scalar = 0.0, lookahead: Scalar = 0.0) -> Scalar:
    """The coefficient :math:`\\lambda` of :math:`\\tilde f=f+\\lambda|\\nabla f|^2`, with :math:`(1-\\beta)\\dot q=-\\nabla\\tilde f`.

    Heavy ball (``lookahead=0``): :math:`\\lambda=\\eta(1+\\beta)/(4(1-\\beta)^2)`; a look-ahead :math:`c` subtracts
    :math:`\\eta c/(2(1-\\beta))`, so Nesterov (:math:`c=\\beta`) has :math:`\\eta(1-\\beta+2\\beta^2)/(4(1-\\beta)^2)`.
    Both read off :func:`two_step_modified_field` (a test re-derives them). Accepts floats or sympy expressions.
    """
    if not any(isinstance(v, sp.Basic) and not v.is_number for v in (lr, momentum, lookahead)):
        check_hyperparameters(float(lr), float(momentum))
    return lr * ((1 + momentum) - 2 * lookahead * (1 - momentum)) / (4 * (1 - momentum) ** 2)


def modified_loss(loss: ToyLoss, lr: float, momentum: float = 0.0, lookahead: float = 0.0) -> sp.Expr:
    """The modified loss :math:`f+\\lambda|\\nabla f|^2` of :func:`regularization_coefficient`, as a sympy expression."""
    grad_sq = sum(sp.diff(loss.expression, v) ** 2 for v in loss.variables)
    return loss.expression + sp.nsimplify(regularization_coefficient(lr, momentum, lookahead)) * grad_sq


def principal_start(
    q0: np.ndarray, first_gradient: np.ndarray, lr: float, momentum: float, first_step: float = 1.0
) -> np.ndarray:
    """The start :math:`Q(0)` of the modified flow that a two-step rule follows after its parasitic mode has died.

    The rule's first step is :math:`q_1=q_0-\\eta a\\,g_0` (``first_step`` :math:`a`: 1 for heavy ball from an empty
    buffer, :math:`1+\\beta` for PyTorch's Nesterov), while the flow moves by :math:`-\\eta g_0/(1-\\beta)` per step.
    Writing :math:`q_n=Q(n\\eta)+c\\beta^n` and matching :math:`q_0,q_1` gives
    :math:`Q(0)=q_0+\\eta g_0\\,(\\tfrac1{1-\\beta}-a)/(1-\\beta)+O(\\eta^2)`.
    """
    check_hyperparameters(lr, momentum)
    q0, g0 = np.asarray(q0, dtype=np.float64), np.asarray(first_gradient, dtype=np.float64)
    return q0 + lr * g0 * (1 / (1 - momentum) - first_step) / (1 - momentum)


def regularized_flow(
    loss: ToyLoss, q0: np.ndarray, times: np.ndarray, *, momentum: float = 0.0, coefficient: float = 0.0
) -> np.ndarray:
    """Integrate :math:`(1-\\beta)\\dot q=-(\\nabla f+2\\lambda\\nabla^2f\\,\\nabla f)`, gradient flow on
    :math:`f+\\lambda|\\nabla f|^2`; ``coefficient=0`` is plain gradient flow. Returns :math:`q` at ``times``."""
    check_hyperparameters(1.0, momentum)
    q0 = np.asarray(q0, dtype=np.float64)

    def rhs(_: float, q: np.ndarray) -> np.ndarray:
        g = loss.gradient(q)
        return -(g + 2 * coefficient * loss.hessian(q) @ g) / (1 - momentum)

    solution = solve_ivp(rhs, (0.0, float(times[-1])), q0, method="DOP853", t_eval=times, rtol=_RTOL, atol=_ATOL)
    if not solution.success:
        raise RuntimeError(f"modified-flow integration failed: {solution.message}")
    return solution.y.T


def global_error_sweep(
    iterates: Callable[[float, int], np.ndarray],
    model_end: Callable[[float], np.ndarray],
    steps: list[int],
    total_time: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Global error :math:`|Q_\\eta(T)-q_n|` at :math:`T=n\\eta` of a continuous model against the iterates.

    ``iterates(lr, n)`` returns :math:`q_0..q_n`; ``model_end(lr)`` the model's state at :math:`T` for that
    learning rate. Returns ``(lrs, errors)`` for :func:`noether_lib.modified_equation.fitted_order`.
    """
    if not total_time > 0 or not steps:
        raise ValueError("total_time must be positive and steps non-empty")
    lrs = np.array([total_time / n for n in steps])
    errors = np.array([np.linalg.norm(model_end(lr) - iterates(lr, n)[-1]) for lr, n in zip(lrs, steps)])
    return lrs, errors


@dataclass(frozen=True)
class FlowModel:
    """A continuous model of a two-step rule for :func:`order_sweep`: gradient flow on the modified loss with the
    coefficient of look-ahead ``lookahead`` (``None``: plain gradient flow, :math:`\\lambda=0`), started at
    :func:`principal_start` (``shifted_start``) or at :math:`q_0`."""

    lookahead: float | None
    shifted_start: bool = True


def order_sweep(
    loss: ToyLoss,
    q0: np.ndarray,
    rule: Callable[..., np.ndarray],
    *,
    momentum: float,
    first_step: float,
    steps: Sequence[int],
    total_time: float,
    models: Mapping[str, FlowModel],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Global errors at :math:`T` of each of ``models`` against ``rule(gradient, q0, lr, n, momentum=...)``
    (e.g. :func:`noether_lib.rules.heavy_ball`, :func:`noether_lib.nesterov.nesterov_iterates`) for
    :math:`\\eta=T/n`, ``n`` in ``steps``; ``first_step`` is the rule's first-step factor for
    :func:`principal_start`. Returns ``{name: (lrs, errors)}``."""
    q0 = np.asarray(q0, dtype=np.float64)
    span = np.array([0.0, total_time])
    paths = {n: rule(loss.gradient, q0, total_time / n, n, momentum=momentum)[-1] for n in steps}

    def end(model: FlowModel, lr: float) -> np.ndarray:
        start = principal_start(q0, loss.gradient(q0), lr, momentum, first_step) if model.shifted_start else q0
        coefficient = 0.0 if model.lookahead is None else regularization_coefficient(lr, momentum, model.lookahead)
        return regularized_flow(loss, start, span, momentum=momentum, coefficient=coefficient)[-1]

    def iterates(_: float, n: int) -> np.ndarray:
        return paths[n][None]

    return {
        name: global_error_sweep(iterates, functools.partial(end, model), list(steps), total_time)
        for name, model in models.items()
    }
