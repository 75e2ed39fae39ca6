"""Reproducibility, plotting, tolerances, models and data."""

import numpy as np
import pytest
import torch

from noether_lib import data, models, plotting, reproducibility, tolerances


def test_seed_everything_reproduces_torch_and_numpy():
    reproducibility.seed_everything(3)
    a = (torch.randn(4), np.random.rand(3))  # noqa: NPY002
    reproducibility.seed_everything(3)
    b = (torch.randn(4), np.random.rand(3))  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        reproducibility.seed_everything(seed)


def test_make_generator_is_private():
    g1, g2 = reproducibility.make_generator(5), reproducibility.make_generator(5)
    torch.manual_seed(0)
    assert torch.equal(torch.randperm(10, generator=g1), torch.randperm(10, generator=g2))


def test_assert_within():
    assert tolerances.assert_within("ok", 1e-8, 1e-6) == 1e-8
    with pytest.raises(AssertionError, match="exceeds"):
        tolerances.assert_within("bad", 1e-3, 1e-6)
    with pytest.raises(AssertionError, match="NaN"):
        tolerances.assert_within("nan", float("nan"), 1.0)


def test_export_figure_writes_three_formats(tmp_path):
    plotting.use_book_style()
    fig, ax = plotting.new_figure()
    ax.plot([0, 1], [1, 0])
    paths = plotting.export_figure(fig, "fig-test-line", tmp_path)
    assert {"pdf", "png", "svg"} <= set(paths)
    assert all(p.stat().st_size > 0 for p in paths.values())
    with pytest.raises(ValueError, match="label"):
        plotting.export_figure(fig, "no label", tmp_path)


def test_figure_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("NOETHER_BOOK_FIGURES", str(tmp_path))
    assert plotting.figure_dir() == tmp_path


@pytest.mark.parametrize(
    "model, shape",
    [
        (models.MLP(64, [32, 16], 10, batch_norm=True), (4, 64)),
        (models.VGG("tiny", in_channels=1, num_classes=10), (4, 1, 8, 8)),
        (models.VGG("vgg11", num_classes=200, conv_bias=False, width=0.125), (2, 3, 64, 64)),
        (models.VGG("vgg16", num_classes=10, batch_norm=False, width=0.125), (2, 3, 32, 32)),
        (models.resnet18(num_classes=10, width=0.125), (2, 3, 32, 32)),
    ],
)
def test_models_forward(model, shape):
    out = model(torch.randn(shape))
    assert out.shape[0] == shape[0] and out.ndim == 2
    assert torch.isfinite(out).all()


def test_vgg_conv_bias_flag():
    with_bias = models.VGG("tiny", in_channels=1, num_classes=10, conv_bias=True)
    without = models.VGG("tiny", in_channels=1, num_classes=10, conv_bias=False)
    convs = lambda m: [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert all(c.bias is not None for c in convs(with_bias))
    assert all(c.bias is None for c in convs(without))


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="activation"):
        models.MLP(4, [3], 2, activation="swish")
    with pytest.raises(ValueError, match="width"):
        models.VGG("tiny", width=0)


def test_load_digits():
    split = data.load_digits(seed=1)
    assert split.input_shape == (1, 8, 8)
    assert len(split.y_train) + len(split.y_test) == 1797
    assert abs(float(split.x_train.mean())) < 1e-5
    flat = data.load_digits(images=False)
    assert flat.input_shape == (64,)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=1.5)
