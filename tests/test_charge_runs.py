"""Chapter 3's training runs against hand-written SGD recursions whose charges come from weight snapshots."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noether_lib.charge_runs import kicked_translation_run, tracked_sgd_run
from noether_lib.checks import assert_discriminates
from noether_lib.data import Split
from noether_lib.models import MLP
from noether_lib.symmetry import conserved_quantity, find_symmetries
from noether_lib.tolerances import FLOAT64_EXACT

BATCH = 16


def synthetic_split() -> Split:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(120, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (120,), generator=generator)
    return Split(x[:100], y[:100], x[100:], y[100:], num_classes=3)


DATA = synthetic_split()


def heavy_ball(params: list[torch.Tensor], grads: list[torch.Tensor], buffers, *, lr, momentum, dampening, k):
    """PyTorch's SGD rule written out: d = g + kq, buffer v_1 = d_0, then v = βv + (1-δ)d, and q -= ηv."""
    d = [g + k * p for g, p in zip(grads, params)]
    buffers = d if buffers is None else [momentum * v + (1 - dampening) * di for v, di in zip(buffers, d)]
    for p, v in zip(params, buffers):
        p -= lr * v
    return buffers


def hand_written_kick(*, lr, momentum, weight_decay, steps, kick):
    """The bias sum after every step of a kicked softmax regression, from the weights themselves."""
    order = torch.randint(0, len(DATA.y_train), (steps, BATCH), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    layer = nn.Linear(6, 3).double()
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    sums, buffers = [float(bias.sum())], None
    for n in range(steps):
        weight.requires_grad_(True), bias.requires_grad_(True)
        x, y = DATA.x_train[order[n]], DATA.y_train[order[n]]
        loss = F.cross_entropy(x @ weight.T + bias, y) + (kick * bias.sum() if n == 0 else 0.0)
        grads = torch.autograd.grad(loss, [weight, bias])
        weight, bias = weight.detach(), bias.detach()
        buffers = heavy_ball([weight, bias], grads, buffers, lr=lr, momentum=momentum, dampening=0.0, k=weight_decay)
        sums.append(float(bias.sum()))
    return np.array(sums)


def test_kicked_run_records_the_bias_sum_of_a_hand_written_run():
    settings = dict(lr=0.1, momentum=0.9, weight_decay=0.02, steps=30)
    table = kicked_translation_run(DATA, **settings, kick=1.0, batch_size=BATCH)
    assert set(table.group) == {"0.bias (all logits)"} and len(table) == settings["steps"] + 1
    measured = table.charge.to_numpy()
    scale = np.abs(measured).max()
    agreement = np.abs(measured - hand_written_kick(**settings, kick=1.0)).max() / scale
    control = np.abs(measured - hand_written_kick(**settings, kick=0.0)).max() / scale  # the kick left out
    assert_discriminates(
        "kicked run against the hand-written recursion (control: no kick)", agreement, control, FLOAT64_EXACT
    )


def test_kicked_run_kinetic_part_decays_as_beta_to_the_n_only_without_weight_decay():
    def deviation(weight_decay):
        table = kicked_translation_run(
            DATA, lr=0.1, momentum=0.8, weight_decay=weight_decay, steps=25, batch_size=BATCH
        )
        P = table.projected_update.to_numpy()[1:]
        return np.abs(P / P[0] - 0.8 ** np.arange(25)).max()

    assert_discriminates(
        "P_n / P_0 against beta^n (control: weight decay's spring)", deviation(0.0), deviation(0.5), FLOAT64_EXACT
    )


def hand_written_charges(
    make_model, groups_of, *, lr, momentum, dampening, weight_decay, steps, drop_at, factor, full_batch, eps
):
    """Each group's per-unit C_n from weight snapshots of a hand-written SGD run with a learning-rate drop."""
    torch.manual_seed(0)
    model = make_model().double()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.eps = eps
    params = list(model.parameters())
    snapshot = {g.name: [] for g in groups_of(model)}

    def record():
        named = {n: p.detach() for n, p in model.named_parameters()}
        for group in groups_of(model):
            snapshot[group.name].append(conserved_quantity(group, named).numpy().copy())

    order, buffers = torch.Generator().manual_seed(1), None
    record()
    for n in range(steps):
        index = slice(None) if full_batch else torch.randint(0, len(DATA.y_train), (BATCH,), generator=order)
        grads = torch.autograd.grad(F.cross_entropy(model(DATA.x_train[index]), DATA.y_train[index]), params)
        rate = lr * (factor if drop_at is not None and n >= drop_at else 1.0)
        with torch.no_grad():
            buffers = heavy_ball(
                params, grads, buffers, lr=rate, momentum=momentum, dampening=dampening, k=weight_decay
            )
        record()
    return {name: np.array(values) for name, values in snapshot.items()}


@pytest.mark.parametrize("full_batch", [False, True])
def test_tracked_run_records_the_charges_of_a_hand_written_run(full_batch):
    def make_model():
        return MLP(6, [5], 3, batch_norm=True)

    def groups_of(model):
        return find_symmetries(model, DATA.x_train[:16])

    rule = dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=5e-3)
    table = tracked_sgd_run(
        make_model, DATA, **rule, steps=12, batch_size=BATCH, full_batch=full_batch, lr_drop_at=6, lr_drop_factor=0.2
    )
    assert {"scale", "translation"} <= set(table.kind)
    common = dict(**rule, steps=12, factor=0.2, full_batch=full_batch, eps=1e-12)
    expected = hand_written_charges(make_model, groups_of, drop_at=6, **common)
    without_drop = hand_written_charges(make_model, groups_of, drop_at=None, **common)
    agreement = control = 0.0
    for name, values in expected.items():
        measured = table[table.group == name].pivot(index="step", columns="unit", values="charge").to_numpy()
        scale = np.abs(measured).max()
        agreement = max(agreement, np.abs(measured - values).max() / scale)
        control = max(control, np.abs(measured - without_drop[name]).max() / scale)
    assert_discriminates(
        "tracked run against the hand-written recursion (control: no learning-rate drop)",
        agreement,
        control,
        FLOAT64_EXACT,
    )


def test_the_runs_leave_the_global_random_state_alone():
    state = torch.get_rng_state()
    kicked_translation_run(DATA, lr=0.1, steps=2, batch_size=BATCH)
    tracked_sgd_run(lambda: MLP(6, [4], 3), DATA, lr=0.1, steps=2, batch_size=BATCH)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(lr=0.1, momentum=1.0, steps=3), "momentum"),
        (dict(lr=0.0, steps=3), "learning rate"),
        (dict(lr=0.1, steps=3, batch_size=0), "batch_size"),
        (dict(lr=0.1, steps=1.5), "steps"),
    ],
)
def test_invalid_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        kicked_translation_run(DATA, **settings)
    with pytest.raises(ValueError, match=message):
        tracked_sgd_run(lambda: MLP(6, [4], 3), DATA, **settings)


def test_a_learning_rate_drop_must_be_a_positive_step():
    with pytest.raises(ValueError, match="lr_drop_at"):
        tracked_sgd_run(lambda: MLP(6, [4], 3), DATA, lr=0.1, steps=3, lr_drop_at=0)
