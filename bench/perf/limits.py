"""A training step against the machine's own limit: achieved FLOP/s over measured matmul FLOP/s.

A millisecond-per-step figure says how fast a step is, not how far it is from what the
hardware can do. Here one step of the profile's model is set against a floor measured on
the same machine, in the same process, with the same dtype, device and thread count:

- the step's FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts
  matmul- and convolution-class ops only (mm, addmm, bmm, baddbmm, convolutions and their
  backward, attention kernels). Elementwise work, reductions, embedding gathers, the loss and
  the optimizer's update count zero, so the achieved FLOP/s is a lower bound on the work done;
- every counted op's GEMM shape is recorded (``GemmRecorder``; a convolution as its equivalent
  GEMM), and the shape carrying the most FLOPs is the step's dominant shape;
- ``torch.mm`` / ``torch.bmm`` of that shape is timed alone: the dense matmul rate the
  machine reaches on the step's own largest piece of arithmetic.

The ratio achieved / matmul rate is the fraction of that floor the step reaches: 1 would be a
step that spends all of its time in matmuls running as fast as a lone matmul of its dominant
shape. The "matmul floor" column refines it: the step's counted FLOPs at the measured rate of
each of its shapes (the few largest timed, the rest at the dominant rate).

Only ratios and measured numbers come out of here; nothing asserts a time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from bench.perf.levers import fused_steps, single_step, step_setup
from bench.report.markdown import md_table

aten = torch.ops.aten
_MATMULS = {aten.mm: (0, 1), aten.addmm: (1, 2), aten.bmm: (0, 1), aten.baddbmm: (1, 2)}
_CONVS = {aten.convolution, aten._convolution, aten.convolution_overrideable}


@dataclass(frozen=True)
class Gemm:
    """One dense matrix product ``batch × ([m, k] @ [k, n])`` in ``dtype``."""

    batch: int
    m: int
    k: int
    n: int
    dtype: str = "float32"

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two FLOPs, the convention ``FlopCounterMode`` uses."""
        return 2 * self.batch * self.m * self.k * self.n

    def label(self) -> str:
        core = f"{self.m}×{self.k} @ {self.k}×{self.n}"
        text = f"mm {core}" if self.batch == 1 else f"bmm {self.batch} × ({core})"
        return text if self.dtype == "float32" else f"{text}, {self.dtype}"


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _conv_gemm(x: torch.Tensor, w: torch.Tensor, out_spatial: Sequence[int], transposed: bool,
               groups: int) -> Gemm:
    """The GEMM a convolution's arithmetic amounts to (im2col): per group, rows are output
    positions, the inner size is input channels × kernel, columns are output channels. Its
    FLOPs equal ``FlopCounterMode``'s for the same convolution."""
    kernel = math.prod(w.shape[2:])
    if transposed:  # weight [C_in, C_out / g, *k]; the arithmetic runs over input positions
        return Gemm(groups, x.shape[0] * math.prod(x.shape[2:]), w.shape[0] // groups,
                    w.shape[1] * kernel, _dtype(x))
    return Gemm(groups, x.shape[0] * math.prod(out_spatial), w.shape[1] * kernel,
                w.shape[0] // groups, _dtype(x))


def gemms_of(func, args, out) -> list[Gemm]:
    """The GEMM shape(s) of one aten op, or none for ops ``FlopCounterMode`` does not count."""
    packet = func.overloadpacket
    if packet in _MATMULS:
        i, j = _MATMULS[packet]
        a, b = args[i], args[j]
        if a.dim() == 2:
            return [Gemm(1, a.shape[0], a.shape[1], b.shape[1], _dtype(a))]
        return [Gemm(a.shape[0], a.shape[1], a.shape[2], b.shape[2], _dtype(a))]
    if packet in _CONVS:
        x, w, transposed, groups = args[0], args[1], bool(args[6]), int(args[8])
        return [_conv_gemm(x, w, out.shape[2:], transposed, groups)]
    if packet is aten.cudnn_convolution:
        x, w, groups = args[0], args[1], int(args[5])
        return [_conv_gemm(x, w, out.shape[2:], False, groups)]
    if packet is aten.convolution_backward:
        # Y[M, N] = X[M, K] W[K, N]: dX = dY W^T is [M, N] @ [N, K], dW = X^T dY is
        # [K, M] @ [M, N]; each as many FLOPs as the forward.
        grad_out, x, w = args[0], args[1], args[2]
        transposed, groups, mask = bool(args[7]), int(args[9]), args[10]
        f = _conv_gemm(x, w, grad_out.shape[2:], transposed, groups)
        found = []
        if mask[0]:
            found.append(Gemm(f.batch, f.m, f.n, f.k, f.dtype))
        if mask[1]:
            found.append(Gemm(f.batch, f.k, f.m, f.n, f.dtype))
        return found
    return []


class GemmRecorder(TorchDispatchMode):
    """Records the GEMM shape of every matmul- and convolution-class op that runs under it.

    ``FlopCounterMode`` reports FLOPs per op type and module, not per shape; the rate a
    machine reaches depends on the shape, so the shapes are taken here, beside the count.
    A dispatch mode sees the ops autograd runs in the backward and the batched ops vmap
    produces for a fused step, not only the forward's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gemms: list[Gemm] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.gemms.extend(gemms_of(func, args, out))
        return out


def count_flops(fn: Callable[[], object]) -> tuple[int, list[Gemm]]:
    """``(FLOPs, GEMMs)`` of one call of ``fn``: the total from ``FlopCounterMode`` (matmul-
    and convolution-class ops only) and the shape of every counted op, in call order."""
    recorder = GemmRecorder()
    with FlopCounterMode(display=False) as counter, recorder:
        fn()
    return int(counter.get_total_flops()), recorder.gemms


def flops_by_shape(gemms: Sequence[Gemm]) -> list[tuple[Gemm, int]]:
    """Distinct shapes with their summed FLOPs, most first; ties keep the order of first
    appearance (so of a layer's forward, grad-input and grad-weight products of equal size,
    the forward's is named)."""
    totals: dict[Gemm, int] = {}
    for g in gemms:
        totals[g] = totals.get(g, 0) + g.flops
    return sorted(totals.items(), key=lambda kv: -kv[1])


def dominant_shape(gemms: Sequence[Gemm]) -> Gemm:
    """The shape accounting for the most FLOPs: the piece of arithmetic whose matmul rate
    bounds the step from above most tightly."""
    if not gemms:
        raise ValueError("no matmul- or convolution-class ops were recorded")
    return flops_by_shape(gemms)[0][0]


def sync(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so a host clock reads the time of the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(step: Callable[[int], object], device: torch.device, steps: int = 20,
                 warmup: int = 3) -> float:
    """Median seconds of ``step(i)`` (forward, backward, optimizer step) after ``warmup``
    untimed calls; each step is synchronised on CUDA so its kernels are inside its time."""
    for i in range(warmup):
        step(i)
    sync(device)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(warmup + i)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rate(gemm: Gemm, device: torch.device, min_block_s: float = 0.02,
                blocks: int = 5) -> float:
    """FLOP/s of ``torch.mm`` (``torch.bmm`` for a batch) of ``gemm``'s shape and dtype on
    ``device`` at the current thread count: the median of ``blocks`` back-to-back blocks,
    each repeated until it lasts ``min_block_s`` so that timer resolution and (on CUDA)
    launch latency are spread over many products. Contiguous operands, output reused."""
    dtype = getattr(torch, gemm.dtype)
    a = torch.randn(gemm.batch, gemm.m, gemm.k, device=device).to(dtype)
    b = torch.randn(gemm.batch, gemm.k, gemm.n, device=device).to(dtype)
    out = torch.empty(gemm.batch, gemm.m, gemm.n, device=device, dtype=dtype)
    if gemm.batch == 1:
        a, b, out = a[0], b[0], out[0]
        op = torch.mm
    else:
        op = torch.bmm

    def block(reps: int) -> float:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            op(a, b, out=out)
        sync(device)
        return time.perf_counter() - t0

    block(3)  # warm-up: kernel selection, caches, first-call overheads
    reps = 1
    while (t := block(reps)) < min_block_s and reps < 1_000_000:
        reps = min(1_000_000, max(2 * reps, math.ceil(1.2 * reps * min_block_s / max(t, 1e-9))))
    return gemm.flops / statistics.median(block(reps) / reps for _ in range(blocks))


def measure_path(path: str, step: Callable[[int], object], device: torch.device, threads: int,
                 steps: int = 20, max_shapes: int = 6, members: int = 1) -> dict:
    """One row of the table for one way of stepping: time, FLOPs, dominant shape, rates.

    The step is timed first and counted afterwards (the counter's overhead never touches the
    timed steps); the matmuls are timed right after, at the same thread count. ``members``
    is the number of runs one call of ``step`` advances (K for a fused step).
    """
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        seconds = step_seconds(step, device, steps)
        flops, gemms = count_flops(lambda: step(0))
        shapes = flops_by_shape(gemms)
        rates = {g: matmul_rate(g, device) for g, _ in shapes[:max_shapes]}
        threads_used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    row = {"path": path, "device": str(device), "threads": threads_used, "members": members,
           "ms_per_step": 1000 * seconds, "flops_per_step": flops,
           "flops_per_member": flops / members, "achieved_flops_per_s": flops / seconds,
           "shapes_counted": len(shapes), "shapes_timed": len(rates)}
    if not shapes:
        return {**row, "dominant_shape": None, "dominant_share": float("nan"),
                "matmul_flops_per_s": float("nan"), "ratio": float("nan"),
                "matmul_floor_ms": float("nan"), "floor_ratio": float("nan"), "top_shapes": []}
    dominant, dominant_flops = shapes[0]
    rate = rates[dominant]
    recorded = sum(f for _, f in shapes)
    floor = sum(f / rates.get(g, rate) for g, f in shapes) + max(0, flops - recorded) / rate
    return {**row, "dominant_shape": dominant.label(), "dominant": asdict(dominant),
            "dominant_share": dominant_flops / flops if flops else float("nan"),
            "matmul_flops_per_s": rate, "ratio": (flops / seconds) / rate,
            "matmul_floor_ms": 1000 * floor, "floor_ratio": floor / seconds,
            "flops_with_shape": recorded, "top_shapes": [{"shape": g.label(), "flops": f,
                            "matmul_flops_per_s": rates.get(g)} for g, f in shapes[:max_shapes]]}


def against_limit(profile_name: str, fuse: Sequence[int] = (), device: str = "cpu",
                  steps: int = 20) -> list[dict]:
    """Rows for the profile's model on the profile's data on ``device``: one run's training
    step (as ``Trainer.train_step`` runs it), then a fused step of K runs for each K in
    ``fuse`` (whole step: K members' FLOPs in one call). CPU rows use the profile's threads
    per run, the count its grid trains with; on CUDA the time is to the last kernel."""
    profile, dev, data, batches = step_setup(profile_name, device)
    threads = profile.threads_per_run() if dev.type == "cpu" else torch.get_num_threads()
    model = profile.model.name
    rows = [measure_path(f"{model}, float32 eager, one run", single_step(profile, data, batches),
                         dev, threads, steps)]
    for k in fuse:
        try:
            step = fused_steps(profile, data, batches, k)
        except ValueError as exc:
            rows.append({"path": f"fused ×{k}: not available ({exc})", "device": str(dev),
                         "threads": threads, "members": k, "available": False})
            break
        rows.append(measure_path(f"{model}, fused, {k} runs stacked with vmap (whole step)",
                                 step, dev, threads, steps, members=k))
    return rows


def _num(x: float | None) -> str:
    """Three significant figures without switching to exponents in the usual ranges."""
    if x is None or not math.isfinite(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


LIMIT_HEADER = ["path", "threads", "ms / step", "GFLOP / step", "achieved GFLOP/s",
                "dominant matmul (share of FLOPs)", "matmul GFLOP/s at that shape", "ratio",
                "matmul floor, ms / step"]


def limits_table(rows: Sequence[dict]) -> str:
    """The table of ``against_limit`` rows (unavailable paths shown with dashes)."""
    cells = []
    for r in rows:
        if "ms_per_step" not in r:
            cells.append([r["path"], str(r["threads"])] + ["–"] * (len(LIMIT_HEADER) - 2))
            continue
        shape = (f"{r['dominant_shape']} ({100 * r['dominant_share']:.0f} %)"
                 if r["dominant_shape"] else "–")
        cells.append([r["path"], str(r["threads"]), _num(r["ms_per_step"]),
                      _num(r["flops_per_step"] / 1e9), _num(r["achieved_flops_per_s"] / 1e9),
                      shape, _num(r["matmul_flops_per_s"] / 1e9), f"{r['ratio']:.3f}",
                      _num(r["matmul_floor_ms"])])
    return md_table(LIMIT_HEADER, cells)


def render_limits(rows: Sequence[dict], heading: str = "##") -> str:
    """The markdown section "Against the machine's limit": the table and what it counts."""
    return "\n".join([
        f"{heading} Against the machine's limit",
        "",
        limits_table(rows),
        "",
        "FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one training step; it counts "
        "matmul- and convolution-class ops only (mm, addmm, bmm, convolutions), so "
        "elementwise work, embedding gathers, the loss and the optimizer update count zero "
        "and the achieved rate is a lower bound. Time: median of timed steps (forward, "
        "backward, optimizer step) after warm-up. Matmul rate: `torch.mm`/`torch.bmm` of the "
        "step's dominant shape (most counted FLOPs; a convolution as its equivalent GEMM), "
        "same dtype, device and thread count. Ratio = achieved / that rate, the fraction of "
        "the matmul floor the step reaches. Matmul floor: the step's counted FLOPs at the "
        "measured rate of each of its largest shapes (the rest at the dominant rate). A fused "
        "row is one call advancing all K runs: K times the FLOPs of one run's step.",
    ])
