"""Normalization (Eqs. 14-18): each formula against an independent computation, the training machinery, bad input."""

import copy

import numpy as np
import pytest
import sympy as sp
import torch
from torch import nn

from noether_lib import models
from noether_lib import normalization as nz
from noether_lib.mechanics import euler_lagrange
from noether_lib.symmetry import Member, SymmetryGroup

t = sp.Symbol("t", real=True)
m, mu, k = sp.symbols("m mu k", positive=True)


def mlp_and_groups(seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = models.MLP(8, [6, 5], 3, batch_norm=True).to(dtype)
    groups = [
        SymmetryGroup("scale", "l1", (Member("net.1.weight", 0), Member("net.1.bias", 0)), 6),
        SymmetryGroup("scale", "l2", (Member("net.4.weight", 0), Member("net.4.bias", 0)), 5),
    ]
    return model, groups


def toy(units: int, seed: int = 0, radius: float = 1.0):
    module, group = nz.angle_toy(units, radius=radius, seed=seed)
    np.testing.assert_allclose(module.q.detach().norm(dim=1).numpy(), radius)
    return module, group


def run_toy(*, steps, lr, momentum, weight_decay, mean, noise, units=64, seed=0, radius=1.0):
    toy(units, seed, radius)  # the toy starts at the requested norm
    return nz.train_angle_toy(
        units=units,
        steps=steps,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        mean=mean,
        noise=noise,
        seed=seed,
        radius=radius,
    )


# ---------------------------------------------------------------------------------------------------- symbolic
def test_polar_euler_lagrange_gives_radial_and_angular_equations():
    r, theta = sp.Function("r")(t), sp.Function("theta")(t)
    f = sp.Function("f")
    lagrangian = nz.polar_lagrangian(r, theta, t, m, mu, k, f(theta))
    el_r, el_theta = (sp.expand(e * sp.exp(-mu * t / m)) for e in euler_lagrange(lagrangian, [r, theta], t))
    assert sp.simplify(el_r - nz.radial_equation(r, theta, t, m, mu, k)) == 0
    # exact angular equation = r^2 (Eq. 15) + 2 m r r' theta': Eq. 15 holds to first order in m
    extra = 2 * m * r * sp.diff(r, t) * sp.diff(theta, t)
    assert sp.simplify(el_theta - r**2 * nz.angular_equation(r, theta, t, m, mu, f(theta)) - extra) == 0


def test_norm_equation_from_radial_equation_and_overdamped_speed():
    r, theta = sp.Function("r")(t), sp.Function("theta")(t)
    g_hat = sp.Symbol("g", real=True)
    rdd = sp.solve(nz.radial_equation(r, theta, t, m, mu, k), sp.diff(r, t, 2))[0]
    # exact: m (r^2)'' + mu (r^2)' = 2 m |qdot|^2 - 2 k r^2, using the radial equation for r''
    exact = (m * sp.diff(r**2, t, 2) + mu * sp.diff(r**2, t)).subs(sp.diff(r, t, 2), rdd)
    speed = sp.diff(r, t) ** 2 + r**2 * sp.diff(theta, t) ** 2
    assert sp.simplify(exact - (2 * m * speed - 2 * k * r**2)) == 0
    # Eq. 16 = the exact law with the overdamped angular speed theta' = -g/(mu r^2), less the radial term 2 m r'^2
    residual = nz.norm_equation(r**2, t, m, mu, k, g_hat**2).subs(sp.diff(r, t, 2), rdd)
    residual = residual.subs(sp.diff(theta, t), -g_hat / (mu * r**2))
    assert sp.simplify(residual - 2 * m * sp.diff(r, t) ** 2) == 0


# ---------------------------------------------------------------------------------------------- measurements
def test_filter_norms_and_unit_gradient_against_gradient_at_unit_norm():
    model, groups = mlp_and_groups(dtype=torch.float64)
    x, y = torch.randn(32, 8, dtype=torch.float64), torch.randint(0, 3, (32,))
    params = dict(model.named_parameters())
    r = nz.filter_norms(groups, params)
    manual = torch.cat(
        [
            (params["net.1.weight"] ** 2).sum(1) + params["net.1.bias"] ** 2,
            (params["net.4.weight"] ** 2).sum(1) + params["net.4.bias"] ** 2,
        ]
    ).sqrt()
    torch.testing.assert_close(r, manual)
    nn.functional.cross_entropy(model(x), y).backward()
    g_hat_sq = nz.unit_gradient_norms_sq(groups, params, {n: p.grad for n, p in params.items()})
    # independent: the gradient of a copy whose filters were divided by their norms
    unit = copy.deepcopy(model)
    nz.FilterNormConstraint(unit, groups, radius=1.0).apply()
    unit.zero_grad()
    nn.functional.cross_entropy(unit(x), y).backward()
    uparams = dict(unit.named_parameters())
    direct = nz.filter_norms(groups, {n: p.grad for n, p in uparams.items()}) ** 2
    torch.testing.assert_close(g_hat_sq, direct, rtol=1e-3, atol=1e-10)  # BN's eps breaks scale invariance slightly


def test_non_scale_groups_are_rejected():
    model, groups = mlp_and_groups()
    bad = SymmetryGroup("translation", "logits", (Member("net.7.weight", 1),), 5)
    with pytest.raises(ValueError, match="scale"):
        nz.filter_norms([bad], dict(model.named_parameters()))
    with pytest.raises(ValueError, match="scale"):
        nz.FilterNormConstraint(model, [bad])


# --------------------------------------------------------------------------------------------------- formulas
def test_closed_form_constant_gradient_matches_analytic_solution():
    lr, beta, wd, g2, r0 = 0.01, 0.9, 1e-3, 0.7, 1.3
    steps = 2000
    r2 = nz.closed_form_norm_squared(np.full(steps, g2), lr, beta, wd, r0**2)
    time = lr * np.arange(steps + 1)
    a, p = 4 * wd / (1 - beta), 2 * lr * (1 + beta) / (1 - beta) ** 3
    np.testing.assert_allclose(r2**2, r0**4 * np.exp(-a * time) + p * g2 * (1 - np.exp(-a * time)) / a, rtol=1e-12)
    no_decay = nz.closed_form_norm_squared(np.full(steps, g2), lr, beta, 0.0, r0**2)
    np.testing.assert_allclose(no_decay**2, r0**4 + p * g2 * time, rtol=1e-12)
    assert np.isclose(nz.momentum_amplification(0.9), 1900.0)
    np.testing.assert_allclose(nz.steady_state_norm4(g2, lr, beta, wd), p * g2 / a)


def test_closed_form_tracks_sgd_on_toy_with_persistent_gradient():
    lr, beta, wd, steps = 0.01, 0.9, 5e-3, 4000
    rec = run_toy(steps=steps, lr=lr, momentum=beta, weight_decay=wd, mean=1.0, noise=0.0, units=8)
    predicted = nz.closed_form_norm_squared(rec.g_hat_sq, lr, beta, wd, rec.norm_squared[0])[:-1]
    relative = np.abs(predicted / rec.norm_squared - 1)
    assert relative[steps // 2 :].max() < 5e-3
    late = rec.norm_squared[-500:] ** 2
    assert abs(late.mean() / nz.steady_state_norm4(1.0, lr, beta, wd) - 1) < 5e-3


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_white_noise_reduces_steady_state_by_uncorrelated_factor(beta):
    lr = 0.01
    wd = (1 - beta) / (4 * lr * 200)
    rec = run_toy(steps=2000, lr=lr, momentum=beta, weight_decay=wd, mean=0.0, noise=1.0, units=256)
    measured = (rec.norm_squared[-800:] ** 2).mean() / nz.steady_state_norm4(rec.g_hat_sq[-800:].mean(), lr, beta, wd)
    assert abs(measured / nz.correlation_factor(np.array([1.0]), beta) - 1) < 0.05


def test_angular_update_matches_measured_angle_per_step():
    lr, beta = 0.01, 0.9
    wd = (1 - beta) / (4 * lr * 200)
    for mean, noise in [(1.0, 0.0), (0.0, 1.0)]:
        module, group = toy(128)
        xi = mean + noise * torch.randn(2000, 128, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        angles = []
        opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=beta, weight_decay=wd)
        for n in range(2000):
            before = module.q.detach().clone()
            opt.zero_grad()
            nz.angle_loss(module.q, xi[n]).backward()
            opt.step()
            cos = (before * module.q.detach()).sum(1) / before.norm(dim=1) / module.q.detach().norm(dim=1)
            angles.append(torch.arccos(cos.clamp(-1, 1)))
        rms = torch.stack(angles[-800:]).pow(2).mean().sqrt().item()
        assert abs(rms / nz.angular_update(lr, beta, wd) - 1) < 0.03


def test_rmsprop_closed_form_matches_discrete_recursion():
    rng = np.random.default_rng(0)
    g2 = rng.uniform(0.5, 2.0, size=(3000, 4))
    lr, rho, g0 = 0.01, 0.999, 0.3
    discrete = np.empty((3001, 4))
    discrete[0] = g0
    for n in range(3000):
        discrete[n + 1] = rho * discrete[n] + (1 - rho) * g2[n]
    closed = nz.rmsprop_closed_form(g2, lr, rho, g0) ** 2
    np.testing.assert_allclose(closed, discrete, rtol=2e-3)


def test_matched_rmsprop_reproduces_eq17_and_adagrad_at_zero_decay():
    rng = np.random.default_rng(1)
    g2 = rng.uniform(0.5, 2.0, size=3000)
    for wd in (1e-3, 0.0):
        lr, beta = 0.01, 0.9
        rho, weight = nz.matched_rmsprop(lr, beta, wd)
        assert np.isclose((1 - rho) / lr, 4 * wd / (1 - beta))
        acc = np.empty(3001)
        acc[0] = 1.0
        for n in range(3000):
            acc[n + 1] = rho * acc[n] + weight * g2[n]
        np.testing.assert_allclose(nz.rmsprop_accumulator(g2, rho, weight, 1.0), acc, rtol=1e-12)
        closed = nz.closed_form_norm_squared(g2, lr, beta, wd, 1.0) ** 2
        np.testing.assert_allclose(acc, closed, rtol=2e-2)
        if wd == 0.0:
            assert rho == 1.0 and np.all(np.diff(acc) > 0)


def test_correlation_factor_against_heavy_ball_on_ar1_noise():
    beta, phi, steps = 0.9, 0.6, 200_000
    rng = np.random.default_rng(2)
    g = np.empty(steps)
    g[0] = rng.normal()
    for n in range(1, steps):
        g[n] = phi * g[n - 1] + np.sqrt(1 - phi**2) * rng.normal()
    v, vs = 0.0, np.empty(steps)
    for n in range(steps):
        v = beta * v + g[n]
        vs[n] = v
    measured = np.mean(vs[1000:] ** 2) * (1 - beta) ** 2 / np.mean(g**2)
    predicted = nz.correlation_factor(phi ** np.arange(200), beta)
    assert abs(measured / predicted - 1) < 0.05
    assert np.isclose(nz.correlation_factor(np.ones(2000), beta), 1.0)
    c = nz.autocorrelation(g[:, None], 3)
    np.testing.assert_allclose(c, phi ** np.arange(4), atol=0.02)


def test_effective_learning_rate():
    np.testing.assert_allclose(nz.effective_learning_rate(0.1, np.array([0.5, 2.0])), [0.2, 0.05])


# ---------------------------------------------------------------------------------------------- training tools
def test_filter_norm_constraint_keeps_norms_and_loss():
    model, groups = mlp_and_groups()
    model.train()
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    constraint = nz.FilterNormConstraint(model, groups)
    initial = nz.filter_norms(groups, dict(model.named_parameters())).detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.05)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        classifier = model.net[7].weight.detach().clone()
        with torch.no_grad():
            before = nn.functional.cross_entropy(model(x), y)
        constraint.apply()
        with torch.no_grad():
            after = nn.functional.cross_entropy(model(x), y)
        torch.testing.assert_close(nz.filter_norms(groups, dict(model.named_parameters())), initial, rtol=1e-6, atol=0)
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
        assert torch.equal(model.net[7].weight, classifier)
    assert not torch.allclose(model.net[1].weight.norm(), torch.tensor(0.0))


def test_filter_norm_constraint_on_conv_groups_from_find_symmetries():
    from noether_lib.symmetry import find_symmetries

    torch.manual_seed(0)
    model = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=True)
    groups = [g for g in find_symmetries(model, torch.randn(4, 1, 8, 8)) if g.kind == "scale"]
    constraint = nz.FilterNormConstraint(model, groups, radius=2.0)
    constraint.apply()
    norms = nz.filter_norms(groups, dict(model.named_parameters()))
    torch.testing.assert_close(norms, torch.full_like(norms, 2.0))
    with pytest.raises(ValueError, match="radius"):
        nz.FilterNormConstraint(model, groups, radius=0.0)


def test_unit_filter_sgd_step_is_normalised_gradient_step():
    model, groups = mlp_and_groups(dtype=torch.float64)
    opt = nz.UnitFilterSGD(model, groups, lr=0.1, momentum=0.0)
    w = model.net[1].weight.detach().clone()
    b = model.net[1].bias.detach().clone()
    nn.functional.cross_entropy(model(torch.randn(16, 8, dtype=torch.float64)), torch.randint(0, 3, (16,))).backward()
    divisor = torch.linspace(0.5, 2.0, 11, dtype=torch.float64)
    gw, gb = model.net[1].weight.grad.clone(), model.net[1].bias.grad.clone()
    opt.step(divisor)
    new = torch.cat([w - 0.1 * gw / divisor[:6, None], (b - 0.1 * gb / divisor[:6])[:, None]], 1)
    new = new / new.norm(dim=1, keepdim=True)
    torch.testing.assert_close(torch.cat([model.net[1].weight, model.net[1].bias[:, None]], 1), new)
    with pytest.raises(ValueError, match="entries"):
        opt.step(torch.ones(3, dtype=torch.float64))


def test_filter_rmsprop_accumulates_and_stays_on_sphere():
    model, groups = mlp_and_groups()
    opt = nz.FilterRMSProp(model, groups, lr=0.05, rho=1.0, weight=0.1, momentum=0.5)
    history = []
    for _ in range(4):
        model.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 3, (16,))).backward()
        opt.step()
        history.append(opt.accumulator.clone())
        norms = nz.filter_norms(groups, dict(model.named_parameters()))
        torch.testing.assert_close(norms, torch.ones_like(norms))
    assert all(torch.all(b >= a) for a, b in zip(history, history[1:]))
    with pytest.raises(ValueError, match="rho"):
        nz.FilterRMSProp(model, groups, lr=0.05, rho=1.5, weight=0.1)


def test_free_run_and_run_with_its_norms_on_the_sphere_agree():
    torch.manual_seed(0)
    x, y = torch.randn(128, 8), torch.randint(0, 3, (128,))
    hyper = dict(steps=60, lr=0.05, momentum=0.5, weight_decay=1e-3)
    model_a, groups = mlp_and_groups(seed=1)
    model_b = copy.deepcopy(model_a)
    a = nz.train_and_record(model_a, groups, nz.minibatch_loss(model_a, x, y, batch_size=16, seed=0), **hyper)
    sphere = nz.UnitFilterSGD(model_b, groups, lr=hyper["lr"], momentum=hyper["momentum"])
    b = nz.train_and_record(
        model_b,
        groups,
        nz.minibatch_loss(model_b, x, y, batch_size=16, seed=0),
        **hyper,
        filters=sphere,
        norm_squared=a.norm_squared,
    )
    assert np.abs(a.loss - b.loss).max() < 2e-2
    np.testing.assert_allclose(b.norm_squared, 1.0, rtol=1e-5)
    model_c = mlp_and_groups(seed=1)[0]
    again = nz.train_and_record(model_c, groups, nz.minibatch_loss(model_c, x, y, batch_size=16, seed=0), **hyper)
    np.testing.assert_array_equal(again.loss, a.loss)  # same seed, same data order: bit-identical


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: nz.closed_form_norm_squared(np.ones(3), 0.0, 0.9, 1e-3, 1.0), "learning rate"),
        (lambda: nz.closed_form_norm_squared(np.ones(3), 0.1, 1.0, 1e-3, 1.0), "momentum"),
        (lambda: nz.closed_form_norm_squared(np.ones(3), 0.1, 0.9, -1.0, 1.0), "weight decay"),
        (lambda: nz.rmsprop_closed_form(np.ones(3), 0.1, 0.0, 1.0), "rho"),
        (lambda: nz.matched_rmsprop(1.0, 0.9, 0.1), "below 1"),
        (lambda: nz.rmsprop_accumulator(np.ones(3), 0.9, 0.0, 1.0), "weight"),
        (lambda: nz.steady_state_norm4(1.0, 0.1, 0.9, 0.0), "steady state"),
        (lambda: nz.correlation_factor(np.array([0.5, 0.1]), 0.9), "C\\(0\\) = 1"),
        (lambda: nz.autocorrelation(np.ones((3, 2)), 3), "max_lag"),
        (lambda: nz.angle_loss(torch.ones(3, 3), torch.ones(3)), "shape"),
        (lambda: nz.angle_toy(0), "units"),
        (lambda: nz.implied_correlation_factor(np.ones((3, 2)), np.ones((3, 1)), 0.1, 0.9, 1e-3, 0), "shape"),
        (lambda: nz.sphere_step_size(1.0, 2.0, 1.0), "below 1"),
        (lambda: nz.accumulator_step(1.0, 1.0, 0.0, 1.0), "rho"),
        (lambda: nz.minibatch_loss(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4), batch_size=5, seed=0), "batch"),
        (lambda: nz.UnitFilterSGD(mlp_and_groups()[0], mlp_and_groups()[1], lr=-1.0), "learning rate"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_loss_curve_gap_against_a_direct_computation():
    rng = np.random.default_rng(0)
    reference = 1.0 + rng.random(200)
    shifted = reference + 0.1
    # a constant offset survives smoothing exactly: the gap is the offset over the mean
    assert nz.loss_curve_gap(shifted, reference, window=10) == pytest.approx(0.1 / reference.mean())
    assert nz.loss_curve_gap(reference, reference) == 0.0
    assert np.allclose(nz.smoothed_loss(np.arange(5.0), window=2), [0.5, 1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="same length"):
        nz.loss_curve_gap(reference[:10], reference)
    with pytest.raises(ValueError, match="window"):
        nz.smoothed_loss(reference, window=0)
