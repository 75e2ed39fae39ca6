"""Training on fixed-norm filters: the paper's filter-norm constraint and optimisers on the unit sphere.

:class:`UnitFilterSGD` is heavy ball on unit-norm filters with a per-filter divisor; :class:`SphereSGD` takes its
divisor from the exact norm recursion (β = 0: *the same* training as free SGD with weight decay);
:class:`FilterRMSProp` takes it from an RMSProp accumulator (Eq. 18), the adaptive optimiser of Eq. 17.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import Module

from noether_lib.learning_rule import check_hyperparameters
from noether_lib.normalization.closed_form import _check_accumulator, accumulator_step, sphere_step_size
from noether_lib.normalization.filters import check_scale_groups, filter_norms, unit_gradient_norms_sq
from noether_lib.symmetry import SymmetryGroup

__all__ = ["FilterNormConstraint", "UnitFilterSGD", "SphereSGD", "FilterRMSProp"]


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
        check_scale_groups(groups)
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
    and projects back onto the unit sphere. With ``divisor`` :math:`=r^2(t)` it trains the direction as the
    effective learning rate :math:`\\eta/r^2` says; a constant divisor is the paper's constrained (non-adaptive)
    training. The filters are normalised at construction; other parameters are left to another optimiser.
    """

    def __init__(self, model: Module, groups: Sequence[SymmetryGroup], *, lr: float, momentum: float = 0.0) -> None:
        check_hyperparameters(lr, momentum)
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

    @property
    def num_units(self) -> int:
        """Number of filters, over all groups."""
        return sum(g.num_units for g in self.groups)

    def unit_gradients_sq(self) -> torch.Tensor:
        """:math:`|\\hat g|^2` of every filter from the current gradients (float64)."""
        grads = {name: p.grad for name, p in self.params.items() if p.grad is not None}
        return unit_gradient_norms_sq(self.groups, self.params, grads).detach().to(torch.float64)

    def step(self, divisor: torch.Tensor | None = None) -> None:
        """One step with per-filter divisor (concatenated over groups, like :func:`filter_norms`)."""
        if divisor is None:
            raise ValueError("UnitFilterSGD needs a per-filter divisor")
        divisor = torch.as_tensor(divisor)
        if divisor.shape != (self.num_units,):
            raise ValueError(f"divisor has {divisor.numel()} entries for {self.num_units} filters")
        with torch.no_grad():
            start = 0
            for group in self.groups:
                inverse = 1.0 / divisor[start : start + group.num_units]
                start += group.num_units
                for member in group.members:
                    p = self.params[member.parameter]
                    if p.grad is None:
                        raise ValueError(f"{member.parameter} has no gradient: call backward() before step()")
                    d = p.grad * _unit_factor_view(inverse, p, member.dim)
                    buf = self.buffers.get(member.parameter)
                    buf = d.clone() if buf is None else buf.mul_(self.momentum).add_(d)
                    self.buffers[member.parameter] = buf
                    p.add_(buf, alpha=-self.lr)
        self.constraint.apply()


class SphereSGD(UnitFilterSGD):
    """Projected SGD on the unit sphere whose step is :func:`sphere_step_size`, :math:`\\eta/((1-\\eta k)r_n^2)`,
    with :math:`r_n^2` carried by :func:`sphere_norm_recursion`'s step from this run's own :math:`|\\hat g_n|^2`.

    Started from the free run's norms ``initial_norm_squared``, it reproduces SGD with weight decay ``weight_decay``
    on scale-invariant filters exactly (β = 0, up to round-off); ``norm_squared`` is then the free run's
    :math:`r_n^2`. No weight decay acts on the filters themselves.
    """

    def __init__(
        self,
        model: Module,
        groups: Sequence[SymmetryGroup],
        *,
        lr: float,
        weight_decay: float,
        initial_norm_squared: torch.Tensor,
    ) -> None:
        units = sum(g.num_units for g in groups)
        self.norm_squared = torch.as_tensor(initial_norm_squared, dtype=torch.float64).clone()
        if self.norm_squared.shape != (units,):
            raise ValueError(f"initial_norm_squared has {self.norm_squared.numel()} entries for {units} filters")
        super().__init__(model, groups, lr=lr, momentum=0.0)
        sphere_step_size(lr, weight_decay, np.ones(1))  # validates lr * k < 1
        self.weight_decay = weight_decay

    def step(self, divisor: torch.Tensor | None = None) -> None:
        """Step with :math:`(1-\\eta k)r_n^2`, then advance :math:`r_n^2` with this step's :math:`|\\hat g_n|^2`."""
        if divisor is not None:
            raise ValueError("SphereSGD computes its own divisor")
        g_sq = self.unit_gradients_sq()
        decay = 1 - self.lr * self.weight_decay
        super().step(decay * self.norm_squared)
        self.norm_squared = decay**2 * self.norm_squared + self.lr**2 * g_sq / self.norm_squared


class FilterRMSProp(UnitFilterSGD):
    """Scalar, per-filter RMSProp on unit-norm filters (Eq. 18): one :math:`G` per filter advanced by
    :func:`accumulator_step`, then :class:`UnitFilterSGD`'s step with divisor :math:`\\sqrt G`.

    With ``(rho, weight)`` from :func:`matched_rmsprop`, :math:`\\sqrt G` is the Eq. 17 prediction of :math:`r^2`
    computed online from this run's own gradients.
    """

    def __init__(
        self,
        model: Module,
        groups: Sequence[SymmetryGroup],
        *,
        lr: float,
        rho: float,
        weight: float,
        momentum: float = 0.0,
        initial: float | torch.Tensor = 1.0,
    ) -> None:
        super().__init__(model, groups, lr=lr, momentum=momentum)
        _check_accumulator(rho, weight)
        self.rho, self.weight = rho, weight
        self.accumulator = torch.ones(self.num_units, dtype=torch.float64) * torch.as_tensor(
            initial, dtype=torch.float64
        )

    def step(self, divisor: torch.Tensor | None = None) -> None:
        """Update every filter's :math:`G` from its current gradient, then step with divisor :math:`\\sqrt G`."""
        if divisor is not None:
            raise ValueError("FilterRMSProp computes its own divisor")
        self.accumulator = torch.as_tensor(
            accumulator_step(self.accumulator, self.unit_gradients_sq(), self.rho, self.weight)
        )
        super().step(self.accumulator.sqrt())
