"""Verification that neither accepts false groups nor rejects true ones: analytically flat units, dropout, the user's
loss, batch norm's epsilon, initialisation independence, the joint loss test, and the chapter-2 refusal example."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_symmetry_discovery import batch
from torch import nn

from noether_lib import models
from noether_lib.symmetry import (
    Member,
    SymmetryError,
    SymmetryGroup,
    check_symmetry,
    find_symmetries,
    orbit_loss_changes,
    verify_symmetries,
)
from noether_lib.symmetry.verification import VERIFICATION_EPSILON
from noether_lib.tolerances import SYMMETRY_GRADIENT_COSINES, SYMMETRY_LOSS_RTOL, SYMMETRY_LOSS_RTOLS
from noether_lib.zoo import small_mobilenet_v2, wide_resnet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_unit_with_an_analytically_zero_gradient_passes():
    """A conv bias feeding batch norm has gradient zero up to rounding: its own cosine is noise, the model's is not."""
    torch.manual_seed(0)
    model = models.VGG("tiny", in_channels=1, num_classes=10)
    x, y = batch((8, 1, 8, 8))
    group = next(g for g in find_symmetries(model, x) if g.name == "features.0.bias (normalized away)")
    twin = model.double().train()
    loss = F.cross_entropy(twin(x.double()), y)
    grad = torch.autograd.grad(loss, twin.features[0].bias)[0]
    own = float(grad.abs().max() / grad.abs().max().clamp_min(1e-300))  # the unit's own normalization: O(1)
    result = check_symmetry(model, group, x, y)
    print(
        f"bias before batch norm: |gradient| {float(grad.abs().max()):.1e}, own cosine {own:.1e}, "
        f"model cosine {result.gradient_cosine:.1e}"
    )
    assert float(grad.abs().max()) < 1e-15 and own > SYMMETRY_GRADIENT_COSINES["translation"]
    assert result.holds and result.gradient_cosine <= SYMMETRY_GRADIENT_COSINES["translation"]


def test_dropout_models_verify_deterministically():
    torch.manual_seed(0)
    model = wide_resnet(drop=0.5).train()  # functional dropout with training=self.training
    x, y = batch((4, 3, 8, 8))
    groups = find_symmetries(model, x)
    first = verify_symmetries(model, groups, x, y)
    second = verify_symmetries(model, groups, x, y)
    assert first["holds"].all() and first.equals(second)


def test_verification_uses_the_users_loss():
    torch.manual_seed(0)
    model = models.MLP(6, [5], 3)
    x, y = batch((8, 6), 3)
    groups = find_symmetries(model, x)
    translations = [g for g in groups if g.kind == "translation"]
    assert verify_symmetries(model, translations, x, y)["holds"].all()
    targets = F.one_hot(y, 3).double()
    with pytest.raises(SymmetryError, match="do not hold"):
        verify_symmetries(model, translations, x, targets, loss_fn=F.mse_loss)
    rescale = [g for g in groups if g.kind == "rescale"]
    assert verify_symmetries(model, rescale, x, targets, loss_fn=F.mse_loss)["holds"].all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_norm_verdicts_do_not_depend_on_the_initialisation(seed):
    """With the model's ε the scale groups of a MobileNetV2 miss round-off; with ε ≈ 0 in the copy they meet it."""
    torch.manual_seed(seed)
    model = small_mobilenet_v2()
    x, y = batch((4, 3, 16, 16), seed=seed)
    table = verify_symmetries(model, [g for g in find_symmetries(model, x) if g.kind == "scale"], x, y)
    share = table["epsilon_loss_change"].max()
    print(f"seed {seed}: loss change {table['loss_change'].max():.1e} with ε ≈ 0, {share:.1e} with the model's ε")
    assert table["holds"].all() and table["loss_change"].max() <= SYMMETRY_LOSS_RTOLS["scale"] < share


def test_the_joint_loss_test_isolates_a_false_group_among_true_ones():
    torch.manual_seed(0)
    model = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False)
    x, y = batch((8, 1, 8, 8))
    groups = list(find_symmetries(model, x))
    wrong = SymmetryGroup("scale", "features.0 without a norm", (Member("features.0.weight", 0),), 16)
    groups.insert(2, wrong)
    joint = verify_symmetries(model, groups, x, y, raise_on_failure=False)
    alone = verify_symmetries(model, groups, x, y, raise_on_failure=False, joint=False)
    assert joint["holds"].tolist() == alone["holds"].tolist() == [g is not wrong for g in groups]
    assert joint["loss_change"][2] == alone["loss_change"][2]


def test_the_chapter_2_refusal_fails_the_loss_test_on_its_own():
    """The book's false scale symmetry passed the old loss tolerance at initialisation; it fails the per-kind one."""
    torch.manual_seed(0)
    model = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False)
    x, y = batch((64, 1, 8, 8))
    wrong = SymmetryGroup("scale", "no norm", (Member("features.0.weight", 0), Member("features.0.bias", 0)), 16)
    at_init = check_symmetry(model, wrong, x, y, generic=False, cosine_tol=1.0, raise_on_failure=False)
    generic = check_symmetry(model, wrong, x, y, cosine_tol=1.0, raise_on_failure=False)
    print(
        f"false scale: loss change {at_init.loss_change:.1e} at initialisation, {generic.loss_change:.1e} at a "
        f"generic point; per-kind tolerance {SYMMETRY_LOSS_RTOLS['scale']:.0e}, old {SYMMETRY_LOSS_RTOL:.0e}"
    )
    assert not at_init.holds and not generic.holds
    assert at_init.loss_change > SYMMETRY_LOSS_RTOLS["scale"] and generic.loss_change > SYMMETRY_LOSS_RTOL


def test_an_explicit_tolerance_replaces_the_per_kind_ones():
    torch.manual_seed(0)
    model = models.MLP(6, [5], 3)
    x, y = batch((8, 6), 3)
    wrong = SymmetryGroup("scale", "no norm", (Member("net.1.weight", 0), Member("net.1.bias", 0)), 5)
    assert not check_symmetry(model, wrong, x, y, raise_on_failure=False).holds
    assert check_symmetry(model, wrong, x, y, rtol=1.0, cosine_tol=1.0).holds
    with pytest.raises(SymmetryError, match="scale: loss 1e-10, cosine 1e-10"):
        verify_symmetries(model, [wrong], x, y)


def test_verification_of_a_parametrized_copy_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(torch.nn.utils.parametrizations.weight_norm(nn.Linear(6, 5)), nn.ReLU(), nn.Linear(5, 3))
    x, y = batch((8, 6), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert verify_symmetries(model, find_symmetries(model, x), x, y)["holds"].all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- the loss along a whole orbit (chapter 2's orbit figure) ------------------------------------------------------
S_GRID = torch.linspace(-1.5, 1.5, 13, dtype=torch.float64).numpy()


def _direct_changes(model, moves, x, y):
    """Relative loss changes of a float64 copy (batch norm's epsilon set aside), each parameter dict built by hand."""
    twin = copy.deepcopy(model).double().train()
    for module in twin.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = VERIFICATION_EPSILON
    params = {k: v.detach() for k, v in twin.named_parameters()}
    with torch.no_grad():
        reference = float(F.cross_entropy(twin(x.double()), y))
        values = [
            float(F.cross_entropy(torch.func.functional_call(twin, move(params), (x.double(),)), y)) for move in moves
        ]
    return np.abs(np.array(values) / reference - 1)


def _scaled(names, factor):
    return lambda params: {k: v * factor if k in names else v for k, v in params.items()}


def test_orbit_loss_changes_match_a_direct_evaluation_of_a_false_symmetry():
    """Where the loss does change (a scale without a norm), the library's values are the hand-built ones; the hand-built
    orbit with the opposite sign, the control, is not."""
    torch.manual_seed(0)
    plain = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False)
    x, y = batch((16, 1, 8, 8))
    names = ("features.0.weight", "features.0.bias")
    wrong = SymmetryGroup("scale", "features.0 without a norm", tuple(Member(n, 0) for n in names), 16)
    library = orbit_loss_changes(plain, wrong, x, y, S_GRID)
    direct = _direct_changes(plain, [_scaled(names, math.exp(s)) for s in S_GRID], x, y)
    control = _direct_changes(plain, [_scaled(names, math.exp(-s)) for s in S_GRID], x, y)
    moved = S_GRID != 0
    agreement = float(np.max(np.abs(library - direct)[moved] / direct[moved]))
    disagreement = float(
        np.min(np.abs(library - control)[moved & (np.abs(S_GRID) > 0.2)] / direct[moved & (np.abs(S_GRID) > 0.2)])
    )
    assert agreement <= 1e-9 < disagreement, (agreement, disagreement)
    assert library[~moved].max() == 0.0


def test_orbit_loss_changes_of_true_symmetries_stay_at_round_off():
    """Scale (batch norm), translation and rescale orbits: round-off; a false scale and a random line, at the same
    tolerance: far above it. The model is not changed."""
    torch.manual_seed(0)
    tiny = models.VGG("tiny", in_channels=1, num_classes=10)
    plain = models.VGG("tiny", in_channels=1, num_classes=10, batch_norm=False)
    x, y = batch((16, 1, 8, 8))
    groups, plain_groups = find_symmetries(tiny, x), find_symmetries(plain, x)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    true = {
        "scale": (tiny, groups[0]),
        "translation": (tiny, next(g for g in groups if g.name.startswith("classifier ("))),
        "rescale": (plain, next(g for g in plain_groups if g.kind == "rescale")),
    }
    wrong = SymmetryGroup("scale", "no norm", (Member("features.0.weight", 0), Member("features.0.bias", 0)), 16)
    held = {k: orbit_loss_changes(m, g, x, y, S_GRID).max() for k, (m, g) in true.items()}
    controls = {
        "false scale": orbit_loss_changes(plain, wrong, x, y, S_GRID).max(),
        "random line": orbit_loss_changes(tiny, None, x, y, S_GRID).max(),
    }
    tolerance = SYMMETRY_LOSS_RTOLS["scale"]
    assert max(held.values()) <= tolerance < min(controls.values()), (held, controls)
    assert min(controls.values()) > 1e6 * tolerance
    assert all(torch.equal(v, before[k]) for k, v in tiny.state_dict().items())


def test_orbit_loss_changes_along_a_random_line_follow_its_generator():
    """``group=None``: the line q + s d with d drawn from the generator given, each tensor's part scaled to its mean
    absolute entry; a line drawn from another seed, the control, gives other values."""
    torch.manual_seed(0)
    tiny = models.VGG("tiny", in_channels=1, num_classes=10)
    x, y = batch((16, 1, 8, 8))

    def line(seed):
        g = torch.Generator().manual_seed(seed)
        params = {k: v.detach().double() for k, v in tiny.named_parameters()}
        d = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) * v.abs().mean() for k, v in params.items()}
        return [lambda p, s=s: {k: v + s * d[k] for k, v in p.items()} for s in S_GRID]

    library = orbit_loss_changes(tiny, None, x, y, S_GRID, generator=torch.Generator().manual_seed(3))
    direct, control = _direct_changes(tiny, line(3), x, y), _direct_changes(tiny, line(4), x, y)
    moved = S_GRID != 0
    agreement = float(np.max(np.abs(library - direct)[moved] / direct[moved]))
    disagreement = float(np.max(np.abs(library - control)[moved] / direct[moved]))
    assert agreement <= 1e-9 < disagreement, (agreement, disagreement)
    with pytest.raises(SymmetryError, match="lacks"):
        orbit_loss_changes(tiny, SymmetryGroup("scale", "ghost", (Member("nope", 0),), 1), x, y, S_GRID)
