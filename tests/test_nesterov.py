"""PyTorch's Nesterov momentum: the iterates, the two-step recursion and the modified equation."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from noether_lib import nesterov as nv
from noether_lib.mechanics import is_identically_zero

H = np.array([[2.0, 0.5], [0.5, 1.0]])


def gradient(q: np.ndarray) -> np.ndarray:
    return H @ q


def test_iterates_match_torch():
    q0 = np.array([1.0, -0.5])
    ours = nv.nesterov_iterates(gradient, q0, 0.05, 30, momentum=0.9)
    p = torch.nn.Parameter(torch.tensor(q0))
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9, nesterov=True)
    path = [q0]
    for _ in range(30):
        opt.zero_grad()
        (0.5 * p @ torch.tensor(H) @ p).backward()
        opt.step()
        path.append(p.detach().numpy().copy())
    assert np.abs(ours - np.array(path)).max() < 1e-14


def test_two_step_recursion_and_first_step():
    lr, b = 0.05, 0.9
    q = nv.nesterov_iterates(gradient, np.array([1.0, -0.5]), lr, 20, momentum=b)
    g = np.array([gradient(x) for x in q])
    lhs = q[2:] - q[1:-1] - b * (q[1:-1] - q[:-2])
    rhs = -lr * g[1:-1] - lr * b * (g[1:-1] - g[:-2])
    assert np.abs(lhs - rhs).max() < 1e-14
    assert q[1] == pytest.approx(q[0] - lr * nv.first_step_factor(b) * g[0])


def test_modified_equation_has_the_hessian_damping():
    t = sp.Symbol("t")
    eta, beta = sp.symbols("eta beta", positive=True)
    q, f = sp.Function("q")(t), sp.Function("f")
    equation = nv.nesterov_modified_equation(q, t, eta, beta, f)
    x = sp.Dummy("x")
    fpp = sp.diff(f(x), x, 2).subs(x, q)
    heavy_ball = eta * (1 + beta) / 2 * q.diff(t, 2) + (1 - beta) * q.diff(t) + sp.diff(f(x), x).subs(x, q)
    assert is_identically_zero(sp.simplify((equation - heavy_ball).doit() - (eta * beta * fpp * q.diff(t)).doit()))


def test_table_one_flow_is_the_su_boyd_candes_ode():
    # for f = q^2/2 in 1-D the solution from rest is 2 J_1(t)/t, q(t) -> J-Bessel; check against scipy
    from scipy.special import j1

    end = nv.table_one_flow(lambda q: q, np.array([1.0]), 5.0)
    assert end[0] == pytest.approx(2 * j1(5.0) / 5.0, abs=1e-6)
