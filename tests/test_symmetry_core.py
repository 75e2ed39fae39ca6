import torch

from noether_lib.symmetry import Member, SymmetryGroup, conserved_quantity


def test_conserved_quantity_scale_and_rescale_and_translation():
    w1, b1, w2 = torch.randn(4, 3), torch.randn(4), torch.randn(2, 4)
    params = {"w1": w1, "b1": b1, "w2": w2}
    scale = SymmetryGroup("scale", "l1", (Member("w1", 0), Member("b1", 0)), 4)
    torch.testing.assert_close(conserved_quantity(scale, params), (w1**2).sum(1) + b1**2)
    rescale = SymmetryGroup("rescale", "h1", (Member("w1", 0), Member("b1", 0), Member("w2", 1, -1)), 4)
    torch.testing.assert_close(conserved_quantity(rescale, params), (w1**2).sum(1) + b1**2 - (w2**2).sum(0))
    translation = SymmetryGroup("translation", "logits", (Member("w2", 1),), 4)
    torch.testing.assert_close(conserved_quantity(translation, params), w2.sum(0))


def test_generator_shapes_and_values():
    w = torch.randn(3, 5)
    params = {"w": w}
    assert torch.equal(SymmetryGroup("scale", "s", (Member("w", 0),), 3).generator(params)["w"], w)
    assert torch.equal(SymmetryGroup("translation", "t", (Member("w", 1),), 5).generator(params)["w"], torch.ones(3, 5))
