"""Normalization and implicit adaptive optimization (Sec. 4 of the paper, Eqs. 14--18).

A filter whose output is normalised (a convolution or linear row feeding batch norm) leaves the loss unchanged when
it is rescaled, :math:`f((1+s)q)=f(q)`. Written in polar form :math:`q=r\\hat q`, SGD with momentum :math:`\\beta`
and weight decay :math:`k` moves the direction :math:`\\hat q` like an adaptive optimiser with step
:math:`\\eta/r^2` (Eq. 15), while kinetic symmetry breaking makes :math:`r^2` a running memory of the squared
gradient norms (Eqs. 16--17), the same functional form as RMSProp's :math:`\\sqrt G` (Eq. 18).

Contents:

* symbolic (sympy): the Lagrangian in polar coordinates (Eq. 14), the radial and angular equations (Eq. 15) and the
  norm equation (Eq. 16);
* numeric: filter norms :math:`r`, the unit-norm gradients :math:`|\\hat g|^2`, the effective learning rate, the
  closed form (Eq. 17), RMSProp's continuous solution (Eq. 18), the steady state :math:`r^4_\\star`, the angular
  update and the momentum factors;
* training: the filter-norm constraint, heavy ball on unit-norm filters with a per-filter step, a scalar per-filter
  RMSProp, a recorder of :math:`r^2,|\\hat g|^2`, and a short training loop that uses them.

Continuous time is :math:`t=n\\eta` after :math:`n` steps. Weight decay follows PyTorch's SGD:
``v = beta * v + g + k * q; q -= lr * v``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from torch import nn
from torch.nn import Module

from noether_lib.learning_rule import damping, effective_mass
from noether_lib.symmetry import Member, SymmetryGroup, conserved_quantity

__all__ = [
    "smoothed_loss",
    "loss_curve_gap",
    "polar_lagrangian",
    "radial_equation",
    "angular_equation",
    "norm_equation",
    "filter_norms",
    "unit_gradient_norms_sq",
    "effective_learning_rate",
    "momentum_amplification",
    "adaptive_prefactor",
    "memory_rate",
    "closed_form_norm_squared",
    "rmsprop_closed_form",
    "matched_rmsprop",
    "rmsprop_accumulator",
    "steady_state_norm4",
    "angular_update",
    "correlation_factor",
    "autocorrelation",
    "regime_position",
    "FilterNormConstraint",
    "UnitFilterSGD",
    "FilterRMSProp",
    "NormRecorder",
    "NormRecord",
    "angle_toy",
    "angle_loss",
    "minibatch_loss",
    "train_and_record",
]


# --------------------------------------------------------------------------------------------- symbolic (Eqs. 14-16)
def polar_lagrangian(
    r: sp.Expr, theta: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, k: sp.Expr, loss: sp.Expr
) -> sp.Expr:
    """Lagrangian (4) of SGD with momentum and weight decay in polar coordinates (Eq. 14), for a 2-D filter.

    The Cartesian Lagrangian :math:`e^{\\mu t/m}[\\tfrac m2|\\dot q|^2-f-\\tfrac k2|q|^2]` is evaluated on
    :math:`q=r(\\cos\\theta,\\sin\\theta)`; ``loss`` is :math:`f(\\hat q)`, a function of ``theta`` only (scale symmetry).
    """
    x, y = r * sp.cos(theta), r * sp.sin(theta)
    kinetic = m / 2 * (sp.diff(x, t) ** 2 + sp.diff(y, t) ** 2)
    return sp.exp(mu * t / m) * (sp.trigsimp(sp.expand(kinetic)) - loss - k / 2 * sp.simplify(x**2 + y**2))


def radial_equation(r: sp.Expr, theta: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, k: sp.Expr) -> sp.Expr:
    """The paper's radial equation, :math:`m\\ddot r+\\mu\\dot r-(m|\\dot{\\hat q}|^2-k)r` (zero on solutions)."""
    return m * sp.diff(r, t, 2) + mu * sp.diff(r, t) - (m * sp.diff(theta, t) ** 2 - k) * r


def angular_equation(r: sp.Expr, theta: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, loss: sp.Expr) -> sp.Expr:
    """The paper's angular equation (Eq. 15), :math:`m\\ddot{\\hat q}+\\mu\\dot{\\hat q}+\\hat g/r^2` (zero on solutions).

    In 2-D the direction is the angle ``theta`` and :math:`\\hat g=\\partial f/\\partial\\theta`.
    """
    return m * sp.diff(theta, t, 2) + mu * sp.diff(theta, t) + sp.diff(loss, theta) / r**2


def norm_equation(
    r_squared: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, k: sp.Expr, g_hat_sq: sp.Expr
) -> sp.Expr:
    """The norm equation (Eq. 16), :math:`m\\partial_t^2r^2+\\mu\\partial_tr^2+2kr^2-2m|\\hat g|^2/(\\mu^2r^2)`."""
    return (
        m * sp.diff(r_squared, t, 2) + mu * sp.diff(r_squared, t) + 2 * k * r_squared
        - 2 * m * g_hat_sq / (mu**2 * r_squared)
    )


# ------------------------------------------------------------------------------------------ per-filter measurements
def _check_scale(groups: Sequence[SymmetryGroup]) -> None:
    for g in groups:
        if g.kind != "scale":
            raise ValueError(f"group {g.name!r} has kind {g.kind!r}; normalization needs scale groups")


def filter_norms(groups: Sequence[SymmetryGroup], params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Norm :math:`r` of every scale-invariant filter (all members' slices of a unit), concatenated over ``groups``."""
    _check_scale(groups)
    return torch.cat([conserved_quantity(g, params).sqrt() for g in groups])


def unit_gradient_norms_sq(
    groups: Sequence[SymmetryGroup], params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """:math:`|\\hat g|^2` per filter: the squared loss gradient at the unit-norm filter :math:`\\hat q` (Eq. 15).

    Scale invariance gives :math:`\\nabla f(q)=\\nabla f(\\hat q)/r`, hence :math:`|\\hat g|^2=r^2|\\nabla f(q)|^2`.
    ``grads`` holds the loss gradients only (no weight decay).
    """
    return filter_norms(groups, params) ** 2 * filter_norms(groups, grads) ** 2


# ------------------------------------------------------------------------------------------------ formulas (numeric)
def _check_hyper(lr: float, momentum: float, weight_decay: float = 0.0) -> None:
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"the momentum must lie in [0, 1), got {momentum}")
    if not weight_decay >= 0:
        raise ValueError(f"the weight decay must be non-negative, got {weight_decay}")


def effective_learning_rate(lr: float, norm_squared: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The direction's effective learning rate :math:`\\eta/r^2` (Eq. 15)."""
    _check_hyper(lr, 0.0)
    return lr / norm_squared


def adaptive_prefactor(lr: float, momentum: float) -> float:
    """Prefactor :math:`4m/\\mu^3=2\\eta(1+\\beta)/(1-\\beta)^3` of the gradient memory in Eq. 17."""
    _check_hyper(lr, momentum)
    return 4 * effective_mass(lr, momentum) / damping(momentum) ** 3


def momentum_amplification(momentum: float) -> float:
    """:math:`(1+\\beta)/(1-\\beta)^3`: Eq. 17's prefactor relative to plain SGD's :math:`2\\eta` (1900 at β=0.9)."""
    return adaptive_prefactor(1.0, momentum) / 2


def memory_rate(momentum: float, weight_decay: float) -> float:
    """Decay rate :math:`4k/\\mu=4k/(1-\\beta)` of Eq. 17's memory kernel; RMSProp's :math:`(1-\\rho)/\\eta` (Eq. 18)."""
    _check_hyper(1.0, momentum, weight_decay)
    return 4 * weight_decay / damping(momentum)


def _discounted_memory(
    samples: np.ndarray, dt: float, rate: float, prefactor: float, initial: np.ndarray | float
) -> np.ndarray:
    """:math:`\\text{prefactor}\\int_0^te^{-\\text{rate}(t-\\tau)}h(\\tau)d\\tau+e^{-\\text{rate}\\,t}\\,\\text{initial}`
    at :math:`t=n\\,dt`, ``n = 0..len(samples)``, with ``h`` constant over each step (exact for that ``h``)."""
    samples = np.asarray(samples, dtype=np.float64)
    decay = np.exp(-rate * dt)
    gain = prefactor * (-np.expm1(-rate * dt) / rate if rate > 0 else dt)
    out = np.empty((len(samples) + 1,) + samples.shape[1:])
    out[0] = initial
    for n, h in enumerate(samples):  # a running sum that never grows exponentially (stable in float64)
        out[n + 1] = decay * out[n] + gain * h
    return out


def closed_form_norm_squared(
    g_hat_sq: np.ndarray, lr: float, momentum: float, weight_decay: float, initial_norm_squared: np.ndarray | float
) -> np.ndarray:
    """Eq. 17: :math:`r^2(t)=\\sqrt{\\tfrac{2\\eta(1+\\beta)}{(1-\\beta)^3}\\int_0^te^{-\\frac{4k}{1-\\beta}(t-\\tau)}
    |\\hat g(\\tau)|^2d\\tau+e^{-\\frac{4k}{1-\\beta}t}r^4(0)}`.

    Args:
        g_hat_sq: recorded :math:`|\\hat g|^2` at steps ``0..N-1`` (shape ``(N,)`` or ``(N, units)``).
        lr, momentum, weight_decay: SGD's :math:`\\eta,\\beta,k`.
        initial_norm_squared: :math:`r^2(0)` (scalar or per unit).

    Returns:
        :math:`r^2` at :math:`t=n\\eta`, ``n = 0..N`` (one row more than ``g_hat_sq``).
    """
    r4 = _discounted_memory(
        g_hat_sq, lr, memory_rate(momentum, weight_decay), adaptive_prefactor(lr, momentum),
        np.asarray(initial_norm_squared, dtype=np.float64) ** 2,
    )
    return np.sqrt(r4)


def rmsprop_closed_form(g_sq: np.ndarray, lr: float, rho: float, initial: np.ndarray | float) -> np.ndarray:
    """Eq. 18: :math:`\\sqrt{G(t)}=\\sqrt{\\tfrac{1-\\rho}{\\eta}\\int_0^te^{-\\frac{1-\\rho}{\\eta}(t-\\tau)}|g|^2d\\tau
    +e^{-\\frac{1-\\rho}{\\eta}t}G(0)}`, at ``n = 0..N`` like :func:`closed_form_norm_squared`."""
    _check_hyper(lr, 0.0)
    if not 0 < rho <= 1:
        raise ValueError(f"rho must lie in (0, 1], got {rho}")
    rate = (1 - rho) / lr
    return np.sqrt(_discounted_memory(g_sq, lr, rate, rate, initial))


def matched_rmsprop(lr: float, momentum: float, weight_decay: float) -> tuple[float, float]:
    """RMSProp's ``(rho, weight)`` in :math:`G\\leftarrow\\rho G+w|\\hat g|^2` that reproduces Eq. 17 with :math:`G=r^4`.

    The decay matches :math:`(1-\\rho)/\\eta=4k/(1-\\beta)`; the weight is :math:`\\eta` times Eq. 17's prefactor, so the
    recursion is the forward-Euler step of :math:`\\partial_tr^4=-\\frac{4k}{1-\\beta}r^4+\\frac{2\\eta(1+\\beta)}
    {(1-\\beta)^3}|\\hat g|^2`. :math:`k=0` gives :math:`\\rho=1`: AdaGrad-like accumulation.
    """
    rho = 1 - lr * memory_rate(momentum, weight_decay)
    if rho <= 0:
        raise ValueError(f"4*lr*k/(1-beta) = {1 - rho:.3g} must be below 1 for a matched RMSProp")
    return rho, lr * adaptive_prefactor(lr, momentum)


def rmsprop_accumulator(g_sq: np.ndarray, rho: float, weight: float, initial: np.ndarray | float) -> np.ndarray:
    """Scalar RMSProp's accumulator :math:`G_{n+1}=\\rho G_n+w|g_n|^2` run over a recorded ``g_sq``, ``n = 0..N``.

    :class:`FilterRMSProp` applies the same recursion online; this evaluates it along a recorded trajectory.
    """
    if not 0 < rho <= 1 or not weight > 0:
        raise ValueError(f"need 0 < rho <= 1 and weight > 0, got rho={rho}, weight={weight}")
    g_sq = np.asarray(g_sq, dtype=np.float64)
    out = np.empty((len(g_sq) + 1,) + g_sq.shape[1:])
    out[0] = initial
    for n, g2 in enumerate(g_sq):
        out[n + 1] = rho * out[n] + weight * g2
    return out


def steady_state_norm4(g_hat_sq: np.ndarray | float, lr: float, momentum: float, weight_decay: float) -> np.ndarray:
    """Steady state of Eq. 16, :math:`r^4_\\star=m|\\hat g|^2/(k\\mu^2)=\\eta(1+\\beta)|\\hat g|^2/(2k(1-\\beta)^2)`
    (derived in the book, not stated in the paper)."""
    _check_hyper(lr, momentum, weight_decay)
    if weight_decay == 0:
        raise ValueError("without weight decay the norm has no steady state")
    return adaptive_prefactor(lr, momentum) * np.asarray(g_hat_sq) / memory_rate(momentum, weight_decay)


def angular_update(lr: float, momentum: float, weight_decay: float) -> float:
    """Per-step angle of the direction at the steady state, :math:`\\eta\\sqrt{k/m}=\\sqrt{2\\eta k/(1+\\beta)}`
    (spherical motion dynamics): where :math:`2m|\\dot q|^2` balances :math:`2kr^2` in the exact norm equation."""
    _check_hyper(lr, momentum, weight_decay)
    return float(lr * np.sqrt(weight_decay / effective_mass(lr, momentum)))


def smoothed_loss(loss: np.ndarray, window: int = 50) -> np.ndarray:
    """Running mean of a per-step loss curve over ``window`` steps (only complete windows)."""
    loss = np.asarray(loss, dtype=float)
    if window < 1 or window > len(loss):
        raise ValueError(f"window must lie in [1, {len(loss)}], got {window}")
    return np.convolve(loss, np.ones(window) / window, mode="valid")


def loss_curve_gap(loss: np.ndarray, reference: np.ndarray, window: int = 50) -> float:
    """Largest gap between two smoothed loss curves, relative to the reference's mean loss.

    The deviation the book asserts when two runs are claimed equivalent (claim 11: free training versus fixed-norm
    training with the adaptive step :math:`\eta/r^2`).
    """
    loss, reference = np.asarray(loss, dtype=float), np.asarray(reference, dtype=float)
    if loss.shape != reference.shape:
        raise ValueError(f"the curves must have the same length, got {loss.shape} and {reference.shape}")
    gap = np.abs(smoothed_loss(loss, window) - smoothed_loss(reference, window)).max()
    return float(gap / reference.mean())


def correlation_factor(autocorrelation: np.ndarray, momentum: float) -> float:
    """How much of the overdamped speed :math:`|\\dot q|^2=|\\hat g|^2/(\\mu^2r^2)` momentum really delivers.

    With normalised gradient autocorrelation :math:`C(\\ell)` (``autocorrelation[0] = 1``), the heavy-ball velocity
    :math:`v_n=\\sum_i\\beta^ig_{n-i}` has :math:`\\langle|v|^2\\rangle=\\frac{\\langle|g|^2\\rangle}{1-\\beta^2}
    (1+2\\sum_{\\ell\\ge1}\\beta^\\ell C(\\ell))`, so the ratio to the correlated value :math:`\\langle|g|^2\\rangle/(1-\\beta)^2`
    is :math:`\\kappa=\\frac{1-\\beta}{1+\\beta}(1+2\\sum_{\\ell\\ge1}\\beta^\\ell C(\\ell))`: 1 for persistent gradients,
    :math:`(1-\\beta)/(1+\\beta)` for white noise (``autocorrelation = [1]``). Derived in the book, not in the paper.
    """
    _check_hyper(1.0, momentum)
    c = np.asarray(autocorrelation, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0 or not np.isclose(c[0], 1.0):
        raise ValueError("autocorrelation must be a 1-D array starting with C(0) = 1")
    lags = np.arange(1, len(c))
    return float((1 - momentum) / (1 + momentum) * (1 + 2 * np.sum(momentum**lags * c[1:])))


def regime_position(ratio: float, momentum: float) -> float:
    """Where a measured :math:`r^4/\\text{Eq. 17}` ratio lies on a log scale between the white-noise prediction
    :math:`(1-\\beta)/(1+\\beta)` (0) and the correlated one, 1 (1). Needs :math:`\\beta>0`."""
    if not 0 < momentum < 1 or not ratio > 0:
        raise ValueError(f"need 0 < momentum < 1 and a positive ratio, got {momentum}, {ratio}")
    white = correlation_factor(np.array([1.0]), momentum)
    return float(np.log(ratio / white) / -np.log(white))


def autocorrelation(vectors: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation :math:`C(\\ell)=\\sum_n\\langle x_n,x_{n+\\ell}\\rangle/\\sum_n|x_n|^2` of a sequence
    of vectors (rows), for :math:`\\ell=0..` ``max_lag``, each averaged over the available pairs."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 0 <= max_lag < len(x):
        raise ValueError("vectors must be a (steps, dim) array and 0 <= max_lag < steps")
    power = np.mean(np.sum(x * x, axis=1))
    return np.array([np.mean(np.sum(x[: len(x) - lag] * x[lag:], axis=1)) for lag in range(max_lag + 1)]) / power


# ----------------------------------------------------------------------------------------------- training machinery
def _unit_factor_view(factor: torch.Tensor, param: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * param.ndim
    shape[dim] = -1
    return factor.to(param.dtype).view(shape)


class FilterNormConstraint:
    """The paper's constrained filter norm: after each step, :math:`q\\leftarrow|q(0)|\\,q/|q|` for every filter.

    Built from scale groups; remembers each unit's initial norm (or uses ``radius`` for all units) and
    :meth:`apply` projects every filter (its slices across all members, e.g. weight row and bias) back onto it,
    in place, batched per group. Call :meth:`apply` right after ``optimizer.step()``.
    """

    def __init__(self, model: Module, groups: Sequence[SymmetryGroup], *, radius: float | None = None) -> None:
        _check_scale(groups)
        if radius is not None and not radius > 0:
            raise ValueError(f"radius must be positive, got {radius}")
        self.groups = list(groups)
        self.params = dict(model.named_parameters())
        with torch.no_grad():
            self.targets = [
                filter_norms([g], self.params) if radius is None else torch.full((g.num_units,), float(radius))
                for g in self.groups
            ]

    def apply(self) -> None:
        """Project every filter back to its target norm."""
        with torch.no_grad():
            for group, target in zip(self.groups, self.targets):
                factor = target / filter_norms([group], self.params)
                for member in group.members:
                    p = self.params[member.parameter]
                    p.mul_(_unit_factor_view(factor, p, member.dim))


class UnitFilterSGD:
    """Heavy ball on unit-norm filters with a per-filter step: the direction dynamics of Eq. 15.

    ``step(divisor)`` does :math:`v\\leftarrow\\beta v+\\hat g/\\text{divisor}`, :math:`\\hat q\\leftarrow\\hat q-\\eta v`
    and projects back onto the unit sphere. With ``divisor`` :math:`=r^2(t)` it trains the direction exactly as the
    effective learning rate :math:`\\eta/r^2` says. The filters are normalised at construction; other parameters
    are left to another optimiser.
    """

    def __init__(self, model: Module, groups: Sequence[SymmetryGroup], *, lr: float, momentum: float = 0.0) -> None:
        _check_hyper(lr, momentum)
        self.lr, self.momentum = lr, momentum
        self.groups = list(groups)
        self.constraint = FilterNormConstraint(model, groups, radius=1.0)
        self.constraint.apply()
        self.params = self.constraint.params
        self.buffers: dict[str, torch.Tensor] = {}

    @property
    def parameter_names(self) -> set[str]:
        """Names of the parameters this optimiser owns."""
        return {m.parameter for g in self.groups for m in g.members}

    def step(self, divisor: torch.Tensor) -> None:
        """One step with per-filter divisor (concatenated over groups, like :func:`filter_norms`)."""
        divisor = torch.as_tensor(divisor)
        units = sum(g.num_units for g in self.groups)
        if divisor.shape != (units,):
            raise ValueError(f"divisor has {divisor.numel()} entries for {units} filters")
        with torch.no_grad():
            start = 0
            for group in self.groups:
                inverse = 1.0 / divisor[start : start + group.num_units]
                start += group.num_units
                for member in group.members:
                    p = self.params[member.parameter]
                    d = p.grad * _unit_factor_view(inverse, p, member.dim)
                    buf = self.buffers.get(member.parameter)
                    buf = d.clone() if buf is None else buf.mul_(self.momentum).add_(d)
                    self.buffers[member.parameter] = buf
                    p.add_(buf, alpha=-self.lr)
        self.constraint.apply()


class FilterRMSProp(UnitFilterSGD):
    """Scalar, per-filter RMSProp on unit-norm filters (Eq. 18): one :math:`G` per filter,
    :math:`G\\leftarrow\\rho G+w|\\hat g|^2`, then :class:`UnitFilterSGD`'s step with divisor :math:`\\sqrt G`.

    With ``(rho, weight)`` from :func:`matched_rmsprop`, :math:`\\sqrt G` is the Eq. 17 prediction of :math:`r^2`
    computed online from this run's own gradients.
    """

    def __init__(
        self, model: Module, groups: Sequence[SymmetryGroup], *, lr: float, rho: float, weight: float,
        momentum: float = 0.0, initial: float | torch.Tensor = 1.0,
    ) -> None:
        super().__init__(model, groups, lr=lr, momentum=momentum)
        if not 0 < rho <= 1 or not weight > 0:
            raise ValueError(f"need 0 < rho <= 1 and weight > 0, got rho={rho}, weight={weight}")
        self.rho, self.weight = rho, weight
        units = sum(g.num_units for g in self.groups)
        self.accumulator = torch.ones(units, dtype=torch.float64) * torch.as_tensor(initial, dtype=torch.float64)

    def step(self, divisor: torch.Tensor | None = None) -> None:
        """Update every filter's :math:`G` from its current gradient, then step with divisor :math:`\\sqrt G`."""
        if divisor is not None:
            raise ValueError("FilterRMSProp computes its own divisor")
        grads = {name: p.grad for name, p in self.params.items() if p.grad is not None}
        g_sq = unit_gradient_norms_sq(self.groups, self.params, grads).detach().to(torch.float64)
        self.accumulator = self.rho * self.accumulator + self.weight * g_sq
        super().step(self.accumulator.sqrt())


@dataclass
class NormRecord:
    """What :class:`NormRecorder` saw: one row per step (before that step's update)."""

    loss: np.ndarray
    norm_squared: np.ndarray
    g_hat_sq: np.ndarray
    g_hat: np.ndarray | None = None


class NormRecorder:
    """Call :meth:`record` after each backward pass: keeps the loss, every filter's :math:`r^2` and
    :math:`|\\hat g|^2`, and optionally the unit-norm gradients :math:`\\hat g=r\\nabla f` themselves."""

    def __init__(self, model: Module, groups: Sequence[SymmetryGroup], *, keep_gradients: bool = False) -> None:
        _check_scale(groups)
        self.groups, self.keep_gradients = list(groups), keep_gradients
        self.params = dict(model.named_parameters())
        self._rows: list[tuple] = []

    def record(self, loss: torch.Tensor) -> None:
        """Record this step's ``loss`` and, from the current parameters and gradients, every filter's numbers."""
        with torch.no_grad():
            grads = {n: p.grad for n, p in self.params.items() if p.grad is not None}
            r = filter_norms(self.groups, self.params)
            g_hat = None
            if self.keep_gradients:
                parts = [
                    torch.cat(g.slices(grads), dim=1) * filter_norms([g], self.params)[:, None] for g in self.groups
                ]
                g_hat = torch.cat([p.reshape(-1) for p in parts]).double().numpy()
            self._rows.append(
                (float(loss), (r**2).double().numpy(), unit_gradient_norms_sq(self.groups, self.params, grads)
                 .double().numpy(), g_hat)
            )

    def result(self) -> NormRecord:
        """Everything recorded so far, one row per step."""
        loss, r2, g2, gh = zip(*self._rows)
        return NormRecord(np.array(loss), np.stack(r2), np.stack(g2), np.stack(gh) if self.keep_gradients else None)


def angle_toy(units: int, *, radius: float = 1.0, seed: int = 0) -> tuple[Module, SymmetryGroup]:
    """``units`` 2-D filters (parameter ``q`` of shape ``(units, 2)``, float64) at random angles and norm ``radius``,
    with their scale group; train them on :func:`angle_loss`."""
    if units < 1 or not radius > 0:
        raise ValueError(f"need units >= 1 and radius > 0, got {units}, {radius}")
    angle = 2 * np.pi * torch.rand(units, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    module = Module()
    module.q = nn.Parameter(radius * torch.stack([angle.cos(), angle.sin()], 1))
    return module, SymmetryGroup("scale", "toy filters", (Member("q", 0),), units)


def angle_loss(q: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Toy scale-invariant loss :math:`\\sum_u\\xi_u\\,\\theta_u` of 2-D filters ``q[u]`` at angle :math:`\\theta_u`.

    Its gradient is tangential with :math:`|\\hat g_u|=|\\xi_u|`: a constant ``strength`` gives persistent
    (correlated) gradients, a fresh random one each step gives uncorrelated ones.
    """
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"q must have shape (units, 2), got {tuple(q.shape)}")
    return (strength * torch.atan2(q[:, 1], q[:, 0])).sum()


def minibatch_loss(
    model: Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int
) -> Callable[[int], torch.Tensor]:
    """Cross-entropy on a fresh mini-batch per step; the data order is fixed by ``seed`` (reshuffled each epoch)."""
    if not 0 < batch_size <= len(inputs):
        raise ValueError(f"batch_size must lie in [1, {len(inputs)}], got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    per_epoch = len(inputs) // batch_size
    order: list[torch.Tensor] = []

    def loss_at(step: int) -> torch.Tensor:
        while len(order) <= step // per_epoch:
            order.append(torch.randperm(len(inputs), generator=generator))
        idx = order[step // per_epoch][(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
        return nn.functional.cross_entropy(model(inputs[idx]), targets[idx])

    return loss_at


def train_and_record(
    model: Module, groups: Sequence[SymmetryGroup], loss_at: Callable[[int], torch.Tensor], *, steps: int,
    lr: float, momentum: float, weight_decay: float, filters: UnitFilterSGD | None = None,
    norm_squared: np.ndarray | None = None, keep_gradients: bool = False,
) -> NormRecord:
    """Train with PyTorch's SGD (momentum, weight decay) and record every filter's :math:`r^2,|\\hat g|^2`.

    With ``filters`` (a :class:`UnitFilterSGD` or :class:`FilterRMSProp`) the filters are trained by it instead and
    SGD gets the other parameters; a :class:`UnitFilterSGD` then divides step ``n`` by ``norm_squared[n]``.
    """
    _check_hyper(lr, momentum, weight_decay)
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    owned = filters.parameter_names if filters is not None else set()
    rest = [p for n, p in model.named_parameters() if n not in owned]
    sgd = torch.optim.SGD(rest, lr=lr, momentum=momentum, weight_decay=weight_decay) if rest else None
    recorder = NormRecorder(model, groups, keep_gradients=keep_gradients)
    for n in range(steps):
        model.zero_grad(set_to_none=True)
        loss = loss_at(n)
        loss.backward()
        recorder.record(loss.detach())
        if sgd is not None:
            sgd.step()
        if isinstance(filters, FilterRMSProp):
            filters.step()
        elif filters is not None:
            if norm_squared is None:
                raise ValueError("a UnitFilterSGD needs norm_squared, one row per step")
            filters.step(torch.as_tensor(norm_squared[n]))
    return recorder.result()
