"""The equivalent run of a scaled network: a dilation of scale-invariant weights is a change of learning rate.

For weights :math:`w` on which the loss is scale-invariant, :math:`f(\\lambda w)=f(w)`, the gradient scales
inversely, :math:`\\nabla f(\\lambda w)=\\nabla f(w)/\\lambda` (the scale symmetry of Sec. 2 of the paper). PyTorch's
SGD with learning rate :math:`\\eta`, momentum :math:`\\beta`, dampening :math:`\\delta` and weight decay :math:`k` on
:math:`p=\\lambda w` is then *exactly* SGD on :math:`w` with learning rate :math:`\\eta/\\lambda^2` and weight decay
:math:`k\\lambda^2` on those weights (same :math:`\\beta`, :math:`\\delta`; every other parameter unchanged), with the
momentum buffer multiplied by :math:`\\lambda`: the update direction :math:`d=\\nabla f(p)+kp` is :math:`d_w/\\lambda`.
This is the effective-learning-rate view of normalised networks (van Laarhoven 2017; Hoffer et al. 2018; Li and
Arora 2020). :func:`equivalent_sgd` builds that optimizer from the groups that
:func:`noether_lib.symmetry.find_symmetries` returns; :func:`train_sgd` trains a network with mini-batch SGD and
records its loss and mean squared filter norm :math:`r^2` at every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib.data import Split
from noether_lib.learning_rule import check_hyperparameters
from noether_lib.reproducibility import make_generator
from noether_lib.symmetry import SymmetryGroup, conserved_quantity

__all__ = ["scale_invariant_parameters", "equivalent_sgd", "set_norm_epsilon", "SGDRun", "train_sgd"]


def scale_invariant_parameters(groups: Sequence[SymmetryGroup]) -> set[str]:
    """Names of the parameters in the scale groups of ``groups`` (the weights a dilation acts on)."""
    return {name for group in groups if group.kind == "scale" for name in group.parameters}


def equivalent_sgd(
    model: nn.Module,
    groups: Sequence[SymmetryGroup],
    factor: float,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    scaled_optimizer: torch.optim.SGD | None = None,
    scaled_model: nn.Module | None = None,
) -> torch.optim.SGD:
    """SGD on ``model`` (the weights :math:`w`) that reproduces SGD(``lr``, ``momentum``, ``dampening``,
    ``weight_decay``) on the network whose scale-invariant weights are :math:`\\lambda w`, :math:`\\lambda=` ``factor``.

    The scale groups' parameters get learning rate :math:`\\eta/\\lambda^2` and weight decay :math:`k\\lambda^2`;
    the others keep :math:`\\eta` and :math:`k`. To continue a scaled run mid-way, pass its ``scaled_optimizer``
    and ``scaled_model``: their momentum buffers are copied, multiplied by :math:`\\lambda` on the scale groups
    (``model`` must then hold the scaled model's weights divided by :math:`\\lambda` on those groups).
    """
    check_hyperparameters(lr, momentum, dampening, weight_decay)
    if not factor > 0:
        raise ValueError(f"factor must be positive (a dilation), got {factor}")
    scaled_names = scale_invariant_parameters(groups)
    named = dict(model.named_parameters())
    missing = scaled_names - set(named)
    if missing:
        raise ValueError(f"the groups name parameters the model does not have: {sorted(missing)}")
    if not scaled_names:
        raise ValueError("the groups hold no scale symmetry, so a dilation is not a symmetry of this loss")
    inside = [p for n, p in named.items() if n in scaled_names]
    outside = [p for n, p in named.items() if n not in scaled_names]
    param_groups = [{"params": inside, "lr": lr / factor**2, "weight_decay": weight_decay * factor**2}]
    if outside:
        param_groups.append({"params": outside})
    optimizer = torch.optim.SGD(param_groups, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    if scaled_optimizer is not None:
        if scaled_model is None:
            raise ValueError("scaled_optimizer needs scaled_model, to match the momentum buffers by name")
        source = dict(scaled_model.named_parameters())
        for name, parameter in named.items():
            buffer = scaled_optimizer.state.get(source[name], {}).get("momentum_buffer")
            if buffer is not None:
                optimizer.state[parameter]["momentum_buffer"] = buffer.clone() * (factor if name in scaled_names else 1)
    return optimizer


def set_norm_epsilon(model: nn.Module, eps: float) -> nn.Module:
    """Set the :math:`\\epsilon` of every batch-norm layer (in place): :math:`\\epsilon=0` makes the scale
    symmetry exact, since :math:`\\epsilon` alone breaks it."""
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eps = eps
    return model


@dataclass(frozen=True)
class SGDRun:
    """One training run: the mini-batch loss before every update, the mean squared norm :math:`r^2` of the scale
    groups' filters before every update, the test accuracy at the end, and the number of updates per epoch."""

    losses: np.ndarray
    norm_sq: np.ndarray
    accuracy: float
    steps_per_epoch: int

    @property
    def last_epoch_loss(self) -> float:
        """The mean mini-batch loss over the last epoch."""
        return float(self.losses[-self.steps_per_epoch :].mean())

    @property
    def norm_sq_change(self) -> float:
        """The relative change of the mean squared filter norm over the run, :math:`r^2_{\\rm last}/r^2_0-1`."""
        return float(self.norm_sq[-1] / self.norm_sq[0] - 1)


def _mean_norm_sq(groups: Sequence[SymmetryGroup], params: dict[str, torch.Tensor]) -> float:
    return float(torch.cat([conserved_quantity(g, params) for g in groups if g.kind == "scale"]).mean())


def train_sgd(
    model: nn.Module,
    data: Split,
    groups: Sequence[SymmetryGroup],
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    seed: int = 1,
) -> SGDRun:
    """Train ``model`` in place with mini-batch ``torch.optim.SGD`` on the cross-entropy of ``data``'s training set.

    The model is in train mode (batch norm uses the batch's statistics). The mini-batches are a seeded permutation
    per epoch, the same for every run with the same ``seed``; the last incomplete batch is kept. ``optimizer``
    replaces SGD(``lr``, ``momentum``, ``dampening``, ``weight_decay``), e.g. the one of :func:`equivalent_sgd`.
    Returns the :class:`SGDRun` (the test accuracy in eval mode).
    """
    check_hyperparameters(lr, momentum, dampening, weight_decay)
    if not 1 <= batch_size <= len(data.y_train):
        raise ValueError(f"batch_size must lie in [1, {len(data.y_train)}], got {batch_size}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if optimizer is None:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
        )
    order = make_generator(seed)
    losses, norms = [], []
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(data.y_train), generator=order).split(batch_size):
            with torch.no_grad():
                norms.append(_mean_norm_sq(groups, dict(model.named_parameters())))
            loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    return SGDRun(np.array(losses), np.array(norms), accuracy, len(losses) // epochs)
