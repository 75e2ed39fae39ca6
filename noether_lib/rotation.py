"""Rotation symmetry and the metric: heavy ball keeps angular momentum, Adam creates it.

On a rotation-invariant loss :math:`f(q)=\\phi(|q|^2)` the gradient is parallel to :math:`q`. The discrete angular
momentum :math:`L_n=q_{n-1}\\wedge q_n` (the antisymmetric matrix :math:`q_{n-1}q_n^\\top-q_nq_{n-1}^\\top`, the
rotation charge :math:`q\\wedge\\Delta q` of Eq. 8 for the Euclidean kinetic energy) obeys, for heavy ball with
weight decay, exactly :math:`L_{n+1}=\\beta L_n`: it decays like the translation charge and stays zero when it
starts at zero. Adam divides each coordinate by its own :math:`\\sqrt{\\hat v_i}`, a diagonal metric that is not
rotation-invariant (Eq. 7): its update leaves the line of :math:`q` and creates angular momentum from rest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["angular_momentum", "relative_angular_momentum", "radial_loss", "train_on_loss"]


def angular_momentum(trajectory: np.ndarray) -> np.ndarray:
    """:math:`|L_n|` with :math:`L_n=q_{n-1}\\wedge q_n` (Frobenius norm over :math:`\\sqrt2`), for
    :math:`n=1,\\dots,N`; ``trajectory`` has shape ``(N + 1, d)``."""
    a, b = trajectory[:-1], trajectory[1:]
    wedge = a[:, :, None] * b[:, None, :] - b[:, :, None] * a[:, None, :]
    return np.linalg.norm(wedge, axis=(1, 2)) / np.sqrt(2)


def relative_angular_momentum(trajectory: np.ndarray) -> np.ndarray:
    """:math:`|L_n|/(|q_{n-1}||q_n-q_{n-1}|)`: the sine of the angle between the position and the step."""
    steps = np.linalg.norm(np.diff(trajectory, axis=0), axis=1)
    return angular_momentum(trajectory) / (np.linalg.norm(trajectory[:-1], axis=1) * steps)


def radial_loss(q: torch.Tensor, anisotropy: float = 0.0) -> torch.Tensor:
    """:math:`\\tfrac14(|q|^2-1)^2`, rotation-invariant; ``anisotropy`` :math:`a` adds :math:`\\tfrac a2q_1^2`, which
    breaks the symmetry (the control)."""
    return (q.pow(2).sum() - 1) ** 2 / 4 + anisotropy * q[0] ** 2 / 2


def train_on_loss(
    optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    q0: np.ndarray,
    steps: int,
    *,
    loss: Callable[[torch.Tensor], torch.Tensor] = radial_loss,
    initial_buffer: np.ndarray | None = None,
) -> np.ndarray:
    """Train a float64 parameter from ``q0`` with ``optimizer([param])`` (any :mod:`torch.optim` rule) for ``steps``
    steps; returns the trajectory, shape ``(steps + 1, d)``. ``initial_buffer`` presets SGD's momentum buffer
    (an initial velocity :math:`-\\eta\\beta v_0`)."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    q = torch.nn.Parameter(torch.as_tensor(np.asarray(q0, dtype=np.float64)).clone())
    opt = optimizer([q])
    if initial_buffer is not None:
        if not isinstance(opt, torch.optim.SGD):
            raise ValueError("initial_buffer presets the momentum buffer of torch.optim.SGD only")
        opt.state[q]["momentum_buffer"] = torch.as_tensor(np.asarray(initial_buffer, dtype=np.float64)).clone()
    path = [q.detach().numpy().copy()]
    for _ in range(steps):
        opt.zero_grad()
        loss(q).backward()
        opt.step()
        path.append(q.detach().numpy().copy())
    return np.stack(path)
