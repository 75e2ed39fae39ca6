"""Toys and networks for the normalization chapter: 2-D filters on a scale-invariant angle loss, a batch-normalised
MLP with its scale groups, and mini-batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import Module

from noether_lib.models import MLP
from noether_lib.normalization.optimizers import UnitFilterSGD
from noether_lib.normalization.recording import NormRecord, train_and_record
from noether_lib.reproducibility import seed_everything
from noether_lib.symmetry import Member, SymmetryGroup, find_symmetries

__all__ = ["angle_toy", "angle_loss", "train_angle_toy", "normalized_mlp", "minibatch_loss", "train_minibatches"]


def angle_toy(units: int, *, radius: float = 1.0, seed: int = 0) -> tuple[Module, SymmetryGroup]:
    """``units`` 2-D filters (parameter ``q`` of shape ``(units, 2)``, float64) at random angles and norm ``radius``,
    with their scale group; train them on :func:`angle_loss`."""
    if units < 1 or not radius > 0:
        raise ValueError(f"need units >= 1 and radius > 0, got {units}, {radius}")
    angle = 2 * np.pi * torch.rand(units, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    module = Module()
    module.q = nn.Parameter(radius * torch.stack([angle.cos(), angle.sin()], 1))
    return module, SymmetryGroup("scale", "toy filters", (Member("q", 0),), units)


def angle_loss(q: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Toy scale-invariant loss :math:`\\sum_u\\xi_u\\,\\theta_u` of 2-D filters ``q[u]`` at angle :math:`\\theta_u`.

    Its gradient is tangential with :math:`|\\hat g_u|=|\\xi_u|`: a constant ``strength`` gives persistent
    (correlated) gradients, a fresh random one each step gives uncorrelated ones.
    """
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"q must have shape (units, 2), got {tuple(q.shape)}")
    return (strength * torch.atan2(q[:, 1], q[:, 0])).sum()


def train_angle_toy(
    *,
    units: int,
    steps: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    mean: float,
    noise: float,
    radius: float = 1.0,
    seed: int = 0,
) -> NormRecord:
    """PyTorch's SGD on :func:`angle_loss` with strength :math:`\\xi\\sim` ``mean + noise`` :math:`\\cdot\\mathcal N(0,1)`,
    fresh each step (``noise = 0``: persistent gradients; ``mean = 0``: white noise), recorded every step."""
    toy, group = angle_toy(units, radius=radius, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    xi = mean + noise * torch.randn(steps, units, generator=generator, dtype=torch.float64)
    return train_and_record(
        toy,
        [group],
        lambda n: angle_loss(toy.get_parameter("q"), xi[n]),
        steps=steps,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )


def minibatch_loss(
    model: Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int
) -> Callable[[int], torch.Tensor]:
    """Cross-entropy on a fresh mini-batch per step; the data order is fixed by ``seed`` (reshuffled each epoch)."""
    if not 0 < batch_size <= len(inputs):
        raise ValueError(f"batch_size must lie in [1, {len(inputs)}], got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    per_epoch = len(inputs) // batch_size
    order: list[torch.Tensor] = []

    def loss_at(step: int) -> torch.Tensor:
        while len(order) <= step // per_epoch:
            order.append(torch.randperm(len(inputs), generator=generator))
        idx = order[step // per_epoch][(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
        return nn.functional.cross_entropy(model(inputs[idx]), targets[idx])

    return loss_at


def normalized_mlp(
    inputs: torch.Tensor,
    classes: int,
    *,
    hidden: tuple[int, ...] = (32, 32),
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    eps: float | None = None,
) -> tuple[Module, list[SymmetryGroup]]:
    """An MLP with batch norm after each hidden layer, seeded (``seed_everything(seed, threads=1)``), and its scale
    groups found by :func:`~noether_lib.symmetry.find_symmetries` on ``inputs[:4]``. ``eps`` replaces batch norm's
    :math:`\\epsilon` (PyTorch's 1e-5), which breaks the scale symmetry explicitly."""
    seed_everything(seed, threads=1)
    model = MLP(inputs.shape[1], list(hidden), classes, batch_norm=True).to(dtype)
    if eps is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eps = eps
    groups = [g for g in find_symmetries(model, inputs[:4].to(dtype)) if g.kind == "scale"]
    return model, groups


def train_minibatches(
    model: Module,
    groups: list[SymmetryGroup],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    seed: int,
    steps: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    filters: UnitFilterSGD | None = None,
    norm_squared: np.ndarray | float | None = None,
    keep_gradients: bool = False,
    keep_updates: bool = False,
) -> NormRecord:
    """:func:`train_and_record` on the mini-batches of :func:`minibatch_loss` (data order fixed by ``seed``): runs
    given the same ``seed`` see the same batches, whatever rule trains their filters."""
    loss_at = minibatch_loss(model, inputs, targets, batch_size=batch_size, seed=seed)
    return train_and_record(
        model,
        groups,
        loss_at,
        steps=steps,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        filters=filters,
        norm_squared=norm_squared,
        keep_gradients=keep_gradients,
        keep_updates=keep_updates,
    )
