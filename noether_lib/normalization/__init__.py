"""Normalization and implicit adaptive optimization (Sec. 4 of the paper, Eqs. 14--18).

A filter whose output is normalised (a convolution or linear row feeding batch norm) leaves the loss unchanged when
it is rescaled, :math:`f((1+s)q)=f(q)`. Written in polar form :math:`q=r\\hat q`, SGD with momentum :math:`\\beta`
and weight decay :math:`k` moves the direction :math:`\\hat q` like an adaptive optimiser with step
:math:`\\eta/r^2` (Eq. 15), while kinetic symmetry breaking makes :math:`r^2` a running memory of the squared
gradient norms (Eqs. 16--17), the same functional form as RMSProp's :math:`\\sqrt G` (Eq. 18).

One concept per module:

* ``polar``: the Lagrangian in polar coordinates and Eqs. 14--16 (sympy);
* ``filters``: filter norms :math:`r` and unit-norm gradients :math:`|\\hat g|^2`;
* ``closed_form``: Eq. 17 and its two parts, Eq. 18, the steady state, the angular
  update, and the exact β = 0 recursion of SGD on the sphere;
* ``momentum``: the correlation factor of momentum and the amplification table;
* ``optimizers``: the filter-norm constraint and optimisers on the unit sphere;
* ``recording``: the recorder (charges-table columns) and the training loop;
* ``toys``: the angle toy, the batch-normalised MLP, mini-batches.

The loss-curve helpers live in ``noether_lib.loss_curves`` (re-exported here for old imports).
"""

from noether_lib.loss_curves import loss_curve_gap, smoothed_loss
from noether_lib.normalization.closed_form import (
    accumulator_step,
    adaptive_prefactor,
    angular_update,
    closed_form_norm_squared,
    closed_form_parts,
    effective_learning_rate,
    matched_rmsprop,
    memory_rate,
    momentum_amplification,
    rmsprop_accumulator,
    rmsprop_closed_form,
    sphere_norm_recursion,
    sphere_step_size,
    stationary_update_ratio,
    steady_state_norm4,
)
from noether_lib.normalization.filters import (
    check_scale_groups,
    filter_directions,
    filter_norms,
    unit_gradient_norms_sq,
)
from noether_lib.normalization.momentum import (
    amplification_table,
    autocorrelation,
    correlation_factor,
    implied_correlation_factor,
)
from noether_lib.normalization.optimizers import FilterNormConstraint, FilterRMSProp, SphereSGD, UnitFilterSGD
from noether_lib.normalization.polar import angular_equation, norm_equation, polar_lagrangian, radial_equation
from noether_lib.normalization.recording import NormRecord, NormRecorder, train_and_record, unit_gradient_sq_from_table
from noether_lib.normalization.toys import (
    angle_loss,
    angle_toy,
    minibatch_loss,
    normalized_mlp,
    train_angle_toy,
    train_minibatches,
)

__all__ = [
    "smoothed_loss",
    "loss_curve_gap",
    "polar_lagrangian",
    "radial_equation",
    "angular_equation",
    "norm_equation",
    "check_scale_groups",
    "filter_norms",
    "filter_directions",
    "unit_gradient_norms_sq",
    "effective_learning_rate",
    "momentum_amplification",
    "adaptive_prefactor",
    "memory_rate",
    "closed_form_parts",
    "closed_form_norm_squared",
    "rmsprop_closed_form",
    "matched_rmsprop",
    "accumulator_step",
    "rmsprop_accumulator",
    "steady_state_norm4",
    "angular_update",
    "stationary_update_ratio",
    "sphere_step_size",
    "sphere_norm_recursion",
    "correlation_factor",
    "autocorrelation",
    "implied_correlation_factor",
    "amplification_table",
    "FilterNormConstraint",
    "UnitFilterSGD",
    "SphereSGD",
    "FilterRMSProp",
    "NormRecorder",
    "NormRecord",
    "unit_gradient_sq_from_table",
    "train_and_record",
    "angle_toy",
    "angle_loss",
    "train_angle_toy",
    "normalized_mlp",
    "minibatch_loss",
    "train_minibatches",
]
