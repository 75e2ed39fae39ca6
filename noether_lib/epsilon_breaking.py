"""Explicit breaking of scale symmetry by a normalization layer's :math:`\\epsilon`.

Batch norm divides by :math:`\\sqrt{\\sigma^2+\\epsilon}`, so a filter feeding it is scale-invariant only at
:math:`\\epsilon=0`. Scaling the filter by :math:`1+s` scales the centred pre-activation and :math:`\\sigma` by
:math:`1+s`; the normalized output :math:`z=(x-\\bar x)/\\sqrt{\\sigma^2+\\epsilon}` moves by
:math:`\\partial_sz=z\\,\\epsilon/(\\sigma^2+\\epsilon)`. With the layer's affine output :math:`y=\\gamma z+b`,
:math:`\\langle\\partial_zf,z\\rangle=\\gamma\\,\\partial f/\\partial\\gamma`, so the breaking term of NLD is exactly

.. math:: \\partial_sf=\\langle\\xi,\\nabla f\\rangle=\\frac{\\epsilon}{\\sigma^2+\\epsilon}\\,\\gamma\\,\\frac{\\partial f}{\\partial\\gamma}

per channel (derived here), with :math:`\\sigma^2` the *biased* batch variance batch norm uses in training. Since
:math:`\\sigma^2\\propto r^2`, the breaking falls as :math:`\\epsilon/r^2` with the filter norm: it matters for small
norms, e.g. under heavy weight decay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from noether_lib.symmetry import SymmetryGroup

__all__ = [
    "ROUND_OFF_EPSILON",
    "set_normalization_epsilon",
    "batch_variances",
    "scale_derivative",
    "predicted_breaking",
    "breaking_terms",
]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

#: An :math:`\epsilon` below float64 round-off: PyTorch refuses :math:`\epsilon=0` in training, and
#: :math:`\sigma^2+10^{-300}` rounds to :math:`\sigma^2` for every variance above :math:`10^{-284}`, so a layer with
#: it is exactly scale-invariant in float64.
ROUND_OFF_EPSILON: float = 1e-300


def set_normalization_epsilon(model: nn.Module, eps: float) -> nn.Module:
    """Set :math:`\\epsilon` of every batch-norm layer of ``model`` (in place); returns the model. PyTorch needs
    :math:`\\epsilon>0`: use :data:`ROUND_OFF_EPSILON` for an exactly scale-invariant float64 layer."""
    if not eps > 0:
        raise ValueError(f"eps must be positive (PyTorch refuses 0 in training; use ROUND_OFF_EPSILON), got {eps}")
    for module in model.modules():
        if isinstance(module, _NORMS):
            module.eps = eps
    return model


def batch_variances(
    model: nn.Module, inputs: torch.Tensor, norms: Sequence[nn.Module], *, unbiased: bool = False
) -> list[torch.Tensor]:
    """The per-channel batch variances of the inputs of ``norms`` on ``inputs`` (biased, as batch norm uses in
    training; ``unbiased=True`` gives the :math:`N/(N-1)` version that only the running statistics use)."""
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for i, norm in enumerate(norms):
        if not isinstance(norm, _NORMS):
            raise ValueError(f"norms[{i}] is a {type(norm).__name__}, not a batch-norm layer")

        def hook(_: nn.Module, args: tuple[torch.Tensor, ...], i: int = i) -> None:
            x = args[0].detach()
            dims = [d for d in range(x.ndim) if d != 1]
            seen[i] = x.var(dim=dims, unbiased=unbiased)

        handles.append(norm.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[i] for i in range(len(norms))]


def scale_derivative(group: SymmetryGroup, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The measured breaking term :math:`\\partial_sf=\\langle\\xi,\\nabla f\\rangle` per unit of a scale group, from
    the parameters' ``.grad`` (call after ``backward``)."""
    if group.kind != "scale":
        raise ValueError(f"the epsilon breaking concerns scale groups, got a {group.kind} group")
    grads = {n: p.grad for n, p in params.items()}
    if any(grads[m.parameter] is None for m in group.members):
        raise ValueError("run backward first: a member parameter has no gradient")
    q = torch.cat(group.slices(params), dim=1)
    g = torch.cat(group.slices(grads), dim=1)  # type: ignore[arg-type]
    return (q * g).sum(dim=1).detach()


def predicted_breaking(norm: nn.Module, variance: torch.Tensor) -> torch.Tensor:
    """The breaking term per channel, :math:`\\epsilon/(\\sigma^2+\\epsilon)\\,\\gamma\\,\\partial f/\\partial\\gamma`,
    from the layer's :math:`\\gamma` and its ``.grad`` and the batch variance of its input."""
    if not isinstance(norm, _NORMS) or norm.weight is None or norm.weight.grad is None:
        raise ValueError("need an affine batch-norm layer after backward (its weight.grad)")
    eps = float(norm.eps)
    return (eps / (variance + eps) * norm.weight * norm.weight.grad).detach()


def breaking_terms(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    groups: Sequence[SymmetryGroup],
    norms: Sequence[nn.Module],
    *,
    unbiased: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On one batch (cross-entropy): the measured :math:`\\partial_sf` per filter (:func:`scale_derivative`), the
    predicted one (:func:`predicted_breaking`, with the unbiased variance if asked) and the share
    :math:`\\epsilon/(\\sigma^2+\\epsilon)`, concatenated over ``groups``, each fed into the matching entry of ``norms``."""
    if len(groups) != len(norms):
        raise ValueError(f"one batch-norm layer per group: {len(groups)} groups, {len(norms)} layers")
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(inputs), targets).backward()
    variances = batch_variances(model, inputs, norms, unbiased=unbiased)
    params = dict(model.named_parameters())
    measured = torch.cat([scale_derivative(g, params) for g in groups])
    predicted = torch.cat([predicted_breaking(n, v) for n, v in zip(norms, variances)])
    share = torch.cat([float(n.eps) / (v + float(n.eps)) for n, v in zip(norms, variances)])  # type: ignore[arg-type]
    return measured.double().numpy(), predicted.double().numpy(), share.double().numpy()
