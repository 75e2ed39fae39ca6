"""The two-parameter toys of chapter 2: one loss per kind of symmetry, its gradient, its gradient flow, and the
conserved quantity (Eq. 13 of the paper, Euclidean case; the book's ``eq-ch2-conserved``) at points of the plane.

* translation: two logits and the cross-entropy of class 1 plus a penalty on their difference,
  :math:`f=\\log(1+e^{q_2-q_1})+\\tfrac1{10}(q_1-q_2-2)^2`, conserved :math:`q_1+q_2`;
* scale: a loss of the direction only, :math:`f=1-\\cos(\\theta-\\theta_\\star)`, conserved :math:`q_1^2+q_2^2`;
* rescale: a one-unit ReLU network fitting :math:`y=1` at :math:`x=1`, :math:`f=\\tfrac12(q_2\\,\\mathrm{ReLU}(q_1)-1)^2`,
  conserved :math:`q_1^2-q_2^2`.

A point :math:`(q_1,q_2)` is one unit of the toy's :class:`~noether_lib.symmetry.SymmetryGroup`, so the quantities
are those of :func:`~noether_lib.symmetry.conserved_quantity`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from noether_lib.modified_equation import gradient_flow
from noether_lib.symmetry.groups import Member, SymmetryGroup, SymmetryKind, conserved_quantity

__all__ = ["CONTROL_KINDS", "PlaneToy", "translation_toy_loss", "scale_toy_loss", "rescale_toy_loss", "plane_toys"]

#: For each toy's kind, another kind whose quantity its gradient flow does not conserve (the control of a drift).
CONTROL_KINDS: dict[SymmetryKind, SymmetryKind] = {
    "translation": "scale",
    "scale": "translation",
    "rescale": "translation",
}


def translation_toy_loss(q: torch.Tensor) -> torch.Tensor:
    """:math:`\\log(1+e^{q_2-q_1})+\\tfrac1{10}(q_1-q_2-2)^2`, invariant under :math:`q\\mapsto q+s\\mathbf 1`."""
    return F.softplus(q[1] - q[0]) + 0.1 * (q[0] - q[1] - 2) ** 2


def scale_toy_loss(q: torch.Tensor, theta_star: float = 0.6) -> torch.Tensor:
    """:math:`1-\\cos(\\theta-\\theta_\\star)` with :math:`\\theta` the angle of :math:`q`, invariant under
    :math:`q\\mapsto e^sq` (a one-filter batch norm)."""
    return 1 - torch.cos(torch.atan2(q[1], q[0]) - theta_star)


def rescale_toy_loss(q: torch.Tensor) -> torch.Tensor:
    """:math:`\\tfrac12(q_2\\,\\mathrm{ReLU}(q_1)-1)^2`, invariant under :math:`(q_1,q_2)\\mapsto(e^sq_1,e^{-s}q_2)`."""
    return 0.5 * (q[1] * torch.relu(q[0]) - 1) ** 2


@dataclass(frozen=True)
class PlaneToy:
    """A loss of two parameters with one symmetry.

    Attributes:
        loss: the loss of ``q``, its two coordinates ``q[0]`` and ``q[1]`` (any trailing shape).
        group: the symmetry, one unit; one member acts on both coordinates, two members on one coordinate each.
    """

    loss: Callable[[torch.Tensor], torch.Tensor]
    group: SymmetryGroup

    def __post_init__(self) -> None:
        if len(self.group.members) not in (1, 2):
            raise ValueError(f"a plane toy's group has one or two members, got {len(self.group.members)}")

    @property
    def kind(self) -> SymmetryKind:
        """The kind of the toy's symmetry."""
        return self.group.kind

    def losses(self, points: ArrayLike) -> np.ndarray:
        """The loss at points of shape ``(..., 2)``, shape ``(...)``."""
        q = torch.as_tensor(np.asarray(points, dtype=np.float64))
        return self.loss(q.movedim(-1, 0)).numpy()

    def gradient(self, points: ArrayLike) -> np.ndarray:
        """The gradient :math:`\\nabla f` at points of shape ``(..., 2)`` (a :data:`~noether_lib.rules.Gradient`)."""
        q = torch.as_tensor(np.asarray(points, dtype=np.float64))
        return torch.func.vmap(torch.func.grad(self.loss))(q.reshape(-1, 2)).reshape(q.shape).numpy()

    def flow(self, q0: ArrayLike, times: np.ndarray) -> np.ndarray:
        """Gradient flow :math:`\\dot q=-\\nabla f(q)` from ``q0`` at ``times``, shape ``(len(times), 2)``."""
        return gradient_flow(self.gradient, np.asarray(q0, dtype=np.float64), times)

    def charges(self, points: ArrayLike, kind: SymmetryKind | None = None) -> np.ndarray:
        """The conserved quantity (``eq-ch2-conserved``) of the toy's kind, or of ``kind`` acting on the same members
        (a control), at points of shape ``(..., 2)``; shape ``(...)``."""
        points = np.asarray(points, dtype=np.float64)
        q = torch.as_tensor(points).reshape(-1, 2)
        group = SymmetryGroup(self.kind if kind is None else kind, self.group.name, self.group.members, len(q))
        if len(group.members) == 1:
            params = {group.members[0].parameter: q}
        else:
            params = {m.parameter: q[:, i : i + 1] for i, m in enumerate(group.members)}
        return conserved_quantity(group, params).numpy().reshape(points.shape[:-1])

    def drift(self, trajectory: ArrayLike, kind: SymmetryKind | None = None) -> float:
        """The largest relative change :math:`\\max_t|\\phi(q_t)-\\phi(q_0)|/|\\phi(q_0)|` of :meth:`charges` along
        ``trajectory`` (shape ``(steps, 2)``)."""
        values = self.charges(trajectory, kind)
        return float(np.abs(values - values[0]).max() / abs(values[0]))


def plane_toys(theta_star: float = 0.6) -> dict[SymmetryKind, PlaneToy]:
    """The three toys of chapter 2, by kind (the scale toy's minimum at angle ``theta_star``)."""
    return {
        "translation": PlaneToy(translation_toy_loss, SymmetryGroup("translation", "logits", (Member("q", 0),), 1)),
        "scale": PlaneToy(
            lambda q: scale_toy_loss(q, theta_star), SymmetryGroup("scale", "filter", (Member("q", 0),), 1)
        ),
        "rescale": PlaneToy(
            rescale_toy_loss, SymmetryGroup("rescale", "unit", (Member("q", 0, 1), Member("r", 0, -1)), 1)
        ),
    }
