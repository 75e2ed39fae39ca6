"""Symmetries of a network's loss: the groups, their actions and generators, their discovery and their verification.

* ``noether_lib.symmetry.groups``: :class:`SymmetryGroup` and its :class:`Member` parameters, the per-unit
  :func:`conserved_quantity` (Eq. 13 of the paper), :class:`SymmetryError`, the kind type ``SymmetryKind``.
* ``noether_lib.symmetry.actions``: the actions :math:`Q(q,s)` on plain vectors (:class:`Translation`,
  :class:`Scale`, :class:`Rescale`, :class:`Rotation`) and on networks (:func:`apply_symmetry`,
  :func:`scale_filter_norms`).
* ``noether_lib.symmetry.discovery``: :func:`find_symmetries` reads the groups off a model's graph
  (:mod:`torch.fx`; the walks are in ``noether_lib.symmetry.search`` and ``noether_lib.symmetry.graph``).
* ``noether_lib.symmetry.verification``: :func:`verify_symmetries` and :func:`check_symmetry` prove them
  numerically on a float64 copy of the model and raise :class:`SymmetryError` where one fails;
  :func:`orbit_loss_changes` follows the loss along a whole orbit (or a random line, the control).
* ``noether_lib.symmetry.toys``: the two-parameter toys of chapter 2 (:class:`PlaneToy`, :func:`plane_toys`), their
  gradient flows and conserved quantities.
"""

from __future__ import annotations

from noether_lib.symmetry.actions import (
    VERIFICATION_PARAMETERS,
    VERIFICATION_SPREAD,
    Rescale,
    Rotation,
    Scale,
    Translation,
    apply_symmetry,
    scale_filter_norms,
)
from noether_lib.symmetry.discovery import FoundSymmetries, LossKind, find_symmetries, loss_kind, weight_coverage
from noether_lib.symmetry.graph import unwrap as original_module
from noether_lib.symmetry.groups import (
    SYMMETRY_KINDS,
    Member,
    SymmetryError,
    SymmetryGroup,
    SymmetryKind,
    conserved_quantity,
)
from noether_lib.symmetry.toys import (
    CONTROL_KINDS,
    PlaneToy,
    plane_toys,
    rescale_toy_loss,
    scale_toy_loss,
    translation_toy_loss,
)
from noether_lib.symmetry.verification import SymmetryCheck, check_symmetry, orbit_loss_changes, verify_symmetries

__all__ = [
    "SymmetryKind",
    "SYMMETRY_KINDS",
    "Member",
    "SymmetryGroup",
    "conserved_quantity",
    "SymmetryError",
    "Translation",
    "Scale",
    "Rescale",
    "Rotation",
    "VERIFICATION_PARAMETERS",
    "VERIFICATION_SPREAD",
    "apply_symmetry",
    "scale_filter_norms",
    "LossKind",
    "loss_kind",
    "FoundSymmetries",
    "find_symmetries",
    "original_module",
    "weight_coverage",
    "SymmetryCheck",
    "check_symmetry",
    "verify_symmetries",
    "orbit_loss_changes",
    "PlaneToy",
    "plane_toys",
    "translation_toy_loss",
    "scale_toy_loss",
    "rescale_toy_loss",
    "CONTROL_KINDS",
]
