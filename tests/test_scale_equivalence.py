"""The equivalent run of a scaled network, against a hand-written SGD recursion on a scale-invariant loss."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from noether_lib import models
from noether_lib.data import load_digits
from noether_lib.scale_equivalence import equivalent_sgd, scale_invariant_parameters, set_norm_epsilon, train_sgd
from noether_lib.symmetry import Member, SymmetryGroup, find_symmetries, scale_filter_norms
from noether_lib.tolerances import FLOAT64_EXACT

LAMBDA, LR, BETA, DAMPENING, K = 3.0, 0.1, 0.8, 0.2, 0.05


class Toy(nn.Module):
    """f(w, b) = |w/|w| - a|^2 + (b - 1)^2 w_0/|w|: scale-invariant in w (a group of one unit), not in b."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.6, -0.3, 0.9], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.4], dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        u = self.w / self.w.norm()
        return ((u - torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)) ** 2).sum() + (self.b - 1).pow(2).sum() * u[0]


GROUPS = [SymmetryGroup("scale", "w", (Member("w", 0),), 1)]


def hand_written_sgd(p: np.ndarray, b: np.ndarray, steps: int) -> list[float]:
    """PyTorch's SGD rule written out (buffer v_1 = d_0, then v = βv + (1-δ)d), on p with the toy's gradient."""
    toy = Toy()
    losses, buffers = [], None
    for _ in range(steps):
        toy.w.data, toy.b.data = torch.tensor(p), torch.tensor(b)
        loss = toy()
        grads = torch.autograd.grad(loss, [toy.w, toy.b])
        losses.append(float(loss.detach()))
        d = [g.numpy() + K * x for g, x in zip(grads, (p, b))]
        buffers = d if buffers is None else [BETA * v + (1 - DAMPENING) * di for v, di in zip(buffers, d)]
        p, b = p - LR * buffers[0], b - LR * buffers[1]
    return losses


def test_equivalent_sgd_reproduces_the_scaled_run_step_by_step():
    toy = Toy()
    w0, b0 = toy.w.detach().numpy().copy(), toy.b.detach().numpy().copy()
    scaled_losses = hand_written_sgd(LAMBDA * w0, b0, 40)
    optimizer = equivalent_sgd(toy, GROUPS, LAMBDA, lr=LR, momentum=BETA, dampening=DAMPENING, weight_decay=K)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = toy()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.abs(np.array(losses) / scaled_losses - 1).max() <= FLOAT64_EXACT
    unscaled_losses = hand_written_sgd(w0, b0, 40)  # the control: the original (η, k) on the unscaled weights
    assert np.abs(np.array(unscaled_losses) / scaled_losses - 1).max() > 1e-3


def test_equivalent_sgd_continues_a_scaled_run_with_its_momentum_buffers():
    scaled, equivalent = Toy(), Toy()
    with torch.no_grad():
        scaled.w.mul_(LAMBDA)
    settings = dict(lr=LR, momentum=BETA, dampening=DAMPENING, weight_decay=K)
    first = torch.optim.SGD(scaled.parameters(), **settings)
    for _ in range(10):
        first.zero_grad()
        scaled().backward()
        first.step()
    with torch.no_grad():
        equivalent.w.copy_(scaled.w / LAMBDA)
        equivalent.b.copy_(scaled.b)
    second = equivalent_sgd(equivalent, GROUPS, LAMBDA, **settings, scaled_optimizer=first, scaled_model=scaled)
    for _ in range(10):
        for model, optimizer in ((scaled, first), (equivalent, second)):
            optimizer.zero_grad()
            model().backward()
            optimizer.step()
    torch.testing.assert_close(scaled.w / LAMBDA, equivalent.w, rtol=1e-12, atol=0)
    torch.testing.assert_close(scaled.b, equivalent.b, rtol=1e-12, atol=0)


def test_train_sgd_on_a_batch_normalised_network_in_float64():
    torch.manual_seed(0)
    digits = load_digits(dtype=torch.float64)
    network = set_norm_epsilon(models.VGG([4, "M", 4], in_channels=1, num_classes=10).double(), 1e-20)
    groups = find_symmetries(network, digits.x_train[:32])
    assert scale_invariant_parameters(groups) == {
        "features.0.weight",
        "features.0.bias",
        "features.4.weight",
        "features.4.bias",
    }
    scaled = scale_filter_norms(copy.deepcopy(network), groups, LAMBDA)
    settings = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=256, epochs=1)
    run_scaled = train_sgd(scaled, digits, groups, **settings)
    optimizer = equivalent_sgd(network, groups, LAMBDA, lr=0.05, momentum=0.9, weight_decay=1e-3)
    run_equivalent = train_sgd(network, digits, groups, **settings, optimizer=optimizer)
    assert np.abs(run_equivalent.losses / run_scaled.losses - 1).max() <= FLOAT64_EXACT
    np.testing.assert_allclose(run_scaled.norm_sq, LAMBDA**2 * run_equivalent.norm_sq, rtol=FLOAT64_EXACT)


def test_bad_arguments():
    toy = Toy()
    with pytest.raises(ValueError, match="factor"):
        equivalent_sgd(toy, GROUPS, -1.0, lr=0.1)
    with pytest.raises(ValueError, match="no scale symmetry"):
        equivalent_sgd(toy, [SymmetryGroup("translation", "b", (Member("b", 0),), 1)], 2.0, lr=0.1)
    with pytest.raises(ValueError, match="does not have"):
        equivalent_sgd(toy, [SymmetryGroup("scale", "x", (Member("x", 0),), 1)], 2.0, lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        equivalent_sgd(toy, GROUPS, 2.0, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="eps"):
        set_norm_epsilon(toy, -1.0)
