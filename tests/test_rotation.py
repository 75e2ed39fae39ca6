"""Angular momentum under heavy ball and Adam on a rotation-invariant loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noether_lib import rotation as ro


def test_angular_momentum_is_the_cross_product_in_the_plane():
    path = np.array([[1.0, 0.0], [0.9, 0.2], [0.7, 0.5]])
    expected = np.abs(path[:-1, 0] * path[1:, 1] - path[:-1, 1] * path[1:, 0])
    assert ro.angular_momentum(path) == pytest.approx(expected)


def test_heavy_ball_keeps_it_and_adam_creates_it():
    q0 = np.array([1.2, 0.4, -0.3])
    hb = ro.train_on_loss(lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, weight_decay=0.01), q0, 50)
    adam = ro.train_on_loss(lambda p: torch.optim.Adam(p, lr=0.02), q0, 50)
    assert ro.relative_angular_momentum(hb)[:20].max() < 1e-12
    assert ro.relative_angular_momentum(adam).max() > 1e-2


def test_heavy_ball_decays_it_as_beta_to_the_n():
    q0, v0 = np.array([1.2, 0.4, -0.3]), np.array([0.0, 1.0, 1.0])
    L = ro.angular_momentum(
        ro.train_on_loss(lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.8), q0, 30, initial_buffer=v0)
    )
    assert L[1:] / L[:-1] == pytest.approx(0.8, rel=1e-10)
    broken = ro.angular_momentum(
        ro.train_on_loss(
            lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.8),
            q0,
            30,
            initial_buffer=v0,
            loss=lambda q: ro.radial_loss(q, 0.5),
        )
    )
    assert np.abs(broken[1:] / broken[:-1] - 0.8).max() > 1e-3


def test_initial_buffer_only_for_sgd():
    with pytest.raises(ValueError):
        ro.train_on_loss(lambda p: torch.optim.Adam(p), np.ones(2), 1, initial_buffer=np.ones(2))
