import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import nn

from noether_lib import rules
from noether_lib.tolerances import FLOAT64_EXACT

H = np.array([[2.0, 0.5], [0.5, 1.0]])


def quadratic_gradient(q: np.ndarray) -> np.ndarray:
    return H @ q


def nonlinear_gradient(q: np.ndarray) -> np.ndarray:
    """Gradient of f(q) = cosh(q0 - q1) + q1^4 / 4 + q0^2 / 2."""
    s = np.sinh(q[0] - q[1])
    return np.array([s + q[0], -s + q[1] ** 3])


def nonlinear_loss(q: torch.Tensor) -> torch.Tensor:
    return torch.cosh(q[0] - q[1]) + q[1] ** 4 / 4 + q[0] ** 2 / 2


class Point(nn.Module):
    def __init__(self, q0: np.ndarray) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.tensor(q0, dtype=torch.float64))


Q0 = np.array([0.8, -0.6])


def test_gradient_descent_closed_form_on_a_quadratic():
    lr, k, steps = 0.1, 0.05, 30
    path = rules.gradient_descent(quadratic_gradient, Q0, lr, steps, weight_decay=k)
    step = np.eye(2) - lr * (H + k * np.eye(2))
    assert path.shape == (steps + 1, 2)
    np.testing.assert_allclose(path[-1], np.linalg.matrix_power(step, steps) @ Q0, rtol=1e-13)


def test_heavy_ball_without_momentum_is_gradient_descent():
    np.testing.assert_allclose(
        rules.heavy_ball(nonlinear_gradient, Q0, 0.05, 40, weight_decay=0.1),
        rules.gradient_descent(nonlinear_gradient, Q0, 0.05, 40, weight_decay=0.1),
        rtol=1e-14,
    )


@pytest.mark.parametrize("momentum, dampening, k", [(0.9, 0.0, 0.0), (0.5, 0.3, 0.01), (0.0, 0.0, 0.1)])
def test_heavy_ball_is_the_two_step_recursion(momentum, dampening, k):
    """Eliminating the buffer: q1 = q0 - lr d0, then q_{n+1} = q_n - lr (1 - delta) d_n + beta (q_n - q_{n-1})."""
    lr, steps = 0.03, 25
    path = rules.heavy_ball(nonlinear_gradient, Q0, lr, steps, momentum=momentum, dampening=dampening, weight_decay=k)
    force = lambda q: nonlinear_gradient(q) + k * q  # noqa: E731
    reference = [Q0, Q0 - lr * force(Q0)]
    for _ in range(steps - 1):
        q, previous = reference[-1], reference[-2]
        reference.append(q - lr * (1 - dampening) * force(q) + momentum * (q - previous))
    np.testing.assert_allclose(path, np.array(reference), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum, dampening, k", [(0.9, 0.0, 0.0), (0.9, 0.5, 5e-3), (0.5, 0.1, 0.1)])
def test_heavy_ball_matches_torch_sgd(momentum, dampening, k):
    """The library's heavy-ball rule and torch.optim.SGD give the same trajectory (float64)."""
    lr, steps = 0.02, 60
    path = rules.heavy_ball(nonlinear_gradient, Q0, lr, steps, momentum=momentum, dampening=dampening, weight_decay=k)
    point = Point(Q0)
    optimizer = torch.optim.SGD(point.parameters(), lr=lr, momentum=momentum, dampening=dampening, weight_decay=k)
    torch_path = [Q0]
    for _ in range(steps):
        optimizer.zero_grad()
        nonlinear_loss(point.q).backward()
        optimizer.step()
        torch_path.append(point.q.detach().numpy().copy())
    np.testing.assert_allclose(path, np.array(torch_path), rtol=1e-12, atol=1e-14)


def _torch_sgd_path(dtype: torch.dtype, steps: int = 50) -> np.ndarray:
    """The chapter-1 comparison: torch.optim.SGD (momentum, dampening, weight decay) on the nonlinear loss."""
    point = nn.Module()
    point.q = nn.Parameter(torch.tensor(Q0, dtype=dtype))
    path = rules.torch_sgd_trajectory(
        point, lambda: nonlinear_loss(point.q), 0.02, steps, momentum=0.9, dampening=0.3, weight_decay=0.01
    )
    return np.asarray(path, dtype=np.float64)


def test_float64_exact_passes_float64_and_rejects_float32():
    """FLOAT64_EXACT discriminates precisions: the float64 SGD path meets heavy_ball at round-off, a float32 one not."""
    reference = rules.heavy_ball(nonlinear_gradient, Q0, 0.02, 50, momentum=0.9, dampening=0.3, weight_decay=0.01)

    def deviation(path: np.ndarray) -> float:
        return float(np.abs(path - reference).max() / np.abs(reference).max())

    assert deviation(_torch_sgd_path(torch.float64)) <= FLOAT64_EXACT
    assert deviation(_torch_sgd_path(torch.float32)) > 100 * FLOAT64_EXACT


def test_torch_sgd_trajectory_on_a_network_matches_heavy_ball():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (16,))
    gradient = rules.network_gradient(model, F.cross_entropy, x, y)
    q0 = rules.flat_parameters(model)
    settings = dict(momentum=0.8, dampening=0.2, weight_decay=1e-2)
    expected = rules.heavy_ball(gradient, q0, 0.1, 12, **settings)
    path = rules.torch_sgd_trajectory(model, lambda: F.cross_entropy(model(x), y), 0.1, 12, **settings)
    np.testing.assert_allclose(path, expected, rtol=1e-11, atol=1e-13)


def test_network_gradient_against_autograd_and_finite_differences():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (8,))
    gradient = rules.network_gradient(model, F.cross_entropy, x, y)
    q0 = rules.flat_parameters(model)
    F.cross_entropy(model(x), y).backward()
    autograd = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    np.testing.assert_allclose(gradient(q0), autograd, rtol=1e-12)
    # finite differences of the loss at shifted parameters, evaluated through the gradient's own point
    direction = np.random.default_rng(0).normal(size=q0.size)
    eps = 1e-6

    def loss_at(q: np.ndarray) -> float:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.as_tensor(q), model.parameters())
            return float(F.cross_entropy(model(x), y))

    slope = (loss_at(q0 + eps * direction) - loss_at(q0 - eps * direction)) / (2 * eps)
    assert slope == pytest.approx(gradient(q0) @ direction, rel=1e-7)
    with pytest.raises(ValueError, match="parameters"):
        gradient(q0[:-1])


def test_preconditioned_descent_with_a_constant_metric_is_mirror_descent_with_a_quadratic_h():
    M = np.array([[3.0, 1.0], [1.0, 2.0]])
    pre = rules.preconditioned_gradient_descent(nonlinear_gradient, Q0, 0.05, 30, lambda q: M)
    mirror = rules.mirror_descent(nonlinear_gradient, Q0, 0.05, 30, lambda q: M @ q, lambda z: np.linalg.solve(M, z))
    np.testing.assert_allclose(pre, mirror, rtol=1e-12)


def test_mirror_descent_with_euclidean_h_is_gradient_descent():
    identity = lambda q: q  # noqa: E731
    np.testing.assert_allclose(
        rules.mirror_descent(nonlinear_gradient, Q0, 0.05, 20, identity, identity),
        rules.gradient_descent(nonlinear_gradient, Q0, 0.05, 20),
        rtol=1e-14,
    )


def test_mirror_descent_step_minimises_the_bregman_proximal_objective():
    """With h = sum q log q (negative entropy) the step is exponentiated gradient; check it against the argmin."""
    q, lr = np.array([0.3, 1.2, 0.7]), 0.4
    grad = np.array([1.0, -0.5, 0.25])
    step = rules.mirror_descent(lambda _: grad, q, lr, 1, lambda x: np.log(x) + 1, lambda z: np.exp(z - 1))[1]
    np.testing.assert_allclose(step, q * np.exp(-lr * grad), rtol=1e-13)
    h = lambda x: np.sum(x * np.log(x))  # noqa: E731
    objective = lambda x: grad @ x + (h(x) - h(q) - (np.log(q) + 1) @ (x - q)) / lr  # noqa: E731
    found = minimize(objective, q, bounds=[(1e-9, None)] * 3, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
    np.testing.assert_allclose(found.x, step, rtol=1e-5)


def test_preconditioned_descent_uses_the_metric_at_the_current_point():
    metric = lambda q: np.diag(1.0 / np.abs(q))  # noqa: E731  (Fisher-like metric of negative entropy)
    path = rules.preconditioned_gradient_descent(quadratic_gradient, Q0, 0.1, 3, metric)
    q = Q0.copy()
    for _ in range(3):
        q = q - 0.1 * np.abs(q) * (H @ q)
    np.testing.assert_allclose(path[-1], q, rtol=1e-13)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=0.0), "learning rate"),
        (dict(lr=0.1, momentum=1.0), "momentum"),
        (dict(lr=0.1, momentum=-0.1), "momentum"),
        (dict(lr=0.1, dampening=1.0), "dampening"),
        (dict(lr=0.1, weight_decay=-1e-3), "weight decay"),
        (dict(lr=0.1, steps=-1), "steps"),
        (dict(lr=0.1, steps=2.5), "steps"),
    ],
)
def test_bad_hyperparameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rules.check_hyperparameters(**kwargs)
    steps = kwargs.pop("steps", 3)
    with pytest.raises(ValueError, match=message):
        rules.heavy_ball(quadratic_gradient, Q0, steps=steps, **kwargs)


def test_bad_metric_shape_is_rejected():
    with pytest.raises(ValueError, match="metric"):
        rules.preconditioned_gradient_descent(quadratic_gradient, Q0, 0.1, 1, lambda q: np.eye(3))


def test_largest_curvature_against_the_hessian():
    assert abs(rules.largest_curvature(quadratic_gradient, Q0) - np.linalg.eigvalsh(H).max()) < 1e-6
    path = np.array([[0.8, -0.6], [0.1, 0.4], [-1.2, 1.5]])

    def hessian(q):  # of the nonlinear loss, by hand
        c = np.cosh(q[0] - q[1])
        return np.array([[c + 1, -c], [-c, c + 3 * q[1] ** 2]])

    expected = max(np.abs(np.linalg.eigvalsh(hessian(q))).max() for q in path)
    assert abs(rules.largest_curvature(nonlinear_gradient, path) - expected) < 1e-5 * expected


def test_gradient_of_a_sympy_loss():
    a, b = sp.symbols("a b")
    gradient = rules.gradient_of(sp.cosh(a - b) + b**4 / 4 + a**2 / 2, [a, b])
    np.testing.assert_allclose(gradient(Q0), nonlinear_gradient(Q0), rtol=1e-14)


def test_torch_sgd_iterates_restarts_from_the_same_weights():
    point = Point(Q0)
    iterates = rules.torch_sgd_iterates(point, lambda: nonlinear_loss(point.q), momentum=0.5, weight_decay=0.1)
    first, again = iterates(0.05, 10), iterates(0.05, 10)
    np.testing.assert_array_equal(first, again)
    expected = rules.heavy_ball(nonlinear_gradient, Q0, 0.05, 10, momentum=0.5, weight_decay=0.1)
    np.testing.assert_allclose(first, expected, rtol=1e-12, atol=1e-14)
