"""The tracker's two passes over the weights (noether_lib.tracking.kernel's compiled loop and the tile-by-tile
PyTorch one) on a convolutional network with batch norm, whose convolutions are each in two groups (units along
their output and their input axis), cut into many tiles: both against the snapshot reference of test_tracking.py,
next to a control that the same tolerance rejects; and what happens where no compiler is found."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_tracking import Reference, assert_matches_reference, reference_error

from noether_lib.symmetry import find_symmetries
from noether_lib.tracking import NoetherTracker
from noether_lib.tracking import kernel as kernels


class SmallConvNet(torch.nn.Module):
    """Conv-BN-ReLU blocks (odd channel counts, so the compiled pass's two-row blocks leave a remainder) and a
    linear head, written as in a public model zoo."""

    def __init__(self, width: int = 5) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(width, 2 * width + 1, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(2 * width + 1),
            torch.nn.ReLU(inplace=True),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(2 * width + 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def data(dtype: torch.dtype, count: int = 8):
    gen = torch.Generator().manual_seed(3)
    return [
        (torch.randn(6, 3, 6, 6, generator=gen).to(dtype), torch.randint(0, 4, (6,), generator=gen))
        for _ in range(count)
    ]


def record(dtype: torch.dtype, kernel: str, *, nesterov: bool = False, tile_elements: int = 40):
    torch.manual_seed(0)
    model = SmallConvNet().to(dtype)
    groups = find_symmetries(model, data(dtype)[0][0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
    tracker = NoetherTracker(model, optimizer, groups, kernel=kernel, tile_elements=tile_elements)
    reference = Reference(model, optimizer)
    for x, y in data(dtype):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        reference.before_step()
        optimizer.step()
        reference.after_step()
    return tracker, tracker.table(), reference, groups


def compiled_available() -> bool:
    return kernels.load() is not None


needs_compiler = pytest.mark.skipif(not compiled_available(), reason=f"{kernels.unavailable_reason()}")


def largest_gap(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """The largest difference of two tables' sums of squares, per column relative to its largest value (the
    projections, near zero where a symmetry holds, are compared with the reference on their factors' size)."""
    gaps = []
    for column in ("charge", "norm_sq", "decay_charge", "update_signed_sq", "grad_signed_sq"):
        x, y = a[column].to_numpy(np.float64), b[column].to_numpy(np.float64)
        if np.isfinite(y).any():
            gaps.append(np.nanmax(np.abs(x - y)) / max(np.nanmax(np.abs(y)), 1e-300))
    return float(max(gaps))


@needs_compiler
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 2e-6)])
@pytest.mark.parametrize("nesterov", [False, True])
def test_both_passes_match_the_snapshots(dtype, rtol, nesterov):
    compiled, table, reference, groups = record(dtype, "compiled", nesterov=nesterov)
    assert compiled.kernel == "compiled"
    assert any(pl.compiled and pl.columns for pl in compiled._plans)  # a convolution in two groups, compiled
    assert any(len(pl.tiles()) > 3 for pl in compiled._plans)  # and, for the PyTorch pass, cut into tiles
    torch_pass, torch_table, torch_reference, _ = record(dtype, "torch", nesterov=nesterov)
    assert torch_pass.kernel == "torch"
    misses = {
        "compiled": reference_error(table, reference, groups),
        "torch": reference_error(torch_table, torch_reference, groups),
    }
    gap = largest_gap(table, torch_table)
    print(
        f"{dtype}, nesterov={nesterov}: against the snapshots {misses} (tolerance {rtol:.0e}); the two passes "
        f"differ by at most {gap:.1e} of a column's size"
    )
    assert max(misses.values()) <= rtol and gap <= rtol
    assert_matches_reference(table, reference, groups=groups, rtol=rtol)


@needs_compiler
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 2e-6)])
def test_control_a_pass_that_keeps_a_stale_snapshot_is_rejected(monkeypatch, dtype, rtol):
    """The same comparison rejects a compiled pass that keeps its first snapshot (every update then measured from
    the initial weights)."""
    run = kernels.Kernel.run
    first: dict[int, torch.Tensor] = {}

    def stale(self, flags, q, before, *args, **options):
        run(self, flags, q, before, *args, **options)
        if flags[4]:  # a snapshot was taken: keep the first one
            before.copy_(first.setdefault(before.data_ptr(), before.clone()))

    monkeypatch.setattr(kernels.Kernel, "run", stale)
    _, table, reference, groups = record(dtype, "compiled")
    miss = reference_error(table, reference, groups)
    print(f"{dtype}: a stale snapshot misses the snapshots by {miss:.2e} (tolerance {rtol:.0e})")
    assert miss > 100 * rtol


def test_without_a_compiler_the_pytorch_pass_records_and_compiled_is_refused(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.delenv("NOETHER_TRACKER_KERNEL", raising=False)
    kernels.load.cache_clear()
    try:
        assert kernels.load() is None
        assert "no C compiler" in str(kernels.unavailable_reason())
        tracker, table, reference, groups = record(torch.float64, "auto")
        assert tracker.kernel == "torch"
        assert_matches_reference(table, reference, groups=groups, rtol=1e-10)
        with pytest.raises(RuntimeError, match="no C compiler"):
            record(torch.float64, "compiled")
    finally:
        monkeypatch.undo()
        kernels.load.cache_clear()


def test_the_environment_switch_and_a_bad_choice(monkeypatch):
    monkeypatch.setenv("NOETHER_TRACKER_KERNEL", "torch")
    kernels.load.cache_clear()
    try:
        assert kernels.load() is None
        assert "NOETHER_TRACKER_KERNEL" in str(kernels.unavailable_reason())
    finally:
        monkeypatch.undo()
        kernels.load.cache_clear()
    with pytest.raises(ValueError, match="kernel must be"):
        record(torch.float64, "fast")


@pytest.mark.parametrize("kernel", ["auto", "torch"])
def test_weights_whose_storage_is_replaced_are_still_measured(kernel):
    """``p.data = ...`` (a new storage, as some weight-surgery code does) between steps: both passes read the new
    weights, not a stale view of the old ones; a parameter that changes shape is refused."""
    torch.manual_seed(0)
    model = SmallConvNet().double()
    groups = find_symmetries(model, data(torch.float64)[0][0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tracker = NoetherTracker(model, optimizer, groups, kernel=kernel, tile_elements=40)
    reference = Reference(model, optimizer)
    for n, (x, y) in enumerate(data(torch.float64)):
        if n == 3:
            for p in model.parameters():
                p.data = p.data.clone()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        reference.before_step()
        optimizer.step()
        reference.after_step()
    assert_matches_reference(tracker.table(), reference, groups=groups, rtol=1e-10)
    model.features[0].weight.data = torch.zeros(2, 3, 3, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="changed from"):
        optimizer.step()  # the tracker's pre-step hook refuses before the optimizer runs


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_split_over_threads_give_the_same_sums(dtype):
    """A large parameter is split by rows over threads: the row sums are the same numbers, the column sums the same
    to round-off (added part by part), the snapshot the same; against float64 sums formed by PyTorch."""
    compiled = kernels.load()
    gen = torch.Generator().manual_seed(0)
    rows, cols = 101, kernels.PARALLEL_ELEMENTS // 100 + 7
    q, g = (torch.randn(rows, cols, generator=gen, dtype=dtype) for _ in range(2))
    start = q + 1e-3 * torch.randn(rows, cols, generator=gen, dtype=dtype)
    flags = (True, True, False, True, True, True)
    out = {}
    for threads in (1, 3):
        before, row_out = start.clone(), torch.empty(5, rows, dtype=torch.float64)
        col_out = torch.zeros(5, cols, dtype=torch.float64)
        compiled.run(flags, q, before, g, None, row_out, col_out, threads=threads)
        assert torch.equal(before, q)
        out[threads] = row_out, col_out
    assert torch.equal(out[1][0], out[3][0])
    w = start - q
    products = torch.stack([q * q, q * w, w * w, g * g, q * g]).double()
    for got_rows, got_cols in out.values():
        torch.testing.assert_close(got_rows, products.sum(2), rtol=1e-12, atol=1e-12 * rows)
        torch.testing.assert_close(got_cols, products.sum(1), rtol=1e-12, atol=1e-12 * cols)
