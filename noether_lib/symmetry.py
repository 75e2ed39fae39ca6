"""Symmetries of a network's loss, as data: which parameter slices move together, and how.

A :class:`SymmetryGroup` is a *family* of one-parameter symmetries, one per unit (a channel, a neuron, an input
unit of the logit layer). Each unit's symmetry acts on slices of one or more parameters: the slice of parameter
``member.parameter`` at index ``u`` along axis ``member.dim``. The generator :math:`\\partial_sQ|_{s=0}` on that
slice is ``member.sign * slice`` for scale and rescale symmetries and ``member.sign * ones`` for translation.

Under gradient flow each unit conserves (Eq. 13 of the paper, Euclidean case)

* scale and rescale: :math:`\\sum_{\\text{members}}\\text{sign}\\,\\lVert\\text{slice}\\rVert^2`,
* translation: :math:`\\sum_{\\text{members}}\\text{sign}\\,\\langle\\mathbf 1,\\text{slice}\\rangle`,

which :func:`conserved_quantity` evaluates for every unit at once.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["SymmetryKind", "Member", "SymmetryGroup", "conserved_quantity"]

SymmetryKind = Literal["translation", "scale", "rescale"]


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

    def generator(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generator :math:`\\partial_sQ|_{s=0}` of all units at once, as one tensor per member parameter."""
        out: dict[str, torch.Tensor] = {}
        for m in self.members:
            p = params[m.parameter]
            g = m.sign * (torch.ones_like(p) if self.kind == "translation" else p)
            out[m.parameter] = out.get(m.parameter, 0) + g
        return out


def conserved_quantity(group: SymmetryGroup, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-unit quantity that gradient flow conserves for ``group`` (a vector of length ``num_units``)."""
    total = None
    for m, s in zip(group.members, group.slices(params)):
        term = s.sum(dim=1) if group.kind == "translation" else s.pow(2).sum(dim=1)
        total = m.sign * term if total is None else total + m.sign * term
    return total
