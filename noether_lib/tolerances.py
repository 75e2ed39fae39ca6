"""Every tolerance the book asserts, named once, with the reason for its size.

Notebooks and tests import these names; a comparison that fails says which tolerance it broke. The assertion
helpers live in :mod:`noether_lib.checks` (``assert_within`` is re-exported here for old imports).
"""

from __future__ import annotations

from noether_lib.checks import assert_within as assert_within  # re-exported for old imports

__all__ = ["SYMBOLIC_ZERO", "FLOAT64_EXACT", "INTEGRATOR_DRIFT"]

#: Symbolic identities must simplify to exactly zero; this is only used for numeric spot checks
#: of sympy expressions evaluated at random points in float64.
SYMBOLIC_ZERO: float = 1e-12

#: Exact discrete recursions and identities evaluated in float64 (relative error); the values measured are 1e-16 to
#: 1e-11 (round-off accumulated over a run), while the same recursion in float32 misses by about 1e-7, so 1e-10 tells
#: the two precisions apart (``tests/test_rules.py`` checks that a float32 computation fails it).
FLOAT64_EXACT: float = 1e-10

#: A quantity that the exact flow conserves, along a numerical solution of the ODE (SciPy's DOP853 at rtol = atol =
#: 1e-11, as in :func:`noether_lib.kinetic.integrate_motion`): the integrator's own error, measured about 1e-10 over the
#: book's time spans, against a broken conservation law that moves by tens of percent.
INTEGRATOR_DRIFT: float = 1e-8


#: Relative loss change allowed under a finite symmetry action (float64): normalization layers are exactly
#: scale-invariant only without their epsilon (1e-5 against unit-order variances), which bounds this.
SYMMETRY_LOSS_RTOL: float = 1e-4

#: Largest |cosine| between a unit's gradient and its symmetry generator (float64), same epsilon reason.
SYMMETRY_GRADIENT_COSINE: float = 1e-3

#: Per kind, the relative loss change ``verify_symmetries`` allows under a finite group element, in its float64
#: copy with normalization ε set to ``VERIFICATION_EPSILON`` (so scale groups are exact too): round-off. Measured at
#: most 8e-16 over chapter 2's table and the zoo; the controls miss by far more: a random move of the same members
#: 3e-8 to 7e-3, the book's false scale symmetry 6e-4, the models' own ε (what it replaces) 2e-7 to 3e-5.
SYMMETRY_LOSS_RTOLS: dict[str, float] = {"translation": 1e-10, "scale": 1e-10, "rescale": 1e-10}

#: Per kind, the largest |⟨∇f, ξ_u⟩|/(‖∇f‖ ‖ξ_u‖) over units, ∇f the whole model's gradient (float64, ε as above):
#: measured at most 3e-16, against 1.7e-2 for the false scale symmetry and 2.3e-2 for batch norm in eval mode.
SYMMETRY_GRADIENT_COSINES: dict[str, float] = {"translation": 1e-10, "scale": 1e-10, "rescale": 1e-10}

# --- chapter 4: normalization and implicit adaptive optimization ---------------------------------------------------

#: Eq. 17 against SGD on the toy scale-invariant loss once inertia has died out (relative error in r²): the closed
#: form drops the O(m) inertia term and the O(ηk) discretisation; measured 4.9e-3, gradient flow misses by 0.95.
CLOSED_FORM_TOY: float = 1e-2

#: Eq. 17 against a batch-normalised MLP on digits (relative error in r², whole run, β = 0): adds BN's ε, which breaks
#: scale invariance slightly, to the toy's sources of error; measured 4.6e-3, gradient flow misses by 0.67.
CLOSED_FORM_NETWORK: float = 2e-2

#: Measured steady-state r⁴ against r⁴⋆ times the regime's momentum factor on the toy (relative): finite averaging
#: windows over fluctuating norms and the inertia neglected at β = 0.99; measured 3.7e-2, the other regime's factor
#: misses by at least 0.66.
STEADY_STATE_TOY: float = 0.15

#: The momentum factor κ = (r⁴ − initial part)/forcing that a network run implies (Eq. 17 split in two), against its
#: prediction (relative): measured 2.3 % from (1-β)/(1+β) for the mini-batch runs, and 9.2 % from the factor of each
#: run's own measured gradient autocorrelation (all runs; the mini-batch estimate sums many small noisy lags); the
#: controls miss by 67 % (κ = 1 for the mini-batch runs) and by a factor 16 (white noise for the full-batch run).
MOMENTUM_FACTOR: float = 0.2

#: The stationary identity E[U]/E[C] = 2ηk/(1+β) on the batch-normalised MLP (relative, second half of a run of ten
#: memory times): measured 13 %, the norm's residual drift as the loss falls; the control 2ηk (momentum ignored)
#: misses by 54 %.
SPHERICAL_MOTION_STATIONARY: float = 0.3

#: Log-log slope of the adaptive term of r⁴ against η, minus one (Eq. 17 says the term is ∝ η): measured 1.5e-2 on
#: the toy; a second-order term (slope 2, the control) misses by 0.99.
FINITE_LR_SLOPE: float = 5e-2

#: AdaGrad's accumulator (Eq. 17 at k = 0, β = 0) against the measured r² of the network (relative, whole run): Eq. 17
#: drops the η⁴|ĝ|⁴/r⁴ of the exact recursion, plus BN's ε in float32: measured 9.2e-4; gradient flow (a constant norm)
#: misses by 0.59.
RMSPROP_TRAJECTORY: float = 2e-2

#: Loss curves of runs the theory calls equivalent (smoothed over 50 steps, relative to the mean loss), at β = 0.9 and
#: k = 0.03, where the norms shrink several-fold: fixed-norm training with the measured norms and with the
#: noise-corrected online RMSProp measured 1.5 % and 2.7 %; the non-adaptive control (a constant step, the paper's
#: constrained filters) misses by 7.3 %, RMSProp with the paper's weight by 15 %.
LOSS_CURVE_AGREEMENT: float = 0.04

# --- chapter 3: Noether's learning dynamics ---------------------------------------------------------------------

#: Continuous prediction of C under SGD without momentum (relative, per unit, whole run): the exact exponential replaces
#: (1-ηk)² per step, an O((ηk)²n) difference, and the step's forcing is spread in time. Measured 2.2e-5 over the 16
#: runs of chapter 3; gradient flow (the control) misses every scale and rescale unit by at least 5.4e-4.
CONTINUOUS_SGD: float = 1e-4

#: Continuous prediction (the modified equation, Eq. 3, through NLD) of C under SGD with momentum (relative, per
#: unit, whole run): the ODE's inertia smooths the mini-batch forcing over 1/(1-β) steps slightly differently from the
#: discrete momentum buffer. Measured 9.3e-4 (training page) and 4.4e-3 (the kicked bias sum); gradient flow misses
#: by at least 1.8e-2 (scale and rescale units) and 0.99 (the bias sum).
CONTINUOUS_MOMENTUM: float = 1e-2

#: The kinetic part's decay e^{-μt/m} against the measured P_n/P_0 (absolute, relative to the kick):
#: ln β = -2(1-β)/(1+β) + O((1-β)³), measured 1.4e-2 at its largest (β = 0.5); an undamped P_n misses by 0.78.
CHARGE_DECAY_CONTINUUM: float = 2e-2

#: Log-log slope, minus one, of the symmetric recursion's miss against batch norm's ε (1e-3 to 1e-9, MLP + BN,
#: float64): explicit breaking linear in ε, measured 3.7e-3; the control (the recursion with the recorded γₙ, which
#: stays at round-off) misses one by 1.0.
EPSILON_SLOPE: float = 0.1

#: Log-log slope of the drift of a gradient-flow conserved quantity against η, minus one (the drift is
#: η∫|g|²dt, ∝ η at fixed training time, up to O(η) changes of the trajectory): measured 0.078 and 0.061; a
#: second-order drift (slope 2, the control) misses by 0.9.
DRIFT_SLOPE: float = 0.1

# --- chapter 2: the scaled network and its equivalent run ----------------------------------------------------------
#: SGD on a network whose scale-invariant filters are multiplied by λ against SGD on the unscaled network with
#: (η/λ², kλ²) on those filters (relative, every step's loss, float64, batch norm's ε = 1e-20): an identity, so
#: round-off; measured 4e-16 over chapter 2's epoch (8e-15 over eight), while the control (the unscaled network
#: with the original η, k) misses by about 1.
SCALE_EQUIVALENCE_FLOAT64: float = 1e-8

#: The same equivalence on the book's float32 set-up with batch norm's ε = 1e-5, which breaks the scale symmetry
#: slightly (relative difference of the last epoch's mean loss): measured 4e-3 after six epochs (3e-4 after eight);
#: the control misses by about 0.9.
SCALE_EQUIVALENCE_FLOAT32: float = 1e-2

#: Relative change of the mean squared filter norm r² of a batch-normalised network trained near gradient flow (no
#: momentum, no weight decay, a fifth of chapter 2's learning rate, two epochs): the kinetic term's O(η) drive, measured
#: 3e-4 there, against 0.5 for the same network at the chapter's learning rate with momentum.
GRADIENT_FLOW_NORM_DRIFT: float = 2e-2

# --- chapter 1: learning dynamics as Lagrangian mechanics -----------------------------------------------------------

#: Largest distance to the iterates of the modified equation over that of gradient flow, on the particle-picture
#: figure: at its large steps (η·curvature up to about 0.5) the measured ratios are about 0.4 (GD) and 0.06 (heavy ball).
MODIFIED_OVER_GRADIENT_FLOW: float = 0.5

#: |fitted log-log slope - 1| of gradient flow's global error against η: pre-asymptotic O(η²) terms bend the fit;
#: measured at most 0.034 over the book's sweeps (heavy ball on the MLP), so 0.1 leaves a margin of three.
ORDER_GRADIENT_FLOW: float = 0.1

#: |fitted log-log slope - 2| of the modified equation's global error against η, same sweeps: measured at most
#: 0.061 (heavy ball on the MLP) and 0.05 (heavy ball on the quadratic); O(η³) terms bend the fit.
ORDER_MODIFIED_EQUATION: float = 0.15

#: Smallest relative effect a *broken* symmetry must show (a charge's swing, a gap between training runs): far
#: above every tolerance of a symmetry that holds, so the two cases cannot be confused.
BROKEN_SYMMETRY_MIN_EFFECT: float = 5e-2

#: Second-order finite-difference derivative of a Noether charge (time step 1e-2) against its predicted rate,
#: relative to the largest rate: the O(dt^2) truncation error.
CHARGE_RATE_FINITE_DIFFERENCE: float = 1e-4

# --- chapter 5: deep-network experiments --------------------------------------------------------------------------

#: A data-parallel run (DDP, 2 processes) against one process on the same micro-batches, float32, relative: the
#: all-reduce averages gradients in another order than accumulation does, which changes the last bits.
DDP_REPRODUCTION: float = 1e-4

#: Exact discrete recursion of each charge against the charges recorded in a batch-normalised VGG (relative, float32
#: network): the recursion takes the gradient orthogonal to the generator, which batch norm's ε breaks at ~1e-4.
DEEP_EXACT: float = 2e-3

#: Modified-equation (continuous) prediction of the charges of the VGG trained with momentum (relative): the O(η)
#: target the chapter-3 predictions meet on small networks.
DEEP_CONTINUOUS: float = 1e-2

#: Which momentum regime the VGG's filter norms are in: |ln(measured/predicted)| for the growth term of Eq. 17 times
#: the regime's factor; the two regimes differ by (1+β)/(1-β) = 19 at β = 0.9, so a factor 2 separates them.
DEEP_REGIME_LOG: float = 0.6931471805599453

#: Confidence level of the Welch t intervals of chapter 5's comparisons over seeds (a difference is established
#: when its interval excludes zero; equivalence uses the two one-sided tests at 1 - this).
CONFIDENCE: float = 0.95

#: Equivalence margin of claim 18 ("almost identical" at a small learning rate): 5 accuracy points (and 5 % of the
#: test loss). The 359 digits test images alone give a difference of two accuracies a sampling error of about 1.4
#: points, so a 95 % equivalence test cannot establish a margin below about 2.5 points with any number of seeds;
#: the free-minus-constrained gap at the large learning rate measures about 30 points, six times this margin.
EQUIVALENCE_MARGIN: float = 0.05

#: With k = 0 the squared norm may only grow (AdaGrad-like): largest relative decrease of r⁴ per step, allowing for
#: float32 parameters and BN's ε, which give the gradient a radial part.
NORM_MONOTONE: float = 1e-5

#: RMSProp's √G with the white-noise factor (1-β)/(1+β) against r² of mini-batch SGD at β = 0.9, k = 0.03 (relative,
#: worst over the run): measured 0.33, reached in the early transient where Eq. 17 neglects inertia (the forcing
#: itself is white to about 2 %, see MOMENTUM_FACTOR); with the paper's weight the accumulator misses by 4.8.
RMSPROP_NOISE_CORRECTED: float = 0.5

#: Least-action appendix: the linear term of S(eps) - S(0) relative to its curvature around a solution (the fit, or
#: finite differences along several bumps): the trapezoidal discretisation leaves 2e-8 to 6e-7; the controls (friction
#: of the wrong sign, the undamped path) miss by 4e-2 to 1.
ACTION_STATIONARITY: float = 1e-4

# --- chapter 6: beyond the paper (adaptive optimizers, explicit breaking, schedules, implicit regularization) ----

#: Identities of chapter 6 evaluated in float64 (relative): the charge bookkeeping C_{n+1} = C_n + 2P_n + U_n
#: (measured ≤ 4e-16), the metric charge of Adam without momentum (≤ 3e-16), heavy ball's angular momentum from rest
#: and its β^n law (≤ 1e-12 over 60 steps), Li & Arora's equivalence with exact invariance (≤ 4e-13 over 200 steps).
#: Their controls miss by 1e-5 (batch norm's ε) to 1.
CH6_ROUND_OFF: float = 1e-10

#: The ε-breaking formula ε/(σ²+ε)·γ∂f/∂γ against autograd's ⟨q, ∇f⟩ (relative to the largest term): the measured
#: term is a cancelling sum of O(|q||g|) products, so round-off leaves ~1e-11; the unbiased variance misses by 1/N.
EPSILON_BREAKING_EXACT: float = 1e-9

#: |fitted log-log slope - predicted| of the ε-breaking term against ε (1) and the filter scale (-2): the corrections
#: are O(ε/σ²) ≤ 1e-2 on the measured ranges; the wrong laws (ε/σ, ε⁰) miss by 1.
EPSILON_SCALING_SLOPE: float = 5e-2

#: Deviation from Li & Arora's equivalence when both momentum runs start from empty buffers, against its first-order
#: prediction ηkβ/(1-β)² (relative, ηk = 1e-8, full batch): measured 1e-3; the first step's mismatch ηkβ/(1-β)
#: without momentum's accumulation misses by 1/(1-β) - 1 = 9.
LI_ARORA_FIRST_ORDER: float = 5e-2

#: AdamW's equilibrium squared filter norm from the stationary bookkeeping, with the metric term, against the measured
#: one (relative, last 300 of 700 steps, β₁ = 0 and 0.9): the slowly drifting norm leaves 0.4-1.6 %; dropping the
#: metric term misses by 11-21 %.
ADAMW_EQUILIBRIUM: float = 8e-2

#: |exponent + 1| of Adam's first angular step against a filter scale factor c (η/r: exponent -1), Adam's ε and
#: the arccos leave ~1e-5; SGD's η/r² misses by 1.
EFFECTIVE_STEP_EXPONENT: float = 5e-2
