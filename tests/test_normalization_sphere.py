"""Normalization: the exact β = 0 sphere equivalence, Eq. 17's two parts, the momentum factors, one recorder format."""

import copy

import numpy as np
import pytest
import torch

from noether_lib import normalization as nz
from noether_lib.data import load_digits
from noether_lib.schema import column_names
from noether_lib.tolerances import FLOAT64_EXACT
from noether_lib.tracking import NoetherTracker


@pytest.fixture(scope="module")
def digits64():
    return load_digits(images=False, dtype=torch.float64)


def _train(model, groups, data, steps, **kwargs):
    return nz.train_minibatches(
        model,
        groups,
        data.x_train,
        data.y_train,
        batch_size=32,
        seed=1,
        steps=steps,
        lr=0.1,
        momentum=0.0,
        weight_decay=3e-2,
        **kwargs,
    )


def test_sgd_with_weight_decay_is_projected_sgd_on_the_sphere(digits64):
    free, groups = nz.normalized_mlp(digits64.x_train, 10, hidden=(16,), dtype=torch.float64, eps=1e-15)
    sphere, constant = copy.deepcopy(free), copy.deepcopy(free)
    a = _train(free, groups, digits64, 80)
    start = torch.as_tensor(a.norm_squared[0])
    s = _train(
        sphere,
        groups,
        digits64,
        80,
        filters=nz.SphereSGD(sphere, groups, lr=0.1, weight_decay=3e-2, initial_norm_squared=start),
    )
    k = _train(
        constant,
        groups,
        digits64,
        80,
        filters=nz.UnitFilterSGD(constant, groups, lr=0.1),
        norm_squared=(1 - 0.1 * 3e-2) * a.norm_squared[0],
    )
    assert np.abs(s.loss / a.loss - 1).max() <= FLOAT64_EXACT < np.abs(k.loss / a.loss - 1).max()
    recursion = nz.sphere_norm_recursion(a.g_hat_sq, 0.1, 3e-2, a.norm_squared[0])[:-1]
    assert np.abs(recursion / a.norm_squared - 1).max() <= FLOAT64_EXACT
    flow = a.norm_squared[0] * np.exp(-2 * 3e-2 * 0.1 * np.arange(80))[:, None]
    assert np.abs(flow / a.norm_squared - 1).max() > FLOAT64_EXACT
    np.testing.assert_allclose(
        nz.filter_norms(groups, dict(sphere.named_parameters())).detach().numpy(), 1.0, rtol=1e-12
    )


def test_closed_form_parts_add_up_and_only_the_forcing_carries_the_gradient():
    g2 = np.random.default_rng(0).uniform(0.5, 2.0, size=(300, 3))
    initial, forcing = nz.closed_form_parts(g2, 0.01, 0.9, 1e-3, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(
        np.sqrt(initial + forcing), nz.closed_form_norm_squared(g2, 0.01, 0.9, 1e-3, np.array([1.0, 2.0, 3.0]))
    )
    assert np.all(forcing[0] == 0) and np.allclose(initial[0], [1.0, 4.0, 9.0])
    again = nz.closed_form_parts(2 * g2, 0.01, 0.9, 1e-3, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(again[0], initial)
    np.testing.assert_allclose(again[1], 2 * forcing)


@pytest.mark.parametrize("mean, noise", [(1.0, 0.0), (0.0, 1.0)])
def test_implied_factor_on_the_toy_matches_its_regime(mean, noise):
    lr, beta = 0.01, 0.9
    wd = (1 - beta) / (4 * lr * 200)
    rec = nz.train_angle_toy(units=128, steps=1500, lr=lr, momentum=beta, weight_decay=wd, mean=mean, noise=noise)
    kappa = nz.implied_correlation_factor(rec.norm_squared, rec.g_hat_sq, lr, beta, wd, 500)
    white = nz.correlation_factor(np.array([1.0]), beta)
    expected, other = (1.0, white) if noise == 0 else (white, 1.0)
    assert abs(kappa / expected - 1) < 0.05 < abs(kappa / other - 1)


def test_amplification_table_at_09():
    table = nz.amplification_table(0.9)
    expected = {
        ("prefactor", "lr", "correlated"): 1900,
        ("prefactor", "lr", "white"): 100,
        ("r4_star", "lr", "correlated"): 190,
        ("r4_star", "lr", "white"): 10,
        ("prefactor", "lr/(1-beta)", "correlated"): 190,
        ("prefactor", "lr/(1-beta)", "white"): 10,
        ("r4_star", "lr/(1-beta)", "correlated"): 19,
        ("r4_star", "lr/(1-beta)", "white"): 1,
    }
    assert table.keys() == expected.keys()
    for key, value in expected.items():
        assert table[key] == pytest.approx(value)
    assert table["prefactor", "lr", "correlated"] == pytest.approx(nz.momentum_amplification(0.9))


def _white_toy():
    toy, group = nz.angle_toy(128)
    xi = torch.randn(1500, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return toy, [group], lambda n: nz.angle_loss(toy.q, xi[n])


def test_stationary_update_ratio_on_the_white_noise_toy():
    lr, beta = 0.01, 0.9
    wd = (1 - beta) / (4 * lr * 100)
    rec = nz.train_and_record(*_white_toy(), steps=1500, lr=lr, momentum=beta, weight_decay=wd, keep_updates=True)
    late = slice(700, 1499)
    ratio = rec.update_sq[late].mean() / rec.norm_squared[late].mean()
    assert abs(ratio / nz.stationary_update_ratio(lr, beta, wd) - 1) < 0.05
    assert abs(ratio / (2 * lr * wd) - 1) > 0.3  # momentum ignored
    assert nz.stationary_update_ratio(lr, beta, wd) == pytest.approx(nz.angular_update(lr, beta, wd) ** 2)


def test_norm_recorder_writes_the_charges_table_like_the_tracker(digits64):
    model, groups = nz.normalized_mlp(digits64.x_train, 10, hidden=(8,), dtype=torch.float64, eps=1e-15)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-2)
    tracker = NoetherTracker(model, optimizer, groups)
    recorder = nz.NormRecorder(model, groups, keep_updates=True)
    loss_at = nz.minibatch_loss(model, digits64.x_train, digits64.y_train, batch_size=32, seed=0)
    for n in range(20):
        optimizer.zero_grad()
        loss = loss_at(n)
        loss.backward()
        recorder.record(loss.detach())
        optimizer.step()
        tracker.step()
    record = recorder.result()
    table = record.table()
    assert set(table.columns) <= set(column_names())
    np.testing.assert_allclose(nz.unit_gradient_sq_from_table(table), record.g_hat_sq[:-1], rtol=1e-12)
    tracked = tracker.table()
    np.testing.assert_allclose(nz.unit_gradient_sq_from_table(tracked)[:19], record.g_hat_sq[:-1], rtol=1e-9)
    wide = tracked.pivot(index="step", columns="unit", values="update_signed_sq").to_numpy()
    np.testing.assert_allclose(wide[1:20], record.update_sq[:-1], rtol=1e-9)
