"""Discrete learning rules, the update equations the paper starts from (Sec. 1).

For toy problems the rules are plain NumPy functions of a gradient field ``gradient(q) -> g``; each returns the
whole trajectory ``q_0, q_1, ..., q_n`` as an array of shape ``(steps + 1, *q0.shape)``. For networks the book
uses :class:`torch.optim.SGD` itself (:func:`torch_sgd_trajectory`); a test shows that it and :func:`heavy_ball`
produce the same iterates.

* Gradient descent: :math:`q_{n+1}=q_n-\\eta\\,(\\nabla f(q_n)+kq_n)`.
* Heavy-ball momentum in PyTorch's convention, with weight decay :math:`k` and dampening :math:`\\delta`:
  :math:`d_n=\\nabla f(q_n)+kq_n`, :math:`v_{n+1}=\\beta v_n+(1-\\delta)d_n` (the first step is :math:`v_1=d_0`,
  undampened, as in PyTorch), :math:`q_{n+1}=q_n-\\eta v_{n+1}`. Eliminating :math:`v` gives
  :math:`q_{n+1}=q_n-\\eta(1-\\delta)d_n+\\beta(q_n-q_{n-1})` for :math:`n\\ge1`.
* Preconditioned gradient descent with a metric :math:`G(q)`: :math:`q_{n+1}=q_n-\\eta\\,G(q_n)^{-1}\\nabla f(q_n)`.
* Mirror descent with a distance-generating function :math:`h`:
  :math:`q_{n+1}=\\arg\\min_{q'}\\langle\\nabla f(q_n),q'\\rangle+\\eta^{-1}D_h(q',q_n)`, i.e.
  :math:`\\nabla h(q_{n+1})=\\nabla h(q_n)-\\eta\\nabla f(q_n)`, with the Bregman divergence
  :math:`D_h(y,x)=h(y)-h(x)-\\langle\\nabla h(x),y-x\\rangle`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy as sp
import torch
from torch import nn

from noether_lib.learning_rule import check_hyperparameters

__all__ = [
    "Gradient",
    "check_hyperparameters",
    "gradient_descent",
    "heavy_ball",
    "preconditioned_gradient_descent",
    "mirror_descent",
    "flat_parameters",
    "network_gradient",
    "torch_sgd_trajectory",
    "largest_curvature",
    "gradient_of",
    "torch_sgd_iterates",
]

#: The type of a gradient field, which maps parameters (a float64 array) to the gradient of the loss there.
Gradient = Callable[[np.ndarray], np.ndarray]


def _trajectory(q0: np.ndarray, steps: int) -> np.ndarray:
    q0 = np.asarray(q0, dtype=np.float64)
    path = np.empty((steps + 1, *q0.shape))
    path[0] = q0
    return path


def gradient_descent(
    gradient: Gradient, q0: np.ndarray, lr: float, steps: int, *, weight_decay: float = 0.0
) -> np.ndarray:
    """Gradient descent :math:`q_{n+1}=q_n-\\eta(\\nabla f(q_n)+kq_n)` (Sec. 1 of the paper); returns all iterates."""
    check_hyperparameters(lr, weight_decay=weight_decay, steps=steps)
    path = _trajectory(q0, steps)
    for n in range(steps):
        path[n + 1] = path[n] - lr * (gradient(path[n]) + weight_decay * path[n])
    return path


def heavy_ball(
    gradient: Gradient,
    q0: np.ndarray,
    lr: float,
    steps: int,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
) -> np.ndarray:
    """Heavy-ball momentum in PyTorch's convention (``torch.optim.SGD`` without Nesterov); returns all iterates.

    :math:`d_n=\\nabla f(q_n)+kq_n`; :math:`v_1=d_0` and :math:`v_{n+1}=\\beta v_n+(1-\\delta)d_n` after that;
    :math:`q_{n+1}=q_n-\\eta v_{n+1}`. With :math:`\\delta=0` this is the rule behind Eq. 3 of the paper,
    :math:`q_{n+1}=q_n-\\eta d_n+\\beta(q_n-q_{n-1})`.
    """
    check_hyperparameters(lr, momentum, dampening, weight_decay, steps)
    path = _trajectory(q0, steps)
    buffer = None
    for n in range(steps):
        d = gradient(path[n]) + weight_decay * path[n]
        buffer = d.copy() if buffer is None else momentum * buffer + (1.0 - dampening) * d
        path[n + 1] = path[n] - lr * buffer
    return path


def preconditioned_gradient_descent(
    gradient: Gradient, q0: np.ndarray, lr: float, steps: int, metric: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Steepest descent in the metric :math:`G(q)`: :math:`q_{n+1}=q_n-\\eta\\,G(q_n)^{-1}\\nabla f(q_n)`.

    With :math:`G=\\nabla^2h` this is the first-order form of mirror descent and, with the Fisher matrix, the natural
    gradient of :cite:t:`amari1998natural`. ``metric(q)`` must return a symmetric positive-definite matrix.
    """
    check_hyperparameters(lr, steps=steps)
    path = _trajectory(q0, steps)
    for n in range(steps):
        G = np.asarray(metric(path[n]), dtype=np.float64)
        if G.shape != (path[n].size, path[n].size):
            raise ValueError(f"the metric must be a {path[n].size}x{path[n].size} matrix, got shape {G.shape}")
        path[n + 1] = path[n] - lr * np.linalg.solve(G, gradient(path[n]).ravel()).reshape(path[n].shape)
    return path


def mirror_descent(
    gradient: Gradient,
    q0: np.ndarray,
    lr: float,
    steps: int,
    mirror_map: Callable[[np.ndarray], np.ndarray],
    inverse_mirror_map: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Mirror descent :math:`\\nabla h(q_{n+1})=\\nabla h(q_n)-\\eta\\nabla f(q_n)` (Sec. 1, "Non-Euclidean geometry").

    This is the minimiser of :math:`\\langle\\nabla f(q_n),q'\\rangle+\\eta^{-1}D_h(q',q_n)` for a strictly convex
    :math:`h`. Args ``mirror_map`` and ``inverse_mirror_map`` are :math:`\\nabla h` and its inverse
    :math:`(\\nabla h)^{-1}=\\nabla h^*`; :math:`h=\\tfrac12|q|^2` (both the identity) gives gradient descent.
    """
    check_hyperparameters(lr, steps=steps)
    path = _trajectory(q0, steps)
    for n in range(steps):
        path[n + 1] = inverse_mirror_map(mirror_map(path[n]) - lr * gradient(path[n]))
    return path


def flat_parameters(model: nn.Module) -> np.ndarray:
    """All parameters of ``model`` as one float64 vector, in ``model.parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(torch.float64).numpy().copy()


def network_gradient(
    model: nn.Module,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> Gradient:
    """The full-batch gradient field of a network's loss over its flattened parameters (for the integrators).

    Args:
        model: the network; it is evaluated functionally at the requested parameters and never modified.
        loss: ``loss(outputs, targets)``, e.g. :func:`torch.nn.functional.cross_entropy`.
        inputs, targets: the full batch.

    Returns:
        ``gradient(q)`` for a flat vector ``q`` laid out as :func:`flat_parameters`, computed in the model's dtype
        (use a float64 model for integrating with tight tolerances).
    """
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    dtype = next(model.parameters()).dtype

    def gradient(q: np.ndarray) -> np.ndarray:
        flat = torch.as_tensor(np.asarray(q), dtype=dtype)
        if flat.numel() != sum(sizes):
            raise ValueError(f"expected {sum(sizes)} parameters, got {flat.numel()}")
        pieces = [piece.reshape(shape).requires_grad_(True) for piece, shape in zip(flat.split(sizes), shapes)]
        outputs = torch.func.functional_call(model, dict(zip(names, pieces)), (inputs,))
        grads = torch.autograd.grad(loss(outputs, targets), pieces)
        return torch.cat([g.reshape(-1) for g in grads]).to(torch.float64).numpy()

    return gradient


def torch_sgd_trajectory(
    model: nn.Module,
    closure: Callable[[], torch.Tensor],
    lr: float,
    steps: int,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
) -> np.ndarray:
    """Train ``model`` in place with :class:`torch.optim.SGD` and return its flattened parameters after every step.

    Args:
        model: the network (its parameters are updated).
        closure: computes the (full-batch) loss of ``model``; the gradient is taken by back-propagation.
        lr, momentum, dampening, weight_decay: :class:`torch.optim.SGD`'s hyperparameters (:math:`\\eta,\\beta,
            \\delta,k`).
        steps: number of updates.

    Returns:
        An array of shape ``(steps + 1, number_of_parameters)``: :math:`q_0,\\dots,q_n`, as :func:`heavy_ball` does.
    """
    check_hyperparameters(lr, momentum, dampening, weight_decay, steps)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
    )
    path = np.empty((steps + 1, sum(p.numel() for p in model.parameters())))
    path[0] = flat_parameters(model)
    for n in range(steps):
        optimizer.zero_grad(set_to_none=True)
        closure().backward()
        optimizer.step()
        path[n + 1] = flat_parameters(model)
    return path


def largest_curvature(
    gradient: Gradient, points: np.ndarray, *, iterations: int = 50, step: float = 1e-5, seed: int = 0
) -> float:
    """The largest Hessian eigenvalue (in absolute value) of the loss over ``points`` (a path, one point per row).

    Power iteration on Hessian-vector products taken by central differences of ``gradient``,
    :math:`Hv\\approx(g(q+\\epsilon v)-g(q-\\epsilon v))/2\\epsilon`: only gradients are needed, so it works for a
    network's gradient field (:func:`network_gradient`) as for a toy loss. Returns the largest over the points.
    """
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    rng = np.random.default_rng(seed)
    largest = 0.0
    for q in points:
        v = rng.normal(size=q.shape)
        v /= np.linalg.norm(v)
        value = 0.0
        for _ in range(iterations):
            hv = (gradient(q + step * v) - gradient(q - step * v)) / (2 * step)
            value = float(np.linalg.norm(hv))
            if value == 0.0:
                break
            v = hv / value
        largest = max(largest, value)
    return largest


def gradient_of(loss: sp.Expr, variables: Sequence[sp.Symbol]) -> Gradient:
    """The gradient field of a sympy ``loss`` in ``variables``, as a :data:`Gradient` (float64 arrays in and out)."""
    variables = list(variables)
    components = sp.lambdify([variables], [sp.diff(loss, x) for x in variables], "numpy")

    def gradient(q: np.ndarray) -> np.ndarray:
        return np.asarray(components(np.asarray(q, dtype=np.float64)), dtype=np.float64)

    return gradient


def torch_sgd_iterates(
    model: nn.Module,
    closure: Callable[[], torch.Tensor],
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
) -> Callable[[float, int], np.ndarray]:
    """``iterates(lr, n)`` for a sweep of learning rates (e.g. :func:`noether_lib.modified_equation.global_errors`):
    each call restores ``model``'s current weights and returns :func:`torch_sgd_trajectory` from them."""
    initial = {key: value.detach().clone() for key, value in model.state_dict().items()}

    def iterates(lr: float, steps: int) -> np.ndarray:
        model.load_state_dict(initial)
        return torch_sgd_trajectory(
            model, closure, lr, steps, momentum=momentum, dampening=dampening, weight_decay=weight_decay
        )

    return iterates
