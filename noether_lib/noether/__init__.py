"""Noether charges and Noether's learning dynamics (Sec. 3 of the paper, Eqs. 8--13), and their predictions.

* ``symbolic``: the charge, Eq. 8, NLD and the overdamped limit, with sympy;
* ``coefficients``: the charge equation :math:`m\\ddot C+\\mu\\dot C+\\omega C=F` and checks;
* ``discrete``: the exact recursions (any learning-rate sequence) and the identity;
* ``continuous``: the modified equation (Eq. 3), its overdamped limit and gradient flow;
* ``compare``: the predictions applied to a tracker's table, and their errors.

Everything public is importable from ``noether_lib.noether``.
"""

from __future__ import annotations

from noether_lib.noether.coefficients import Kind, charge_coefficients, check_schedule, effective_dampening
from noether_lib.noether.compare import PREDICTIONS, predict_charges, prediction_errors, relative_error
from noether_lib.noether.continuous import gradient_flow_charge, matched_charge_velocity, modified_equation_charge
from noether_lib.noether.discrete import charge_identity, exact_charge, sgd_exact_charge
from noether_lib.noether.symbolic import (
    generator,
    noether_charge,
    noether_identity_residual,
    noether_learning_dynamics,
    overdamped_limit,
    symmetry_derivative,
)

__all__ = [
    "Kind",
    "generator",
    "noether_charge",
    "symmetry_derivative",
    "noether_identity_residual",
    "noether_learning_dynamics",
    "overdamped_limit",
    "charge_coefficients",
    "check_schedule",
    "effective_dampening",
    "charge_identity",
    "sgd_exact_charge",
    "exact_charge",
    "matched_charge_velocity",
    "modified_equation_charge",
    "gradient_flow_charge",
    "PREDICTIONS",
    "relative_error",
    "predict_charges",
    "prediction_errors",
]
