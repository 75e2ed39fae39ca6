"""The symmetry search on architectures written the way public model zoos write them (noether_lib/zoo.py): every group found is checked by
applying the transformation by hand in float64 and comparing losses, next to a control that moves the same
parameters as far in a wrong direction; coverage of conv/linear weights per architecture."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib.symmetry import find_symmetries, verify_symmetries, weight_coverage
from noether_lib.tolerances import SYMMETRY_LOSS_RTOLS
from noether_lib.zoo import ZOO

COVERED_FAMILIES = ("residual", "dense", "batch norm")


pytestmark = pytest.mark.usefixtures("one_thread")


def setup(name, seed=0):
    factory, shape, family = ZOO[name]
    torch.manual_seed(seed)
    model = factory()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    classes = model.q[-1].out_features if hasattr(model, "q") else 10
    return model, x, torch.randint(0, classes, (shape[0],), generator=g), family


def float64_twin(model):
    """A float64 train-mode copy, dropout off, normalization epsilon ~ 0: the loss the symmetries are exact for."""
    twin = copy.deepcopy(model).double().train()
    for module in twin.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
        if hasattr(module, "eps") and isinstance(module, nn.Module) and not isinstance(module, nn.Dropout):
            module.eps = 1e-20
    return twin


def loss_of(twin, params, x, y):
    torch.manual_seed(0)  # functional dropout draws the same mask every time
    return float(F.cross_entropy(torch.func.functional_call(twin, params, (x,)), y))


def by_hand(group, params, s):
    """Q(q, s) written out: each member moved to its unit axis, rows scaled by e^{sign s_u} or shifted by sign s_u."""
    out = dict(params)
    for m in group.members:
        p = out[m.parameter].movedim(m.dim, 0)
        rows = p.reshape(group.num_units, -1)
        rows = rows + m.sign * s[:, None] if group.kind == "translation" else rows * torch.exp(m.sign * s)[:, None]
        out[m.parameter] = rows.reshape(p.shape).movedim(0, m.dim)
    return out


@pytest.mark.parametrize("name", list(ZOO))
def test_every_group_found_holds_by_hand_and_a_wrong_move_does_not(name):
    model, x, y, _ = setup(name)
    groups = find_symmetries(model, x)
    listed = set(dict(model.named_parameters()))
    assert all(m.parameter in listed for g in groups for m in g.members)
    twin = float64_twin(model)
    params = {k: v.detach() for k, v in twin.named_parameters()}
    x64 = x.double()
    reference = loss_of(twin, params, x64, y)
    gen = torch.Generator().manual_seed(1)
    worst, weakest = 0.0, math.inf
    for group in groups:
        flat = group.name.endswith("(normalized away)")  # every move of such a bias is flat: tested apart
        s = 0.2 + 0.6 * torch.rand(group.num_units, generator=gen, dtype=torch.float64)
        moved = by_hand(group, params, s)
        worst = max(worst, abs(loss_of(twin, moved, x64, y) / reference - 1))
        control = dict(params)
        for name_ in dict.fromkeys(group.parameters):
            step = moved[name_] - params[name_]
            noise = torch.randn(step.shape, generator=gen, dtype=torch.float64)
            control[name_] = params[name_] + noise * step.norm() / noise.norm()
        if not flat:
            weakest = min(weakest, abs(loss_of(twin, control, x64, y) / reference - 1))
    tol = SYMMETRY_LOSS_RTOLS["rescale"]
    print(f"{name}: {len(groups)} groups, largest loss change {worst:.1e}; smallest control change {weakest:.1e}")
    assert worst <= tol < weakest


@pytest.mark.parametrize("name", list(ZOO))
def test_verify_symmetries_accepts_every_group_of_the_zoo(name):
    model, x, y, _ = setup(name, seed=3)
    groups = find_symmetries(model, x)
    table = verify_symmetries(model, groups, x, y, control=True)
    assert table["holds"].all()
    tol = table["kind"].map(SYMMETRY_LOSS_RTOLS)
    powered = ~table["group"].str.endswith("(normalized away)")
    control = table["control_change"][powered]
    print(f"{name}: agreement {table['loss_change'].max():.1e}, control {control.min():.1e}")
    assert (table["loss_change"] <= tol).all() and (control > tol[powered]).all()


def test_coverage_of_the_residual_dense_and_batch_norm_families():
    covered = total = 0
    for name in ZOO:
        model, x, _, family = setup(name)
        c, n = weight_coverage(model, find_symmetries(model, x))
        print(f"{name} ({family}): {c}/{n} conv/linear weights in a group")
        if family in COVERED_FAMILIES:
            covered, total = covered + c, total + n
    assert covered / total >= 0.9


def test_explanation_names_where_the_search_stopped(capsys):
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.GELU(), nn.Linear(4, 3))
    found = find_symmetries(model, torch.randn(4, 6), explain=True)
    table = found.explanation
    assert set(table.columns) == {"layer", "type", "in_group", "groups", "stopped"}
    assert table["layer"].tolist() == ["0", "2", "4"] and table["in_group"].tolist() == [False, False, True]
    assert "stopped at 1 (Tanh)" in table["stopped"][0] and "stopped at 3 (GELU)" in table["stopped"][1]
    assert "stopped at 1 (Tanh)" in capsys.readouterr().out


def test_a_bias_that_batch_norm_subtracts_is_flat_in_every_direction_but_not_in_eval_mode():
    model, x, y, _ = setup("VGG, batch norm")
    groups = [g for g in find_symmetries(model, x) if g.name.endswith("(normalized away)")]
    assert len(groups) == 3 and all(g.kind == "translation" for g in groups)
    train = verify_symmetries(model, groups, x, y, control=True)
    assert train["holds"].all() and (train["control_change"] <= SYMMETRY_LOSS_RTOLS["translation"]).all()
    model.train()
    model(x * 3 + 1)  # running statistics that differ from the batch's
    evaluated = verify_symmetries(model, groups, x, y, mode="eval", raise_on_failure=False, joint=False)
    print(f"bias translations: train {train['loss_change'].max():.1e}, eval {evaluated['loss_change'].min():.1e}")
    assert not evaluated["holds"].any() and (evaluated["loss_change"] > SYMMETRY_LOSS_RTOLS["translation"]).all()


def test_residual_stream_groups_join_every_branch():
    model, x, _, _ = setup("pre-activation ResNet")
    groups = find_symmetries(model, x)
    stream = [g for g in groups if "conv1" in g.name.split(" → ")[0] and "layers.0.conv2" in g.name]
    assert stream and stream[0].kind == "scale"  # stem + every conv2 of the stage -> batch norms only


def test_dense_concatenations_keep_per_channel_groups():
    model, x, _, _ = setup("DenseNet")
    groups = find_symmetries(model, x)
    conv2 = [g for g in groups if g.name.startswith("features.3.denselayer1.conv2 →")]
    assert conv2 and conv2[0].kind == "scale" and conv2[0].num_units == 4


def test_attention_pairs_queries_with_keys_and_values_with_the_output():
    model, x, _, _ = setup("ViT")
    names = {g.name for g in find_symmetries(model, x)}
    assert "blocks.0.attn.q ↔ blocks.0.attn.k (attention logits, per dimension)" in names
    assert "blocks.0.attn.v → blocks.0.attn.proj (attention values, per dimension)" in names
