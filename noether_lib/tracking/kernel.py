"""The tracker's compiled CPU pass: every product a step needs, formed once per element and summed per row and per
column in float64, in one read of the weights, the snapshot and the gradient.

The same sums as the tile-by-tile PyTorch pass of :mod:`noether_lib.tracking.layout` (which it replaces where it
applies: float32 or float64 weights on the CPU, contiguous, units along the first two axes, no translation), at
about a third of the memory traffic: PyTorch materialises each product and reads it once per reduction, this loop
keeps them in registers. The products are formed in the weights' dtype, as PyTorch does; their sums are float64.

The C source below is compiled on first use with the system's C compiler (``$CC``, else ``cc``), for the x86-64
level of the vector instructions PyTorch found on this CPU (AVX2 or AVX-512; no ``-march=native``, no fast-math,
no contraction of products into sums), into a cache folder (``$NOETHER_KERNEL_CACHE``,
else ``~/.cache/noether_lib``) and loaded with :mod:`ctypes`. Where there is no compiler, or
``NOETHER_TRACKER_KERNEL=torch`` is set, :func:`load` returns ``None`` and the tracker uses the PyTorch pass; the
numbers agree to round-off (``tests/test_tracking_kernel.py``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

__all__ = ["FLAGS", "PARALLEL_ELEMENTS", "Kernel", "load", "unavailable_reason"]

#: What one pass computes, in the order of its output rows: ``qq`` (charges), ``qw`` and ``ww`` (update), ``wb``
#: (momentum), ``gg`` and ``qg`` (gradients); ``snapshot`` also copies the weights into the snapshot, ``columns``
#: also sums per column. A pass is compiled for each combination.
FLAGS = ("charges", "update", "momentum", "gradients", "snapshot", "columns")

_TYPES = {torch.float32: "float", torch.float64: "double"}
#: Rows a pass reads at once (their products are added to the column sums together).
BLOCK = 2
_COMPILE = ["-O3", "-fPIC", "-shared", "-fopenmp-simd", "-ffp-contract=off", "-std=c11"]
#: The x86-64 instruction-set level per vector capability PyTorch detected on this CPU (else the compiler's default).
_LEVELS = {"AVX512": "-march=x86-64-v4", "AVX2": "-march=x86-64-v3"}


def _flags() -> list[str]:
    level = _LEVELS.get(torch.backends.cpu.get_cpu_capability()) if platform.machine() in ("x86_64", "AMD64") else None
    return _COMPILE + ([level] if level else [])


def _block(products: list[str], flags: tuple[bool, ...], ctype: str, height: int) -> list[str]:
    """The loop over ``height`` rows at once (from row ``r``): per column, each row's products are formed, added
    to its row sums and, summed over the rows of the block, to the column sums (fewer passes over them)."""
    _, update, momentum, gradients, snapshot, columns = flags
    n, rows = len(products), range(height)
    lines = [f"    double {', '.join(f's{i}_{k} = 0' for i in range(n) for k in rows)};" if n else ""]
    if n:
        sums = ",".join(f"s{i}_{k}" for i in range(n) for k in rows)
        lines.append(f'    _Pragma("omp simd reduction(+:{sums})")')
    lines.append("    for (long j = 0; j < cols; ++j) {")
    for k in rows:
        at = f"(r + {k}) * cols + j"
        lines += [
            f"      {ctype} q{k} = q_[{at}];",
            f"      {ctype} w{k} = before_[{at}] - q{k};" if update else "",
            f"      before_[{at}] = q{k};" if snapshot else "",
            f"      {ctype} g{k} = g_[{at}];" if gradients else "",
            f"      {ctype} b{k} = b_[{at}];" if update and momentum else "",
            f"      (void)q{k};",
        ]
        for i, expression in enumerate(products):
            term = expression.replace("q", f"q{k}").replace("w", f"w{k}").replace("g", f"g{k}").replace("b", f"b{k}")
            lines += [f"      double p{i}_{k} = (double)({ctype})({term});", f"      s{i}_{k} += p{i}_{k};"]
    if columns:
        lines += [f"      col_out[{i} * cols + j] += {' + '.join(f'p{i}_{k}' for k in rows)};" for i in range(n)]
    lines.append("    }")
    lines += [f"    row_out[{i} * rows + r + {k}] = s{i}_{k};" for i in range(n) for k in rows]
    return lines


def _variant(flags: tuple[bool, ...], ctype: str, height: int = BLOCK) -> str:
    charges, update, momentum, gradients, _, _ = flags
    products = (
        (["q * q"] if charges else [])
        + (["q * w", "w * w"] if update else [])
        + (["w * b"] if update and momentum else [])
        + (["g * g", "q * g"] if gradients else [])
    )
    name = "pass_" + "".join(str(int(f)) for f in flags) + "_" + ctype
    lines = [
        f"void {name}(const {ctype}* restrict q_, {ctype}* restrict before_, const {ctype}* restrict g_,",
        f"    const {ctype}* restrict b_, long rows, long cols, double* restrict row_out, double* restrict col_out) {{",
        "  long r = 0;",
        f"  for (; r + {height} <= rows; r += {height}) {{",
        *_block(products, flags, ctype, height),
        "  }",
        "  for (; r < rows; ++r) {",
        *_block(products, flags, ctype, 1),
        "  }",
        "}",
    ]
    return "\n".join(line for line in lines if line)


def combinations() -> list[tuple[bool, ...]]:
    """The combinations of :data:`FLAGS` a tracker asks for: the initial charges, a step's update alone, its
    gradients alone (with the snapshot), or both in one pass; momentum only with the update."""
    return [
        flags
        for flags in itertools.product((False, True), repeat=len(FLAGS))
        if (flags[0] or (flags[4] and not flags[1]))  # no charges: the gradients pass, which takes the snapshot
        and (flags[0] or not flags[1])  # the update comes with the charges
        and (flags[1] or not flags[2])  # momentum needs the update
        and (flags[4] or not flags[3])  # gradients are read with the snapshot taken
    ]


def source() -> str:
    """The C source: one function per combination (:func:`combinations`) and dtype."""
    return "\n\n".join(_variant(flags, ctype) for flags in combinations() for ctype in _TYPES.values())


#: Parameters at least this large are split by rows over ``threads`` (each part's column sums added in order).
PARALLEL_ELEMENTS = 1 << 18


class Kernel:
    """The loaded passes. ``run`` sums the products of ``q`` (2-D, contiguous; ``before``, ``g``, ``b`` alike) and
    writes them per row into ``row_out`` ``(products, rows)`` and adds them per column into ``col_out``
    ``(products, cols)``, with up to ``threads`` threads for a large ``q`` (the calls release the GIL)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        self._functions: dict[tuple, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 0

    def _function(self, flags: tuple[bool, ...], dtype: torch.dtype) -> Any:
        function = self._functions.get((flags, dtype))
        if function is None:
            function = getattr(self._library, "pass_" + "".join(str(int(f)) for f in flags) + "_" + _TYPES[dtype])
            function.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 2 + [ctypes.c_void_p] * 2
            function.restype = None
            self._functions[(flags, dtype)] = function
        return function

    def run(
        self,
        flags: tuple[bool, ...],
        q: torch.Tensor,
        before: torch.Tensor,
        g: torch.Tensor | None,
        b: torch.Tensor | None,
        row_out: torch.Tensor,
        col_out: torch.Tensor | None,
        threads: int = 1,
    ) -> None:
        function = self._function(flags, q.dtype)
        rows, cols = q.shape

        def call(r0: int, r1: int, row_part: torch.Tensor, col_part: torch.Tensor | None) -> None:
            function(
                q[r0].data_ptr(),
                before[r0].data_ptr(),
                None if g is None else g[r0].data_ptr(),
                None if b is None else b[r0].data_ptr(),
                r1 - r0,
                cols,
                row_part.data_ptr(),
                None if col_part is None else col_part.data_ptr(),
            )

        parts = min(threads, rows // 2) if q.numel() >= PARALLEL_ELEMENTS else 1
        if parts <= 1 or rows == 0:
            if rows:
                call(0, rows, row_out, col_out)
            return
        bounds = [rows * i // parts for i in range(parts + 1)]
        row_parts = [row_out.new_empty(row_out.shape[0], r1 - r0) for r0, r1 in zip(bounds, bounds[1:])]
        col_parts = [None if col_out is None else torch.zeros_like(col_out) for _ in row_parts]
        if self._pool is None or self._workers < parts:
            self._pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="noether-tracker")
            self._workers = parts
        futures = [
            self._pool.submit(call, r0, r1, row_part, col_part)
            for (r0, r1), row_part, col_part in zip(zip(bounds, bounds[1:]), row_parts, col_parts)
        ]
        for future in futures:
            future.result()
        for (r0, r1), row_part, col_part in zip(zip(bounds, bounds[1:]), row_parts, col_parts):
            row_out[:, r0:r1].copy_(row_part)
            if col_out is not None and col_part is not None:
                col_out.add_(col_part)


_reason: dict[str, str] = {}


def unavailable_reason() -> str | None:
    """Why :func:`load` returned ``None`` (``None`` when it loaded)."""
    return None if load() is not None else _reason.get("why", "unknown")


def _cache() -> Path:
    folder = os.environ.get("NOETHER_KERNEL_CACHE")
    return Path(folder) if folder else Path.home() / ".cache" / "noether_lib"


@functools.cache
def load() -> Kernel | None:
    """The compiled passes (compiled once per machine and compiler, then cached), or ``None`` (see
    :func:`unavailable_reason`) without a C compiler or with ``NOETHER_TRACKER_KERNEL=torch``. Cached per process:
    ``load.cache_clear()`` looks again."""
    if os.environ.get("NOETHER_TRACKER_KERNEL", "").lower() == "torch":
        _reason["why"] = "NOETHER_TRACKER_KERNEL=torch is set"
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _reason["why"] = f"no C compiler ({os.environ.get('CC', 'cc')!r} is not on PATH)"
        return None
    code = source()
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
        flags = _flags()
        key = hashlib.sha256("\0".join([code, version, " ".join(flags), platform.machine()]).encode()).hexdigest()
        target = _cache() / f"tracker_{key[:16]}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                c_file, built = Path(tmp) / "tracker.c", Path(tmp) / "tracker.so"
                c_file.write_text(code)
                subprocess.run(
                    [compiler, *flags, str(c_file), "-o", str(built)], check=True, capture_output=True, timeout=300
                )
                os.replace(built, target)  # atomic: concurrent processes see a whole library or none
        return Kernel(ctypes.CDLL(str(target)))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        _reason["why"] = f"compiling the tracker's pass failed: {error} {text.strip()[:500]}"
        return None
