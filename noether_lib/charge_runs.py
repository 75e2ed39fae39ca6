"""Training runs that record Noether charges for chapter 3.

Both runs train a float64 network with ``torch.optim.SGD`` (PyTorch's heavy ball with learning rate :math:`\\eta`,
momentum :math:`\\beta`, dampening :math:`\\delta`, weight decay :math:`k`) under a
:class:`~noether_lib.tracking.NoetherTracker` and return its charges table
(:data:`noether_lib.schema.CHARGES_COLUMNS`): :func:`kicked_translation_run` gives a softmax classifier's bias one
kick along the logits' translation, so that the discrete kinetic part :math:`P_n` decays as :math:`\\beta^n` and the
bias sum :math:`C` obeys Eq. 12 of the paper with a spring :math:`k`; :func:`tracked_sgd_run` trains any model on
mini-batches for the predictions of NLD (Eqs. 12-13). The model's initial weights come from ``seed`` and the data
order from ``data_seed``, so runs with the same seeds differ only in the learning rule; the global random state is
left as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib.data import Split
from noether_lib.learning_rule import check_hyperparameters
from noether_lib.reproducibility import make_generator
from noether_lib.scale_equivalence import set_norm_epsilon
from noether_lib.symmetry import find_symmetries
from noether_lib.tracking import NoetherTracker

__all__ = ["kicked_translation_run", "tracked_sgd_run"]


def _check_batch_size(batch_size: int, data: Split) -> None:
    if not (isinstance(batch_size, int) and 1 <= batch_size <= len(data.y_train)):
        raise ValueError(f"batch_size must be an integer in [1, {len(data.y_train)}], got {batch_size!r}")


def kicked_translation_run(
    data: Split,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    steps: int,
    kick: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    data_seed: int = 0,
) -> pd.DataFrame:
    """Train the softmax classifier ``Linear(inputs, classes)`` on ``data`` with one kick along the logits' translation;
    return the tracker's table of its bias group (one unit, :math:`C=\\sum_cb_c`).

    The first step minimises the cross-entropy plus ``kick`` :math:`\\cdot\\sum_cb_c`, whose gradient is the generator
    :math:`\\xi=(1,\\dots,1)` of the translation; every later step is plain mini-batch SGD (``batch_size`` indices
    drawn with replacement, ``steps`` rows of them from ``data_seed``). The loss gradient stays orthogonal to
    :math:`\\xi`, so without weight decay :math:`P_n=\\beta^nP_0` exactly, the discrete form of the damped kinetic part
    of Eq. 12; with :math:`k>0`, :math:`C` is a damped oscillator (Eq. 12 with :math:`\\partial_sV=kC`).
    """
    check_hyperparameters(lr, momentum, 0.0, weight_decay, steps)
    _check_batch_size(batch_size, data)
    order = torch.randint(0, len(data.y_train), (steps, batch_size), generator=make_generator(data_seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = nn.Linear(data.x_train.shape[1], data.num_classes)
        model = nn.Sequential(layer).double()  # in place: ``layer`` is the model's float64 layer
    bias = [g for g in find_symmetries(model, data.x_train[:8]) if g.parameters == ("0.bias",)]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    tracker = NoetherTracker(model, optimizer, bias)
    for n in range(steps):
        x, y = data.x_train[order[n]], data.y_train[order[n]]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if n == 0:
            loss = loss + kick * layer.bias.sum()
        loss.backward()
        optimizer.step()
        tracker.step()
    return tracker.table()


def tracked_sgd_run(
    make_model: Callable[[], nn.Module],
    data: Split,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    steps: int,
    batch_size: int = 64,
    full_batch: bool = False,
    norm_eps: float = 1e-12,
    lr_drop_at: int | None = None,
    lr_drop_factor: float = 0.2,
    seed: int = 0,
    data_seed: int = 1,
    probe_examples: int = 16,
    verify_examples: int = 256,
) -> pd.DataFrame:
    """Train a float64 copy of ``make_model()`` with SGD on the cross-entropy of ``data`` and track every symmetry
    that :func:`~noether_lib.symmetry.find_symmetries` finds; return the tracker's charges table.

    Batch norm's :math:`\\varepsilon` is set to ``norm_eps`` (its explicit scale-symmetry breaking,
    :func:`~noether_lib.scale_equivalence.set_norm_epsilon`). The symmetries are found on the first
    ``probe_examples`` training inputs and verified on the first ``verify_examples`` before training. Each step uses
    ``batch_size`` indices drawn with replacement from ``data_seed`` (the whole training set if ``full_batch``). With
    ``lr_drop_at`` a ``MultiStepLR`` multiplies the learning rate by ``lr_drop_factor`` after that many steps.
    """
    check_hyperparameters(lr, momentum, dampening, weight_decay, steps)
    _check_batch_size(batch_size, data)
    if lr_drop_at is not None and not (isinstance(lr_drop_at, int) and lr_drop_at >= 1 and lr_drop_factor > 0):
        raise ValueError(f"lr_drop_at must be a positive integer and lr_drop_factor positive, got {lr_drop_at!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = set_norm_epsilon(make_model().double(), norm_eps)
    verify = (data.x_train[:verify_examples], data.y_train[:verify_examples])
    groups = find_symmetries(model, data.x_train[:probe_examples])
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
    )
    scheduler = None
    if lr_drop_at is not None:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [lr_drop_at], gamma=lr_drop_factor)
    tracker = NoetherTracker(model, optimizer, groups, scheduler=scheduler, verify=verify)
    order = make_generator(data_seed)
    for _ in range(steps):
        index = slice(None) if full_batch else torch.randint(0, len(data.y_train), (batch_size,), generator=order)
        optimizer.zero_grad()
        F.cross_entropy(model(data.x_train[index]), data.y_train[index]).backward()
        optimizer.step()
        tracker.step()
        if scheduler is not None:
            scheduler.step()
    return tracker.table()
