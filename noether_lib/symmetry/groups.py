"""Groups as data: :class:`Member`, :class:`SymmetryGroup`, the per-unit conserved quantities, and the error type.

A :class:`SymmetryGroup` is a *family* of one-parameter symmetries, one per unit (a channel, a neuron, an input
unit of the logit layer). Each unit's symmetry acts on slices of one or more parameters: member ``m``'s tensor,
with axis ``m.dim`` moved first and reshaped to ``(num_units, -1)``, has unit ``u``'s slice as row ``u``
(:meth:`SymmetryGroup.slices`). With ``num_units=1`` the whole member is one unit (the bias translation of the
logits, a layer feeding a :class:`~torch.nn.LayerNorm`). Per unit the action :math:`Q(q,s)` is

* translation: :math:`Q=q+s\\,\\text{sign}\\,\\mathbf 1` on each member's slice,
* scale and rescale: :math:`Q=e^{\\text{sign}\\,s}\\,q` on each member's slice,

so the generator :math:`\\partial_sQ|_{s=0}` is ``sign * ones`` (translation) or ``sign * slice`` (scale, rescale).
Under gradient flow each unit conserves (Eq. 13 of the paper, Euclidean case)

* scale and rescale: :math:`\\sum_{\\text{members}}\\text{sign}\\,\\lVert\\text{slice}\\rVert^2`,
* translation: :math:`\\sum_{\\text{members}}\\text{sign}\\,\\langle\\mathbf 1,\\text{slice}\\rangle`,

which :func:`conserved_quantity` evaluates for every unit at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch

__all__ = ["SymmetryKind", "SYMMETRY_KINDS", "Member", "SymmetryGroup", "conserved_quantity", "SymmetryError"]

#: The three kinds of symmetry of a network's loss (the paper's introduction, after Kunin et al. 2021).
SymmetryKind = Literal["translation", "scale", "rescale"]
#: The kinds, in the order the book lists them.
SYMMETRY_KINDS: tuple[SymmetryKind, ...] = get_args(SymmetryKind)


class SymmetryError(ValueError):
    """A symmetry was asked for where it does not hold, or a model's graph cannot be analysed."""


@dataclass(frozen=True)
class Member:
    """One parameter taking part in a symmetry group.

    Attributes:
        parameter: the parameter's name in ``model.named_parameters()``.
        dim: the axis of that parameter that indexes the group's units.
        sign: the generator's coefficient on this parameter (+1, or -1 for the outgoing side of a rescale).
    """

    parameter: str
    dim: int
    sign: int = 1


@dataclass(frozen=True)
class SymmetryGroup:
    """A family of ``num_units`` one-parameter symmetries of the same kind, acting on ``members``."""

    kind: SymmetryKind
    name: str
    members: tuple[Member, ...]
    num_units: int

    def slices(self, params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each member's tensor reshaped to ``(num_units, -1)``: row ``u`` is unit ``u``'s slice."""
        return [params[m.parameter].movedim(m.dim, 0).reshape(self.num_units, -1) for m in self.members]

    def generator_slices(self, params: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The generator :math:`\\partial_sQ|_{s=0}` laid out like :meth:`slices` (row ``u``: unit ``u``)."""
        return [
            m.sign * (torch.ones_like(s) if self.kind == "translation" else s)
            for m, s in zip(self.members, self.slices(params))
        ]

    def generator(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generator :math:`\\partial_sQ|_{s=0}` of all units at once, as one tensor per member parameter."""
        out: dict[str, torch.Tensor] = {}
        for m in self.members:
            p = params[m.parameter]
            g = m.sign * (torch.ones_like(p) if self.kind == "translation" else p)
            out[m.parameter] = out[m.parameter] + g if m.parameter in out else g
        return out

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the member parameters, in order."""
        return tuple(m.parameter for m in self.members)


def conserved_quantity(group: SymmetryGroup, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-unit quantity that gradient flow conserves for ``group`` (a vector of length ``num_units``)."""
    total: torch.Tensor | None = None
    for m, s in zip(group.members, group.slices(params)):
        term = m.sign * (s.sum(dim=1) if group.kind == "translation" else s.pow(2).sum(dim=1))
        total = term if total is None else total + term
    if total is None:
        raise SymmetryError(f"group {group.name!r} has no members")
    return total
