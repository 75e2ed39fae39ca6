"""Actions :math:`Q(q,s)` and generators on plain vectors (NumPy, torch, sympy), and acting on networks.

The action classes :class:`Translation`, :class:`Scale`, :class:`Rescale` and :class:`Rotation` act on plain
vectors for toy models and for the kinetic-energy tests of :mod:`noether_lib.kinetic`. The paper writes the scale
symmetry as :math:`Q=(1+s)q`; it has the same generator, and the exponential form composes exactly
(:math:`Q(Q(q,s),t)=Q(q,s+t)`), so a factor ``c`` is the group parameter :math:`s=\\ln c`.
:func:`apply_symmetry` acts with a :class:`~noether_lib.symmetry.SymmetryGroup` on a model or a parameter dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
import torch

from noether_lib.symmetry.groups import SymmetryGroup

__all__ = [
    "Translation",
    "Scale",
    "Rescale",
    "Rotation",
    "VERIFICATION_PARAMETERS",
    "VERIFICATION_SPREAD",
    "apply_symmetry",
    "scale_filter_norms",
]


def _exp(s: Any) -> Any:
    if isinstance(s, sp.Basic):
        return sp.exp(s)
    if isinstance(s, torch.Tensor):
        return torch.exp(s)
    return math.exp(s)


def _cos_sin(s: Any) -> tuple[Any, Any]:
    if isinstance(s, sp.Basic):
        return sp.cos(s), sp.sin(s)
    if isinstance(s, torch.Tensor):
        return torch.cos(s), torch.sin(s)
    return math.cos(s), math.sin(s)


def _copy(q: Any) -> Any:
    return q.clone() if isinstance(q, torch.Tensor) else q.copy()


@dataclass(frozen=True)
class Translation:
    """Translation along a fixed direction ``n``: :math:`Q(q,s)=q+s\\,n`, generator :math:`n` (softmax logits)."""

    direction: Any

    def __call__(self, q: Any, s: Any) -> Any:
        return q + s * self.direction

    def generator(self, q: Any) -> Any:
        return self.direction + 0 * q


@dataclass(frozen=True)
class Scale:
    """Scaling :math:`Q(q,s)=e^{ws}q`, generator :math:`wq` (``weight`` :math:`w=1`: normalization layers)."""

    weight: float = 1

    def __call__(self, q: Any, s: Any) -> Any:
        return _exp(self.weight * s) * q

    def generator(self, q: Any) -> Any:
        return self.weight * q


@dataclass(frozen=True)
class Rescale:
    """Opposite scalings :math:`Q_i(q,s)=e^{\\sigma_is}q_i` with signs :math:`\\sigma_i=\\pm1`, generator
    :math:`\\sigma\\odot q` (incoming :math:`+1` and outgoing :math:`-1` weights of a ReLU unit)."""

    signs: Sequence[int]

    def __call__(self, q: Any, s: Any) -> Any:
        out = _copy(q)
        for i, sign in enumerate(self.signs):
            out[i] = _exp(sign * s) * q[i]
        return out

    def generator(self, q: Any) -> Any:
        out = _copy(q)
        for i, sign in enumerate(self.signs):
            out[i] = sign * q[i]
        return out


@dataclass(frozen=True)
class Rotation:
    """Rotation by angle :math:`s` in the plane of coordinates ``(i, j)``: :math:`Q=R_{ij}(s)q`, generator
    :math:`Aq` with the skew matrix :math:`A=e_je_i^\\top-e_ie_j^\\top`."""

    i: int = 0
    j: int = 1

    def __post_init__(self) -> None:
        if self.i == self.j:
            raise ValueError(f"a rotation needs two different coordinates, got i = j = {self.i}")

    def __call__(self, q: Any, s: Any) -> Any:
        c, sn = _cos_sin(s)
        out = _copy(q)
        out[self.i] = c * q[self.i] - sn * q[self.j]
        out[self.j] = sn * q[self.i] + c * q[self.j]
        return out

    def generator(self, q: Any) -> Any:
        out = 0 * _copy(q)
        out[self.i] = -q[self.j]
        out[self.j] = q[self.i]
        return out


# --- acting on networks ------------------------------------------------------------------------------------------

#: The finite group parameter ``s`` used by :func:`check_symmetry` for each kind: scale by 1.5, rescale by 1.7,
#: translate by 0.3 (each unit gets a multiple of it between 0.5 and 1.5 so that units are tested independently).
VERIFICATION_PARAMETERS: dict[str, float] = {"scale": math.log(1.5), "rescale": math.log(1.7), "translation": 0.3}
#: Verification moves unit ``u`` by ``s * m_u``, the multipliers ``m_u`` spread evenly over this range (period 5).
VERIFICATION_SPREAD: tuple[float, float] = (0.5, 1.5)


def _unit_parameters(group: SymmetryGroup, s: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(s, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        s = s.expand(group.num_units)
    if s.shape != (group.num_units,):
        raise ValueError(f"s must be a number or have shape ({group.num_units},), got {tuple(s.shape)}")
    return s.reshape(-1, 1)


def _act(group: SymmetryGroup, params: Mapping[str, torch.Tensor], s: float | torch.Tensor) -> dict[str, torch.Tensor]:
    out = dict(params)
    for m in group.members:
        p = out[m.parameter]
        rows = p.movedim(m.dim, 0).reshape(group.num_units, -1)
        su = _unit_parameters(group, s, p)
        if group.kind == "translation":
            moved = Translation(m.sign * torch.ones_like(rows))(rows, su)
        else:
            moved = Scale(m.sign)(rows, su)
        out[m.parameter] = moved.reshape(p.movedim(m.dim, 0).shape).movedim(0, m.dim)
    return out


def apply_symmetry(
    target: torch.nn.Module | Mapping[str, torch.Tensor], group: SymmetryGroup, s: float | torch.Tensor
) -> torch.nn.Module | dict[str, torch.Tensor]:
    """Apply the group action :math:`Q(q,s)` to every unit of ``group``.

    Args:
        target: a model (its parameters are changed in place and the model is returned) or a mapping of
            parameter names to tensors (a new dict is returned; the tensors are not modified).
        group: the symmetry group.
        s: the group parameter, one number for all units or a tensor with one entry per unit.
    """
    if isinstance(target, torch.nn.Module):
        named = dict(target.named_parameters())
        missing = [m.parameter for m in group.members if m.parameter not in named]
        if missing:
            raise KeyError(f"group {group.name!r} names parameters the model does not have: {missing}")
        moved = _act(group, {m.parameter: named[m.parameter].detach() for m in group.members}, s)
        with torch.no_grad():
            for name, value in moved.items():
                named[name].copy_(value)
        return target
    return _act(group, target, s)


def scale_filter_norms(model: torch.nn.Module, groups: Sequence[SymmetryGroup], factor: float) -> torch.nn.Module:
    """Multiply the weights (and biases) of every scale-symmetric unit by ``factor`` in place.

    This is the scaled initialisation of the paper's motivating figure (conv filter norms times 10): the loss
    is unchanged (in train mode), the learning dynamics are not. Groups of other kinds are ignored.
    """
    if not factor > 0:
        raise ValueError(f"factor must be positive (a scale symmetry has positive factors), got {factor}")
    for group in groups:
        if group.kind == "scale":
            apply_symmetry(model, group, math.log(factor))
    return model
