"""Per-filter measurements: the norm :math:`r` of every scale-invariant filter and its unit-norm gradient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from noether_lib.symmetry import SymmetryGroup, conserved_quantity

__all__ = ["check_scale_groups", "filter_norms", "filter_directions", "unit_gradient_norms_sq"]


def check_scale_groups(groups: Sequence[SymmetryGroup]) -> None:
    """Raise ``ValueError`` unless every group is a scale group (the only kind normalization makes)."""
    for g in groups:
        if g.kind != "scale":
            raise ValueError(f"group {g.name!r} has kind {g.kind!r}; normalization needs scale groups")


def filter_norms(groups: Sequence[SymmetryGroup], params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Norm :math:`r` of every scale-invariant filter (all members' slices of a unit), concatenated over ``groups``."""
    check_scale_groups(groups)
    return torch.cat([conserved_quantity(g, params).sqrt() for g in groups])


def unit_gradient_norms_sq(
    groups: Sequence[SymmetryGroup], params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """:math:`|\\hat g|^2` per filter: the squared loss gradient at the unit-norm filter :math:`\\hat q` (Eq. 15).

    Scale invariance gives :math:`\\nabla f(q)=\\nabla f(\\hat q)/r`, hence :math:`|\\hat g|^2=r^2|\\nabla f(q)|^2`.
    ``grads`` holds the loss gradients only (no weight decay).
    """
    return filter_norms(groups, params) ** 2 * filter_norms(groups, grads) ** 2


def filter_directions(groups: Sequence[SymmetryGroup], params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Unit-norm direction :math:`\\hat q=q/r` of every filter, one ``(units, size)`` matrix per group (float64)."""
    check_scale_groups(groups)
    with torch.no_grad():
        out = []
        for g in groups:
            q = torch.cat([s.reshape(g.num_units, -1) for s in g.slices(params)], dim=1).double()
            out.append(q / q.norm(dim=1, keepdim=True))
    return out
