"""Exact discrete recursions of the charges: the discrete counterpart of Noether's learning dynamics (Eq. 12).

* :func:`charge_identity`: :math:`C_{n+1}=C_n+(1+a)P_n+aU_n`, true for *every* update rule (an identity of the
  recorded quantities, which checks a record, not a theory);
* :func:`exact_charge`: :class:`torch.optim.SGD` (heavy ball or Nesterov, dampening, per-member weight decay, any
  learning-rate and momentum sequence), the recursion of the projected update closing the identity;
* :func:`sgd_exact_charge`: plain SGD in terms of the loss gradients.

All take the per-step quantities that :class:`noether_lib.tracking.NoetherTracker` records (arrays of shape
``(steps, units)``) and return :math:`C_0,\\dots,C_N` (shape ``(steps + 1, units)``, float64).
"""

from __future__ import annotations

import numpy as np

from noether_lib.noether.coefficients import (
    Kind,
    as_steps,
    check_kind,
    check_rates,
    check_rule,
    initial,
    per_step,
)

__all__ = ["charge_identity", "sgd_exact_charge", "exact_charge"]


def charge_identity(
    kind: Kind, initial_charge: np.ndarray, projected_update: np.ndarray, update_signed_sq: np.ndarray | None = None
) -> np.ndarray:
    """:math:`C_n=C_0+\\sum_{j<n}\\big((1+a)P_j+aU_j\\big)`, :math:`a=1` for scale and rescale, 0 for translation.

    An identity, not a prediction: :math:`\\langle q+u,J(q+u)\\rangle=\\langle q,Jq\\rangle+2\\langle Jq,u\\rangle
    +\\langle u,Ju\\rangle` for any update :math:`u` (SGD, Adam, a projection, rounding), so a recorded table that
    misses it was recorded wrongly (or the weights were changed between optimizer steps).
    """
    check_kind(kind)
    c0 = initial(initial_charge)
    p = np.asarray(projected_update, dtype=np.float64)
    steps = p.shape[0] if p.ndim else 0
    p = as_steps(p, steps, len(c0), "projected_update")
    if kind == "translation":
        increments = p
    else:
        if update_signed_sq is None:
            raise ValueError(f"the {kind} identity needs update_signed_sq")
        increments = 2 * p + as_steps(update_signed_sq, steps, len(c0), "update_signed_sq")
    return np.vstack([c0, c0 + np.cumsum(increments, axis=0)])


def sgd_exact_charge(
    kind: Kind,
    initial_charge: np.ndarray,
    lr: np.ndarray,
    *,
    grad_signed_sq: np.ndarray | None = None,
    weight_decay: float = 0.0,
) -> np.ndarray:
    """Exact recursion of the charge under SGD without momentum, in terms of the loss gradients :math:`g_n`.

    Scale and rescale: :math:`C_{n+1}=(1-\\eta_nk)^2C_n+\\eta_n^2\\langle g_n,Jg_n\\rangle` (``grad_signed_sq``);
    translation: :math:`C_{n+1}=(1-\\eta_nk)C_n`. Exact because the gradient is orthogonal to the generator
    (:math:`\\langle g,\\xi\\rangle=0`, the gradient-flow form of Eq. 13) and :math:`J^2=1`.
    """
    check_kind(kind)
    lr = check_rates(lr)
    check_rule(lr, np.zeros_like(lr), np.zeros_like(lr), weight_decay)
    c0 = initial(initial_charge)
    steps = len(lr)
    decay = 1.0 - lr * weight_decay
    out = np.empty((steps + 1, len(c0)))
    out[0] = c0
    if kind == "translation":
        out[1:] = c0 * np.cumprod(decay)[:, None]
        return out
    if grad_signed_sq is None:
        raise ValueError(f"the {kind} recursion needs grad_signed_sq")
    g = as_steps(grad_signed_sq, steps, len(c0), "grad_signed_sq")
    for n in range(steps):
        out[n + 1] = decay[n] ** 2 * out[n] + lr[n] ** 2 * g[n]
    return out


def exact_charge(
    kind: Kind,
    initial_charge: np.ndarray,
    lr: np.ndarray,
    *,
    update_signed_sq: np.ndarray | None = None,
    first_projected_update: np.ndarray | None = None,
    momentum: float | np.ndarray = 0.0,
    dampening: float | np.ndarray = 0.0,
    weight_decay: float = 0.0,
    grad_proj: np.ndarray | None = None,
    decay_charge: np.ndarray | None = None,
    nesterov: bool = False,
    update_momentum: np.ndarray | None = None,
) -> np.ndarray:
    """Exact recursion of the charge under :class:`torch.optim.SGD` (momentum, dampening, weight decay, Nesterov).

    PyTorch's buffer :math:`b_n=\\beta_nb_{n-1}+(1-\\delta)(g_n+k q_n)` (:math:`b_0` undampened) moves the weights by
    :math:`u_n=-\\eta_nb_n` (heavy ball) or :math:`u_n=-\\eta_n(g_n+kq_n+\\beta_nb_n)` (Nesterov). With the projected
    update (the discrete Noether charge) :math:`P_n=\\langle\\xi(q_n),u_n\\rangle`, :math:`U_n=\\langle u_n,Ju_n\\rangle`
    (``update_signed_sq``), the decay term :math:`K_n=\\sum_m k_m\\langle q_m,J_mq_m\\rangle` (``decay_charge``;
    :math:`kC_n` by default, per member when members have their own weight decay) and :math:`\\gamma_n=\\langle\\xi(q_n),
    g_n\\rangle` (``grad_proj``; zero when the symmetry holds, the default), the buffer's projection
    :math:`W_n=\\langle\\xi(q_n),b_n\\rangle` obeys

    .. math:: W_n=\\beta_n\\big(W_{n-1}+aR_{n-1}\\big)+(1-\\delta)(K_n+\\gamma_n),\\qquad
              C_{n+1}=C_n+(1+a)P_n+aU_n,

    with :math:`P_n=-\\eta_nW_n` (heavy ball; then :math:`R_n=\\langle Ju_n,b_n\\rangle=-U_n/\\eta_n`, which gives
    :math:`P_n=\\beta_n\\frac{\\eta_n}{\\eta_{n-1}}(P_{n-1}+aU_{n-1})-\\eta_n(1-\\delta)(K_n+\\gamma_n)`) or
    :math:`P_n=-\\eta_n(K_n+\\gamma_n+\\beta_nW_n)` (Nesterov; :math:`R_n` is the tracker's ``update_momentum``), and
    :math:`a=1` for scale and rescale, 0 for translation. ``lr`` and ``momentum`` may change at every step (any
    scheduler). :math:`P_0` defaults to PyTorch's first step from rest; pass the recorded one when the tracker was
    attached to a run in progress.
    """
    check_kind(kind)
    lr = check_rates(lr)
    steps = len(lr)
    beta = per_step(momentum, steps, "momentum")
    delta = np.where(beta > 0, per_step(dampening, steps, "dampening"), 0.0)  # PyTorch ignores it without momentum
    check_rule(lr, beta, delta, weight_decay)
    if nesterov and (np.any(beta <= 0) or np.any(delta != 0)):
        raise ValueError("Nesterov momentum needs momentum > 0 and zero dampening (as torch.optim.SGD requires)")
    c0 = initial(initial_charge)
    units = len(c0)
    quadratic = kind != "translation"
    if quadratic and update_signed_sq is None:
        raise ValueError(f"the {kind} recursion needs update_signed_sq")
    u = np.zeros((steps, units))
    if update_signed_sq is not None and quadratic:
        u = as_steps(update_signed_sq, steps, units, "update_signed_sq")
    gamma = np.zeros((steps, units)) if grad_proj is None else as_steps(grad_proj, steps, units, "grad_proj")
    decay = None if decay_charge is None else as_steps(decay_charge, steps, units, "decay_charge")
    if nesterov and quadratic:
        if update_momentum is None:
            raise ValueError("the Nesterov recursion needs update_momentum (recorded by the tracker)")
        r = as_steps(update_momentum, steps, units, "update_momentum")
    else:
        r = -u / lr[:, None]
    a = 1.0 if quadratic else 0.0
    out = np.empty((steps + 1, units))
    out[0] = c0
    w = np.zeros(units)
    for n in range(steps):
        drive = (weight_decay * out[n] if decay is None else decay[n]) + gamma[n]
        if n == 0:
            if first_projected_update is None:
                w = drive.copy()
            else:
                p0 = np.broadcast_to(np.asarray(first_projected_update, dtype=np.float64), (units,))
                w = (-p0 / lr[0] - drive) / beta[0] if nesterov else -p0 / lr[0]
        else:
            w = beta[n] * (w + a * r[n - 1]) + (1 - delta[n]) * drive
        p = -lr[n] * (drive + beta[n] * w) if nesterov else -lr[n] * w
        out[n + 1] = out[n] + (1 + a) * p + a * u[n]
    return out
