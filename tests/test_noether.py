"""Tests of noether_lib.noether: the symbolic Noether identity and NLD, and the charge predictions, each against an
independent computation (sympy, direct simulation with torch.optim.SGD, closed-form ODE solutions)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from noether_lib import noether
from noether_lib.mechanics import is_identically_zero, kanai_lagrangian
from noether_lib.noether.continuous import _propagator

t, s = sp.symbols("t s", real=True)
m, mu, k = sp.symbols("m mu k", positive=True)
q1, q2 = sp.Function("q1")(t), sp.Function("q2")(t)
F = sp.Function("F")
d1, d2 = sp.diff(q1, t), sp.diff(q2, t)

# (transformation, symmetric part of the potential, generator, conserved quantity) per kind, written independently
TOYS = {
    "translation": ([q1 + s, q2 + s], F(q1 - q2), [1, 1], q1 + q2),
    "scale": ([(1 + s) * q1, (1 + s) * q2], F(q1 / q2), [q1, q2], q1**2 + q2**2),
    "rescale": ([(1 + s) * q1, q2 / (1 + s)], F(q1 * q2), [q1, -q2], q1**2 - q2**2),
}


def potential(kind: str) -> sp.Expr:
    return TOYS[kind][1] + k / 2 * (q1**2 + q2**2)


@pytest.mark.parametrize("kind", list(TOYS))
def test_noether_identity_holds_off_shell(kind):
    transformation = TOYS[kind][0]
    lagrangian = kanai_lagrangian([q1, q2], t, m, mu, potential(kind))
    assert noether.noether_identity_residual(lagrangian, [q1, q2], transformation, s, t) == 0
    assert noether.generator(transformation, s) == [sp.sympify(x) for x in TOYS[kind][2]]


@pytest.mark.parametrize("kind", list(TOYS))
def test_nld_matches_the_forms_derived_by_hand(kind):
    """Sec. 3.7 of the digest: m d/dt<qdot, xi> + mu <qdot, xi> = m <qdot, d_s Qdot> - k <q, xi>."""
    transformation, _, xi, _ = TOYS[kind]
    eq = noether.noether_learning_dynamics([q1, q2], t, m, mu, potential(kind), transformation, s)
    projected = d1 * xi[0] + d2 * xi[1]
    ksb = {"translation": 0, "scale": d1**2 + d2**2, "rescale": d1**2 - d2**2}[kind]
    expected_left = m * sp.diff(projected, t) + mu * projected
    expected_right = m * ksb - k * (q1 * xi[0] + q2 * xi[1])
    assert is_identically_zero(eq.lhs - expected_left)
    assert is_identically_zero(eq.rhs - expected_right)


@pytest.mark.parametrize("kind", list(TOYS))
def test_charge_coefficients_follow_from_nld(kind):
    """In terms of C, NLD is m C'' + mu C' + omega C = c <qdot, J qdot> with the library's (omega, c)."""
    transformation, _, xi, conserved = TOYS[kind]
    eq = noether.noether_learning_dynamics([q1, q2], t, m, mu, potential(kind), transformation, s)
    factor = 1 if kind == "translation" else sp.Rational(1, 2)  # <qdot, xi> = factor * dC/dt
    omega, c = noether.charge_coefficients(kind, m, k)
    kinetic = {"translation": 0, "rescale": d1**2 - d2**2, "scale": d1**2 + d2**2}[kind]
    charge_equation = m * sp.diff(conserved, t, 2) + mu * sp.diff(conserved, t) + omega * conserved - c * kinetic
    assert is_identically_zero((eq.lhs - eq.rhs) / factor - charge_equation)


def test_overdamped_limit_gives_gradient_flow_conservation():
    transformation = TOYS["scale"][0]
    eq = noether.noether_learning_dynamics([q1, q2], t, m, mu, potential("scale").subs(k, 0), transformation, s)
    limit = noether.overdamped_limit(eq, m)
    assert is_identically_zero(limit.lhs - mu * (q1 * d1 + q2 * d2)) and limit.rhs == 0


def test_bad_symbolic_input():
    with pytest.raises(ValueError, match="Q\\(q, 0\\)"):
        noether.noether_charge(q1**2, [q1], [q1 + 1 + s], s, t)
    with pytest.raises(ValueError, match="coordinates"):
        noether.noether_charge(q1**2, [q1, q2], [q1 + s], s, t)


# --------------------------------------------------------------------------------------------------------------
# Numerical predictions against direct simulation with torch.optim.SGD on toy losses with exact symmetries
# --------------------------------------------------------------------------------------------------------------


def toy_loss(kind: str, q: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    if kind == "scale":
        x = q / q.norm()
    elif kind == "translation":
        x = q - q.mean()
    else:  # rescale: incoming q[:3], outgoing q[3:], the loss sees only their outer product
        x = torch.outer(q[:3], q[3:]).reshape(-1)[: len(q)]
    return torch.sin(batch[: len(x)] @ x) + torch.tanh(batch[len(x) :] @ x) ** 2


def simulate(kind: str, lrs: list[float], *, momentum=0.0, dampening=0.0, weight_decay=0.0, seed=0):
    """Run SGD and measure C_n, U_n = <u, J u>, P_0 and G_n = <g, J g> from the iterates themselves."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64) + 1.0)
    opt = torch.optim.SGD([q], lr=lrs[0], momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    J = torch.tensor([1.0, 1, 1, -1, -1, -1] if kind == "rescale" else [1.0] * 6, dtype=torch.float64)

    def charge(x):
        return float(x.sum()) if kind == "translation" else float((J * x * x).sum())

    C, U, G, P = [charge(q.detach())], [], [], []
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        before = q.detach().clone()
        opt.zero_grad()
        toy_loss(kind, q, torch.randn(12, generator=gen, dtype=torch.float64)).backward()
        G.append(float((J * q.grad * q.grad).sum()))
        opt.step()
        u = q.detach() - before
        U.append(float((J * u * u).sum()))
        P.append(float(u.sum()) if kind == "translation" else float((J * before * u).sum()))
        C.append(charge(q.detach()))
    return np.array(C)[:, None], np.array(U)[:, None], np.array(G)[:, None], P[0]


@pytest.mark.parametrize("kind", ["translation", "scale", "rescale"])
@pytest.mark.parametrize(
    "settings",
    [
        dict(momentum=0.0, weight_decay=0.0),
        dict(momentum=0.0, dampening=0.3, weight_decay=0.05),  # dampening is ignored without momentum
        dict(momentum=0.9, weight_decay=0.01),
        dict(momentum=0.5, dampening=0.5, weight_decay=0.02),
    ],
)
def test_exact_recursion_matches_sgd_with_a_step_drop(kind, settings):
    lrs = [0.05] * 60 + [0.01] * 60
    C, U, G, _ = simulate(kind, lrs, **settings)
    predicted = noether.exact_charge(kind, C[0], lrs, update_signed_sq=U, **settings)
    assert noether.relative_error(C, predicted).max() < 1e-12
    if settings["momentum"] == 0:
        closed = noether.sgd_exact_charge(kind, C[0], lrs, grad_signed_sq=G, weight_decay=settings["weight_decay"])
        assert noether.relative_error(C, closed).max() < 1e-12


def test_continuous_prediction_converges_with_the_learning_rate():
    """The modified equation's prediction approaches the discrete charge as eta -> 0 (same total time)."""
    errors = []
    for lr in (0.04, 0.02, 0.01):
        steps = int(round(2.0 / lr))
        C, U, _, P0 = simulate("scale", [lr] * steps, momentum=0.9, weight_decay=0.05)
        continuous = noether.modified_equation_charge(
            "scale", C[0], [lr] * steps, update_signed_sq=U, first_projected_update=P0, momentum=0.9, weight_decay=0.05
        )
        errors.append(noether.relative_error(C, continuous).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-2


@pytest.mark.parametrize("kind", ["translation", "scale"])
def test_continuous_prediction_with_dampening_keeps_the_factor(kind):
    """prior-code.md: the forcing must use |qdot|^2 = |v|^2/(1-delta)^2; dropping (1-delta)^2 is visibly wrong."""
    settings = dict(momentum=0.9, dampening=0.5, weight_decay=0.02)
    lrs = [0.02] * 300
    C, U, _, P0 = simulate(kind, lrs, **settings)
    good = noether.modified_equation_charge(kind, C[0], lrs, update_signed_sq=U, first_projected_update=P0, **settings)
    assert noether.relative_error(C, good).max() < 1e-2
    if kind == "scale":
        buggy = noether.modified_equation_charge(
            kind, C[0], lrs, update_signed_sq=U * 0.5**2, first_projected_update=P0, **settings
        )
        assert noether.relative_error(C, buggy).max() > 10 * noether.relative_error(C, good).max()


@pytest.mark.parametrize("weight_decay", [0.001, 0.0128125, 0.2])  # over-, critically, under-damped at eta=0.1
def test_propagator_matches_closed_form_solution_in_every_regime(weight_decay):
    """Constant forcing: the step-by-step solution equals sympy's dsolve of m C'' + mu C' + omega C = F."""
    lr, beta, steps = 0.1, 0.9, 400
    mass, damp = lr * (1 + beta) / 2, 1 - beta
    omega = 2 * weight_decay
    U = 1e-3
    force = 2 * mass * U / lr**2
    regime = damp**2 - 4 * mass * omega
    C = sp.Function("C")
    tt = sp.Symbol("t")
    c0, v0 = 1.0, 0.3
    ode = sp.Eq(
        sp.Rational(mass).limit_denominator(10**9) * C(tt).diff(tt, 2)
        + sp.nsimplify(damp) * C(tt).diff(tt)
        + sp.nsimplify(omega) * C(tt),
        sp.nsimplify(force),
    )
    exact = sp.dsolve(ode, C(tt), ics={C(0): sp.nsimplify(c0), C(tt).diff(tt).subs(tt, 0): sp.nsimplify(v0)}).rhs
    values = sp.lambdify(tt, exact, "mpmath")
    expected = np.array([float(sp.re(values(n * lr))) for n in range(0, steps + 1, 40)])
    A, b = _propagator(mass, damp, omega, lr)
    state, got = np.array([c0, v0]), [c0]
    for n in range(steps):
        state = A @ state + b * force
        if (n + 1) % 40 == 0:
            got.append(state[0])
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-12), (regime, got, expected)


def test_long_runs_do_not_overflow():
    """prior-code.md: over-damped accumulators overflowed float32 after ~850 steps at beta=0.9. 50k steps here."""
    steps = 50_000
    lr = np.full(steps, 0.1)
    U = np.full((steps, 2), 1e-4, dtype=np.float32)
    c = noether.modified_equation_charge("scale", [1.0, 2.0], lr, update_signed_sq=U, momentum=0.9, weight_decay=5e-4)
    e = noether.exact_charge("scale", [1.0, 2.0], lr, update_signed_sq=U, momentum=0.9, weight_decay=5e-4)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(e))
    # the late-time charge is set by the forcing, not lost: steady state r^4 = m |qdot|^2 / (k mu^2) * ... > 0
    assert np.allclose(c[-1], e[-1], rtol=1e-3)
    assert c[-1, 0] > 0.01


def test_gradient_flow_limit_and_schedule_time():
    c = noether.gradient_flow_charge("scale", [2.0], [0.1] * 10 + [0.01] * 10, weight_decay=0.0)
    assert np.all(c == 2.0)
    c = noether.gradient_flow_charge("translation", [1.0], [0.1] * 10, momentum=0.5, weight_decay=0.1)
    assert c[-1, 0] == pytest.approx(np.exp(-0.1 * 1.0 / 0.5))


@pytest.mark.parametrize(
    "lrs, match",
    [
        ([0.1, 0.09, 0.08, 0.07], "consecutive"),  # a decaying (continuous) schedule
        ([0.1, -0.1], "positive"),
        ([0.1, np.nan], "positive"),
    ],
)
def test_unsupported_schedules_are_rejected(lrs, match):
    with pytest.raises(ValueError, match=match):
        noether.modified_equation_charge("scale", [1.0], lrs, update_signed_sq=np.zeros((len(lrs), 1)))


def test_bad_numerical_input():
    with pytest.raises(ValueError, match="kind"):
        noether.exact_charge("rotation", [1.0], [0.1], update_signed_sq=[[0.0]])
    with pytest.raises(ValueError, match="momentum"):
        noether.exact_charge("scale", [1.0], [0.1], update_signed_sq=[[0.0]], momentum=1.0)
    with pytest.raises(ValueError, match="update_signed_sq"):
        noether.exact_charge("scale", [1.0], [0.1])
    with pytest.raises(ValueError, match="shape"):
        noether.exact_charge("scale", [1.0, 2.0], [0.1], update_signed_sq=[[0.0]])
    with pytest.raises(ValueError, match="weight decay"):
        noether.sgd_exact_charge("scale", [1.0], [0.1], grad_signed_sq=[[0.0]], weight_decay=-1)
    with pytest.raises(ValueError, match="undefined"):
        noether.relative_error(np.zeros((3, 1)), np.zeros((3, 1)))
