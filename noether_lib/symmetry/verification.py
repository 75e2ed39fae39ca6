"""Numerical verification of symmetry groups on a model: :func:`verify_symmetries`, :func:`check_symmetry`, and
the loss along a whole orbit, :func:`orbit_loss_changes`.

A group is proven on one batch, on one float64 copy of the model, with the user's loss, by two tests that can
fail: the loss must not change under a finite group element (each unit moved by its own amount), and the
gradient must be orthogonal to every unit's generator (:prf:ref:`ch2-thm-orthogonal`, the theorem behind Eq. 13
of the paper). Normalization layers are scale-invariant only without their :math:`\\epsilon`, so the verdict is
taken with :math:`\\epsilon` set to ``VERIFICATION_EPSILON`` in the copy, which makes it independent of the
initialisation; the change that the model's own :math:`\\epsilon` adds is reported beside it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib.symmetry.actions import VERIFICATION_PARAMETERS, VERIFICATION_SPREAD, _act
from noether_lib.symmetry.graph import NORMS, unwrap
from noether_lib.symmetry.groups import SymmetryError, SymmetryGroup
from noether_lib.tolerances import SYMMETRY_GRADIENT_COSINES, SYMMETRY_LOSS_RTOLS

__all__ = [
    "VERIFICATION_EPSILON",
    "GENERIC_PERTURBATION",
    "SymmetryCheck",
    "check_symmetry",
    "verify_symmetries",
    "orbit_loss_changes",
]

#: The normalization :math:`\\epsilon` of the float64 copy that takes the verdict: far below any variance that
#: float64 resolves (relative 1e-16 of unit-order activations), so the scale symmetry holds to round-off.
VERIFICATION_EPSILON: float = 1e-20
#: ``generic`` verification first moves every parameter tensor in a random direction by this fraction of its root
#: mean square (of this number itself for a tensor near zero): a symmetry holds at every point, and at a generic one the loss
#: also depends on the directions an initialisation leaves flat (biases and β at 0, γ at 1).
GENERIC_PERTURBATION: float = 0.1
_SEED = 0  # every loss evaluation draws the same random numbers (dropout masks), so the loss is a function of q

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SymmetryCheck:
    """The numerical evidence for one group.

    Attributes:
        group: the group's name.
        kind: its kind.
        num_units: its number of units.
        s: the group parameter applied (units get multiples of it between 0.5 and 1.5).
        loss: the loss at the model's parameters.
        loss_change: :math:`|f(Q(q,s))-f(q)|/|f(q)|`, normalizations with ``VERIFICATION_EPSILON``.
        gradient_cosine: the largest, over units, :math:`|\\langle\\nabla f,\\partial_sQ\\rangle|/(\\lVert\\nabla
            f\\rVert\\lVert\\partial_sQ\\rVert)`, with the gradient of the **whole model** in the denominator (a unit
            whose own gradient vanishes analytically then passes instead of showing its rounding noise).
        holds: both are under their kind's tolerances.
        epsilon_loss_change: the loss change with the model's own normalization :math:`\\epsilon` (its share).
        control_change: the loss change when the same members are moved as far in a random direction (the
            loss test's power; NaN unless asked for).
    """

    group: str
    kind: str
    num_units: int
    s: float
    loss: float
    loss_change: float
    gradient_cosine: float
    holds: bool
    epsilon_loss_change: float
    control_change: float


class _Verifier:
    """A float64 twin of the model with its loss and gradient at the current parameters, computed once."""

    def __init__(
        self,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        loss_fn: Loss,
        mode: Literal["train", "eval"],
        generic: bool,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        model = unwrap(model)
        self.model_name, self.mode, self.loss_fn = type(model).__name__, mode, loss_fn
        self.twin = copy.deepcopy(model).double()
        self.twin.train(mode == "train")
        for module in self.twin.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.eval()  # the loss must be a deterministic function of the parameters
        self.norms = [m for m in self.twin.modules() if isinstance(m, NORMS) and getattr(m, "eps", 0) > 0]
        self.model_eps = [float(m.eps) for m in self.norms]
        self.inputs = inputs.double() if inputs.is_floating_point() else inputs
        self.targets = targets.double() if targets.is_floating_point() else targets
        self.buffers = {k: v.clone() for k, v in self.twin.named_buffers()}
        self.params = {k: v.detach() for k, v in self.twin.named_parameters()}
        if generic:
            noise = torch.Generator().manual_seed(_SEED)
            for k, v in self.params.items():
                size = GENERIC_PERTURBATION * max(float(v.pow(2).mean().sqrt()), GENERIC_PERTURBATION)
                self.params[k] = v + size * torch.randn(v.shape, generator=noise, dtype=v.dtype)
        self.loss, self.grads = self._gradient(exact=True)
        if self.norms:
            with torch.no_grad():
                self.eps_loss = self._evaluate(self.params, exact=False)
        else:
            self.eps_loss = self.loss
        self.grad_norm = math.sqrt(sum(float(g.pow(2).sum()) for g in self.grads.values()))

    def _evaluate(self, params: Mapping[str, torch.Tensor], exact: bool) -> torch.Tensor:
        for module, eps in zip(self.norms, self.model_eps):
            module.eps = VERIFICATION_EPSILON if exact else eps
        buffers = {k: v.clone() for k, v in self.buffers.items()}  # batch statistics must not leak between calls
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            out = torch.func.functional_call(self.twin, {**params, **buffers}, (self.inputs,))
        return self.loss_fn(out, self.targets)

    def _gradient(self, exact: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        leaves = {k: v.clone().requires_grad_(True) for k, v in self.params.items()}
        loss = self._evaluate(leaves, exact)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return loss.detach(), {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}

    def _change(self, params: Mapping[str, torch.Tensor], exact: bool) -> float:
        with torch.no_grad():
            moved = self._evaluate(params, exact)
        reference = self.loss if exact else self.eps_loss
        return float((moved - reference).abs() / reference.abs().clamp_min(torch.finfo(torch.float64).tiny))

    def _cosine(self, group: SymmetryGroup, grads: Mapping[str, torch.Tensor], norm: float) -> tuple[float, int]:
        dot = sum((g * x).sum(1) for g, x in zip(group.slices(grads), group.generator_slices(self.params)))
        size = sum(x.pow(2).sum(1) for x in group.generator_slices(self.params)).sqrt()  # type: ignore[union-attr]
        cosine = dot.abs() / (size * norm).clamp_min(1e-300) if norm > 0 else torch.zeros_like(size)  # type: ignore[union-attr]
        worst = int(cosine.argmax())
        return float(cosine[worst]), worst

    def _control(self, group: SymmetryGroup, moved: Mapping[str, torch.Tensor]) -> float:
        generator = torch.Generator().manual_seed(_SEED)
        control = dict(self.params)
        for name in dict.fromkeys(group.parameters):
            step = moved[name] - self.params[name]
            noise = torch.randn(step.shape, generator=generator, dtype=step.dtype)
            control[name] = self.params[name] + noise * step.norm() / noise.norm().clamp_min(1e-300)
        return self._change(control, exact=True)

    def element(self, group: SymmetryGroup, s: float | None) -> tuple[float, torch.Tensor]:
        """The group parameter and each unit's share of it, spread over ``VERIFICATION_SPREAD``."""
        s = VERIFICATION_PARAMETERS[group.kind] if s is None else s
        low, high = VERIFICATION_SPREAD
        return s, s * (low + (high - low) * (torch.arange(group.num_units, dtype=torch.float64) % 5) / 4)

    def changes(self, groups: Sequence[SymmetryGroup], s: float | None) -> tuple[float, float]:
        """Loss changes (vanishing ε, model's ε) under the product of the groups' elements, applied together."""
        moved = dict(self.params)
        for group in groups:
            moved = _act(group, moved, self.element(group, s)[1])
        return self._change(moved, True), self._change(moved, False) if self.norms else math.nan

    def joint_changes(self, groups: Sequence[SymmetryGroup], rtol: float | None) -> list[tuple[float, float]]:
        """Each group's loss changes, found by moving many groups at once: a product of symmetries is a symmetry,
        so if the product leaves the loss unchanged every factor gets that joint change; otherwise the groups
        are split in halves until the failing ones stand alone."""
        if not groups:
            return []
        tol = min(SYMMETRY_LOSS_RTOLS[g.kind] if rtol is None else rtol for g in groups)
        change, eps_change = self.changes(groups, None)
        if change <= tol or len(groups) == 1:
            return [(change, eps_change)] * len(groups)
        half = len(groups) // 2
        return self.joint_changes(groups[:half], rtol) + self.joint_changes(groups[half:], rtol)

    def check(
        self,
        group: SymmetryGroup,
        s: float | None,
        rtol: float | None,
        cosine_tol: float | None,
        control: bool,
        raise_on_failure: bool,
        changes: tuple[float, float] | None = None,
    ) -> SymmetryCheck:
        missing = [p for p in group.parameters if p not in self.params]
        if missing:
            raise SymmetryError(f"group {group.name!r} names parameters that {self.model_name} lacks: {missing}")
        s, spread = self.element(group, s)
        rtol = SYMMETRY_LOSS_RTOLS[group.kind] if rtol is None else rtol
        cosine_tol = SYMMETRY_GRADIENT_COSINES[group.kind] if cosine_tol is None else cosine_tol
        moved = _act(group, self.params, spread)
        change, eps_change = changes if changes is not None else self.changes([group], s)
        cosine, worst = self._cosine(group, self.grads, self.grad_norm)
        if not self.norms:
            eps_change = change
        result = SymmetryCheck(
            group.name,
            group.kind,
            group.num_units,
            float(s),
            float(self.loss),
            change,
            cosine,
            change <= rtol and cosine <= cosine_tol,
            eps_change,
            self._control(group, moved) if control else math.nan,
        )
        if raise_on_failure and not result.holds:
            raise SymmetryError(self.failure(group, result, rtol, cosine_tol, worst))
        return result

    def failure(self, group: SymmetryGroup, r: SymmetryCheck, rtol: float, cosine_tol: float, worst: int = 0) -> str:
        acting = ", ".join(f"{m.parameter} (dim {m.dim}, sign {m.sign:+d})" for m in group.members)
        return (
            f"{group.kind} symmetry {group.name!r} does not hold on {self.model_name} in {self.mode} mode: acting on "
            f"{acting} with s = {r.s:.3g} changed the loss by a relative {r.loss_change:.2e} (tolerance {rtol:.0e}); "
            f"the gradient of unit {worst} has cosine {r.gradient_cosine:.2e} with the generator (tolerance "
            f"{cosine_tol:.0e}), normalization ε set to {VERIFICATION_EPSILON:.0e}, so ε is not the cause"
        )


def check_symmetry(
    model: torch.nn.Module,
    group: SymmetryGroup,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_fn: Loss = F.cross_entropy,
    mode: Literal["train", "eval"] = "train",
    s: float | None = None,
    rtol: float | None = None,
    cosine_tol: float | None = None,
    control: bool = False,
    generic: bool = True,
    raise_on_failure: bool = True,
) -> SymmetryCheck:
    """Prove numerically that ``group`` is a symmetry of the loss of ``model`` on one batch.

    The check runs on a float64 copy of the model (the model is not changed) in ``mode``: ``"train"`` (the
    default) normalizes with batch statistics, under which BatchNorm is scale-invariant; in ``"eval"`` mode
    BatchNorm uses fixed running statistics, an affine map, and the scale symmetry does not hold. Dropout is
    switched off and every evaluation draws the same random numbers. Two conditions must hold:

    * invariance: :math:`|f(Q(q,s))-f(q)|\\le` ``rtol`` :math:`|f(q)|`, each unit moved by its own finite
      :math:`s_u\\in[s/2,3s/2]` (``s`` from ``VERIFICATION_PARAMETERS`` by default);
    * orthogonality: :math:`|\\langle\\nabla f,\\partial_sQ\\rangle|\\le` ``cosine_tol``
      :math:`\\lVert\\nabla f\\rVert\\lVert\\partial_sQ\\rVert` for every unit, :math:`\\nabla f` the whole model's.

    Args:
        loss_fn: the training loss ``loss_fn(output, targets)``.
        rtol, cosine_tol: one tolerance for every kind; by default the kind's
            (``noether_lib.tolerances.SYMMETRY_LOSS_RTOLS``, ``noether_lib.tolerances.SYMMETRY_GRADIENT_COSINES``).
        control: also move the members as far in a random direction and report that loss change (zero where
            every direction of the members is flat, as for a bias that batch norm subtracts).
        generic: verify at the model's parameters moved by ``GENERIC_PERTURBATION`` in a fixed random
            direction (a symmetry holds everywhere; there the loss test has power); ``False``: at the parameters.

    Raises:
        SymmetryError: a condition fails (with ``raise_on_failure``): the message names the group, its
            parameters and the size of the violation.
    """
    verifier = _Verifier(model, inputs, targets, loss_fn, mode, generic)
    return verifier.check(group, s, rtol, cosine_tol, control, raise_on_failure)


def verify_symmetries(
    model: torch.nn.Module,
    groups: Sequence[SymmetryGroup],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_fn: Loss = F.cross_entropy,
    mode: Literal["train", "eval"] = "train",
    rtol: float | None = None,
    cosine_tol: float | None = None,
    control: bool = False,
    generic: bool = True,
    joint: bool = True,
    raise_on_failure: bool = True,
) -> pd.DataFrame:
    """Run :func:`check_symmetry` on every group with one float64 copy; one row per group (the fields of
    :class:`SymmetryCheck`).

    With ``joint`` (the default) the loss test moves all groups at once (a product of symmetries is a symmetry),
    and only if the loss changes are the groups split in halves until each failing one stands alone; a group
    that holds then reports the change of the largest set it was moved with. The gradient test is per unit
    always. ``joint=False`` moves every group alone (one forward pass each).

    Raises:
        SymmetryError: with ``raise_on_failure``, if any group fails; the message lists every failure.
    """
    verifier = _Verifier(model, inputs, targets, loss_fn, mode, generic)
    for g in groups:
        missing = [p for p in g.parameters if p not in verifier.params]
        if missing:
            raise SymmetryError(f"group {g.name!r} names parameters that {verifier.model_name} lacks: {missing}")
    changes = verifier.joint_changes(list(groups), rtol) if joint else [None] * len(groups)
    rows = [verifier.check(g, None, rtol, cosine_tol, control, False, c) for g, c in zip(groups, changes)]
    table = pd.DataFrame([r.__dict__ for r in rows], columns=list(SymmetryCheck.__dataclass_fields__))
    failed = table[~table["holds"]]
    if raise_on_failure and len(failed):
        by_name = {g.name: g for g in groups}
        lines = "; ".join(
            f"{r.kind} {r.group!r} on {', '.join(by_name[r.group].parameters)}: loss change {r.loss_change:.2e}, "
            f"gradient cosine {r.gradient_cosine:.2e}"
            for r in failed.itertuples()
        )
        tolerances = ", ".join(
            f"{k}: loss {SYMMETRY_LOSS_RTOLS[k] if rtol is None else rtol:.0e}, cosine "
            f"{SYMMETRY_GRADIENT_COSINES[k] if cosine_tol is None else cosine_tol:.0e}"
            for k in dict.fromkeys(failed["kind"])
        )
        raise SymmetryError(
            f"{len(failed)} of {len(table)} symmetries do not hold in {mode} mode (tolerances {tolerances}; "
            f"normalization ε set to {VERIFICATION_EPSILON:.0e}, so ε is not the cause): {lines}"
        )
    return table


def orbit_loss_changes(
    model: torch.nn.Module,
    group: SymmetryGroup | None,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    s: Sequence[float] | np.ndarray,
    *,
    loss_fn: Loss = F.cross_entropy,
    mode: Literal["train", "eval"] = "train",
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """The relative loss change :math:`|f(Q(q,s))/f(q)-1|` along the orbit :math:`s\\mapsto Q(q,s)` of ``group``
    (Eq. ``eq-ch2-symmetry`` says it vanishes), every unit moved by the same ``s``, one value per entry of ``s``.

    It is taken at the model's own parameters on the float64 copy of :func:`check_symmetry` (normalization
    :math:`\\epsilon` set to ``VERIFICATION_EPSILON``, dropout off). ``group=None`` is the control: the straight
    line :math:`q+s\\,d` with :math:`d` random (drawn from ``generator``; seed 0 by default) in every parameter
    tensor, each tensor's part scaled to its mean absolute entry.
    """
    verifier = _Verifier(model, inputs, targets, loss_fn, mode, generic=False)
    params = verifier.params
    if group is None:
        generator = torch.Generator().manual_seed(_SEED) if generator is None else generator
        direction = {
            k: torch.randn(v.shape, generator=generator, dtype=v.dtype) * v.abs().mean() for k, v in params.items()
        }
        moved = [{k: v + float(t) * direction[k] for k, v in params.items()} for t in s]
    else:
        missing = [p for p in group.parameters if p not in params]
        if missing:
            raise SymmetryError(f"group {group.name!r} names parameters that {verifier.model_name} lacks: {missing}")
        moved = [_act(group, params, float(t)) for t in s]
    return np.array([verifier._change(p, exact=True) for p in moved])
