"""Measured ceilings of the GPU this runs on: the numbers a roofline divides by.

Run on a machine with an NVIDIA GPU (``python -m memsim.kernels.ceilings --out FILE``
or ``python kernels/ceilings.py --out FILE``). Each microbenchmark is timed with CUDA
events after a warm-up; the median of the repeats is reported. Inputs are random, never
zeros. Each measurement is independent: one that fails is recorded with its error and the
rest still run.

Measured quantities (all SI units):

- ``d2d_copy_bytes_per_s``: device-to-device copy of a buffer much larger than L2,
  counting bytes read plus bytes written (docs/DESIGN.md §"Measurements").
- ``l2_read_bytes_per_s``: repeated reads of a buffer that fits in L2 (a sum reduction),
  counting bytes read.
- ``fp32_fma_flop_per_s``: a Numba kernel of independent FMA chains on registers,
  2 FLOP per FMA, unrolled to 32 FMAs per loop trip (``fp32_fma``) and as first written,
  8 FMAs per trip (``fp32_fma_rolled``). An SM sub-partition issues one warp instruction
  per clock, and H100 has exactly as many FP32 lanes as one issue slot feeds (4 × 32 per
  SM), so every non-FFMA instruction in the loop (counter, compare, branch) costs an FFMA
  slot: the FFMA share of the hot loop's SASS and the SM clock read through NVML while the
  kernel runs are recorded beside the rate, to tell issue overhead from a lowered clock.
  On the H100 of 2026-11-22 (1980 MHz under load): unrolled loop 128 FFMA of 141
  instructions (≤ 60.7 TFLOP/s), 58.0 measured; rolled 32 of 45 (≤ 47.6), 43.4 measured.
- ``exp_per_s``: a Numba kernel of ``math.exp`` in float32 (special-function unit).
- ``matmul_<dtype>_flop_per_s``: 8192³ matrix products through PyTorch (tensor cores).
- ``numba_launch_overhead_s`` / ``torch_launch_overhead_s``: trivial kernels launched back
  to back through Numba / PyTorch, host-timed.
- ``device``: the device's attributes as the driver reports them.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable

from memsim.kernels.timing import event_times_s

GB = 1e9


def _median_event_time_s(fn: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median over ``repeats`` of the CUDA-event time of ``fn()`` (PyTorch events), s."""
    return event_times_s(fn, backend="torch", warmup=warmup, min_repeats=repeats,
                         max_repeats=repeats).median_s


def device_attributes() -> dict:
    """Name, SMs, L2, shared memory, clocks and memory bus of device 0 (SI units)."""
    from memsim.kernels.device import read_device

    return read_device(0)


def d2d_copy(size_bytes: int = 4 * 2**30) -> dict:
    """Copy ``size_bytes`` device to device; bytes read + written over time."""
    import torch

    n = size_bytes // 4
    src = torch.rand(n, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    time_s = _median_event_time_s(lambda: dst.copy_(src), warmup=3, repeats=20)
    assert torch.equal(dst, src)
    return {"bytes_moved": 2 * n * 4, "time_s": time_s, "d2d_copy_bytes_per_s": 2 * n * 4 / time_s}


def l2_read(size_bytes: int = 24 * 2**20, reps: int = 64) -> dict:
    """Numba kernel: the whole grid reads an L2-sized buffer ``reps`` times; bytes read / time.

    24 MiB sits inside the H100's 50 MB L2 (RRZE's full-rate region ends near 37 MB). Each
    thread keeps 8 independent loads in flight (8 accumulators): with one accumulator the
    next load waits for the previous add, and the kernel measures L2 latency, not bandwidth
    (3.56 TB/s on the H100 of 2026-11-22, against 6.9-7.0 TB/s for RRZE's gpu-l2-cache).
    """
    import numpy as np
    from numba import cuda, float32

    @cuda.jit(fastmath=True)
    def read_kernel(out, x, n_reps):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        n = x.size
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = float32(0.0)
        for _ in range(n_reps):
            i = start
            while i + 7 * stride < n:
                a0 += x[i]
                a1 += x[i + stride]
                a2 += x[i + 2 * stride]
                a3 += x[i + 3 * stride]
                a4 += x[i + 4 * stride]
                a5 += x[i + 5 * stride]
                a6 += x[i + 6 * stride]
                a7 += x[i + 7 * stride]
                i += 8 * stride
            while i < n:
                a0 += x[i]
                i += stride
        out[start] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7

    dev = cuda.get_current_device()
    threads, blocks = 512, dev.MULTIPROCESSOR_COUNT * 4
    n = size_bytes // 4
    x = cuda.to_device(np.random.default_rng(0).random(n, dtype=np.float32))
    out = cuda.device_array(threads * blocks, dtype=np.float32)
    time_s = _median_cuda_numba(lambda: read_kernel[blocks, threads](out, x, reps))
    total = float(np.float64(out.copy_to_host()).sum())
    expected = reps * float(np.float64(x.copy_to_host()).sum())
    if not abs(total - expected) <= 1e-3 * expected:  # every element read, every rep
        raise RuntimeError(f"l2_read summed {total:.6g}, expected {expected:.6g}")
    return {"buffer_bytes": n * 4, "reps": reps, "time_s": time_s,
            "loads_in_flight_per_thread": 8, "l2_read_bytes_per_s": reps * n * 4 / time_s}


def _fma_kernels() -> dict:
    """The two FMA kernels: 8 chains × 4 FMAs per trip (unrolled) and 8 × 1 (rolled)."""
    from numba import cuda, float32

    @cuda.jit(fastmath=True)
    def fma_unrolled(out, a, b, n_iter):
        i = cuda.grid(1)
        x0 = float32(i) * float32(1e-7)
        x1, x2, x3 = x0 + float32(1.0), x0 + float32(2.0), x0 + float32(3.0)
        x4, x5, x6 = x0 + float32(4.0), x0 + float32(5.0), x0 + float32(6.0)
        x7 = x0 + float32(7.0)
        for _ in range(n_iter):
            for _ in range(4):  # constant trip count: LLVM unrolls it fully
                x0 = cuda.fma(x0, a, b)
                x1 = cuda.fma(x1, a, b)
                x2 = cuda.fma(x2, a, b)
                x3 = cuda.fma(x3, a, b)
                x4 = cuda.fma(x4, a, b)
                x5 = cuda.fma(x5, a, b)
                x6 = cuda.fma(x6, a, b)
                x7 = cuda.fma(x7, a, b)
        if i < out.size:
            out[i] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7

    @cuda.jit(fastmath=True)
    def fma_rolled(out, a, b, n_iter):
        i = cuda.grid(1)
        x0 = float32(i) * float32(1e-7)
        x1, x2, x3 = x0 + float32(1.0), x0 + float32(2.0), x0 + float32(3.0)
        x4, x5, x6 = x0 + float32(4.0), x0 + float32(5.0), x0 + float32(6.0)
        x7 = x0 + float32(7.0)
        for _ in range(n_iter):
            x0 = cuda.fma(x0, a, b)
            x1 = cuda.fma(x1, a, b)
            x2 = cuda.fma(x2, a, b)
            x3 = cuda.fma(x3, a, b)
            x4 = cuda.fma(x4, a, b)
            x5 = cuda.fma(x5, a, b)
            x6 = cuda.fma(x6, a, b)
            x7 = cuda.fma(x7, a, b)
        if i < out.size:
            out[i] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7

    return {"unrolled": (fma_unrolled, 32), "rolled": (fma_rolled, 8)}


_SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)([^;]*);")


def _sass_instructions(sass: str) -> list[tuple[int, str, str]]:
    """(address, opcode, operands) of each instruction of a SASS listing."""
    return [(int(a, 16), op, rest.strip()) for a, op, rest in _SASS_LINE.findall(sass)]


def sass_opcode_counts(sass: str) -> dict[str, int]:
    """Opcode → count in a SASS listing (``/*0090*/  FFMA R3, R2, ...``), predicates dropped."""
    counts: dict[str, int] = {}
    for _, op, _ in _sass_instructions(sass):
        counts[op] = counts.get(op, 0) + 1
    return counts


def _sass_labels(sass: str) -> dict[str, int]:
    """Label → address of the instruction after it (nvdisasm prints ``.L_x_0:`` lines)."""
    labels: dict[str, int] = {}
    pending: list[str] = []
    for line in sass.splitlines():
        label = re.match(r"\s*(\.L\w+):", line)
        if label:
            pending.append(label.group(1))
            continue
        address = re.search(r"/\*([0-9a-f]{4,})\*/", line)
        if address and pending:
            labels.update((name, int(address.group(1), 16)) for name in pending)
            pending = []
    return labels


def sass_hot_loop_counts(sass: str) -> dict[str, int]:
    """Opcode counts of the largest loop: from a backward branch's target to the branch.

    Branch targets are addresses (``BRA 0x80``, cuobjdump) or labels (``BRA `(.L_x_0)``,
    nvdisasm).
    """
    instructions = _sass_instructions(sass)
    labels = _sass_labels(sass)
    best: tuple[int, int] | None = None
    for address, op, operands in instructions:
        if op != "BRA":
            continue
        hexa = re.search(r"0x([0-9a-f]+)", operands)
        label = re.search(r"(\.L\w+)", operands)
        target = labels.get(label.group(1)) if label else int(hexa.group(1), 16) if hexa else None
        backward = target is not None and target <= address
        if backward and (best is None or address - target > best[1] - best[0]):
            best = (target, address)
    if best is None:
        return {}
    counts: dict[str, int] = {}
    for address, op, _ in instructions:
        if best[0] <= address <= best[1]:
            counts[op] = counts.get(op, 0) + 1
    return counts


def _sass_mix(kernel) -> dict:
    """FFMA share of the hot loop's instructions (needs nvdisasm); the error where unavailable.

    One warp instruction issues per clock per SM sub-partition, and its 32 lanes are all the
    FP32 lanes it has, so the loop's FFMA share bounds the fraction of peak FLOP/s.
    """
    try:
        sass = kernel.inspect_sass()
        if isinstance(sass, dict):
            sass = "\n".join(sass.values())
    except Exception as exc:
        return {"sass_error": f"{type(exc).__name__}: {exc}"}
    loop = sass_hot_loop_counts(sass)
    total = sum(loop.values())
    return {"sass_instructions": sum(sass_opcode_counts(sass).values()),
            "loop_instructions": total, "loop_ffma": loop.get("FFMA", 0),
            "loop_ffma_share": loop.get("FFMA", 0) / total if total else None,
            "loop_opcodes": dict(sorted(loop.items(), key=lambda kv: -kv[1]))}


def _sm_clock_under_load_hz(launch: Callable[[], None], settle_s: float = 0.15) -> float | None:
    """SM clock read through NVML (read-only) while ``launch()``'s kernels run, in Hz."""
    try:
        import pynvml
        from numba import cuda

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        launch()  # asynchronous: the GPU is busy while the host sleeps
        time.sleep(settle_s)
        mhz = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        cuda.synchronize()
        return mhz * 1e6
    except Exception:
        return None


def fp32_fma(variant: str = "unrolled", fma_per_thread: int = 131072) -> dict:
    """8 independent FMA chains per thread; ``variant`` unrolled (32 per trip) or rolled (8).

    Beside the rate: the FFMA share of the hot loop's SASS (× the peak at the clock read
    under load, it bounds the rate: one warp instruction issues per clock per sub-partition)
    and the SM clock while the kernel runs.
    """
    import numpy as np
    from numba import cuda

    kernel, per_trip = _fma_kernels()[variant]
    dev = cuda.get_current_device()
    threads = 256
    blocks = dev.MULTIPROCESSOR_COUNT * 16
    trips = np.int32(fma_per_thread // per_trip)  # an int32 trip counter: 32-bit loop arithmetic
    out = cuda.device_array(threads * blocks, dtype=np.float32)
    a, b = np.float32(0.999999), np.float32(1e-6)
    launch = lambda: kernel[blocks, threads](out, a, b, trips)  # noqa: E731
    time_s = _median_cuda_numba(launch)
    if not np.all(np.isfinite(out.copy_to_host())):
        raise RuntimeError("fp32_fma produced non-finite values")
    flops = 2 * int(trips) * per_trip * threads * blocks
    long_launch = lambda: [launch() for _ in range(max(1, int(0.3 / time_s)))]  # noqa: E731
    return {"flop": flops, "time_s": time_s, "fp32_fma_flop_per_s": flops / time_s,
            "threads": threads, "blocks": blocks, "fma_per_trip": per_trip,
            "sm_clock_under_load_hz": _sm_clock_under_load_hz(long_launch),
            **_sass_mix(kernel)}


def exp_rate(iters: int = 2048) -> dict:
    """Numba kernel: 4 independent float32 exp chains per thread."""
    import math as m

    import numpy as np
    from numba import cuda, float32

    @cuda.jit(fastmath=True)
    def exp_kernel(out, n_iter):
        i = cuda.grid(1)
        x0 = float32(i % 7) * float32(-1e-3)
        x1 = x0 - float32(0.1)
        x2 = x0 - float32(0.2)
        x3 = x0 - float32(0.3)
        for _ in range(n_iter):
            x0 = m.exp(x0) * float32(-0.5)
            x1 = m.exp(x1) * float32(-0.5)
            x2 = m.exp(x2) * float32(-0.5)
            x3 = m.exp(x3) * float32(-0.5)
        if i < out.size:
            out[i] = x0 + x1 + x2 + x3

    dev = cuda.get_current_device()
    threads = 256
    blocks = dev.MULTIPROCESSOR_COUNT * 16
    out = cuda.device_array(threads * blocks, dtype=np.float32)
    launch = lambda: exp_kernel[blocks, threads](out, iters)  # noqa: E731
    time_s = _median_cuda_numba(launch)
    n_exp = 4 * iters * threads * blocks
    return {"exp": n_exp, "time_s": time_s, "exp_per_s": n_exp / time_s}


def _median_cuda_numba(launch: Callable[[], None], warmup: int = 3, repeats: int = 20) -> float:
    """Median over ``repeats`` of the CUDA-event time of ``launch()`` (Numba events), s."""
    return event_times_s(launch, backend="numba", warmup=warmup, min_repeats=repeats,
                         max_repeats=repeats).median_s


def launch_overhead(launches: int = 2000) -> dict:
    """Back-to-back launches of a trivial kernel, host-timed after a synchronize.

    Two numbers: Numba's dispatch cost per launch (Python argument handling included, what
    memsim's own kernels pay) and PyTorch's for a one-element ``add_`` (what a production
    framework pays per kernel when the host is the bottleneck, as in small-batch decoding).
    The profile's ``kernel_launch_overhead_s`` is compared with the latter.
    """
    import warnings

    from numba import cuda

    @cuda.jit
    def empty_kernel():
        pass

    def per_launch_s(launch: Callable[[], None], sync: Callable[[], None]) -> float:
        for _ in range(50):
            launch()
        sync()
        t0 = time.perf_counter()
        for _ in range(launches):
            launch()
        sync()
        return (time.perf_counter() - t0) / launches

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-block grid is the point here
        out = {"launches": launches,
               "numba_launch_overhead_s": per_launch_s(lambda: empty_kernel[1, 32](),
                                                       cuda.synchronize)}
    try:
        import torch

        x = torch.ones(1, device="cuda")
        out["torch_launch_overhead_s"] = per_launch_s(lambda: x.add_(1.0), torch.cuda.synchronize)
    except ImportError:
        pass
    return out


def matmul(dtype_name: str, n: int = 8192) -> dict:
    """n×n×n matrix product through PyTorch on random data; 2n³ FLOP."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32,
             "fp32": torch.float32}[dtype_name]
    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    a = torch.randn(n, n, device="cuda", dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, device="cuda", dtype=torch.float32).to(dtype)
    c = torch.empty(n, n, device="cuda", dtype=dtype)
    time_s = _median_event_time_s(lambda: torch.matmul(a, b, out=c), warmup=3, repeats=10)
    torch.backends.cuda.matmul.allow_tf32 = False
    flops = 2 * n**3
    return {"n": n, "time_s": time_s, f"matmul_{dtype_name}_flop_per_s": flops / time_s}


def matmul_fp8(n: int = 8192) -> dict:
    """n×n×n fp8 e4m3 product via torch._scaled_mm (bf16 out); 2n³ FLOP."""
    import torch

    a = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()  # column-major
    one = torch.ones((), device="cuda")
    fn = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
    time_s = _median_event_time_s(fn, warmup=3, repeats=10)
    return {"n": n, "time_s": time_s, "matmul_fp8_flop_per_s": 2 * n**3 / time_s}


def sdpa_sweep() -> dict:
    """PyTorch scaled_dot_product_attention (flash backend, bf16), B=1, H=32, D=128.

    Forward time (median of CUDA-event repeats) and peak allocated memory per shape.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    for n in (1024, 4096, 16384, 32768):
        for causal in (False, True):
            q, k, v = (torch.randn(1, 32, n, 128, device="cuda", dtype=torch.bfloat16)
                       for _ in range(3))
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            def fn(q=q, k=k, v=v, causal=causal) -> None:
                torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                time_s = _median_event_time_s(fn, warmup=3, repeats=20)
            flops = 4 * n * n * 128 * 32 // (2 if causal else 1)
            rows.append({"batch": 1, "heads": 32, "seq_len": n, "head_dim": 128,
                         "causal": causal, "dtype": "bf16", "backend": "flash",
                         "time_s": time_s, "flop": flops, "flop_per_s": flops / time_s,
                         "peak_extra_bytes": torch.cuda.max_memory_allocated() - base})
            del q, k, v
    return {"rows": rows}


BENCHES: dict[str, Callable[[], dict]] = {
    "d2d_copy": d2d_copy,
    "l2_read": l2_read,
    "fp32_fma": fp32_fma,
    "fp32_fma_rolled": lambda: fp32_fma("rolled"),
    "exp": exp_rate,
    "launch_overhead": launch_overhead,
    "matmul_bf16": lambda: matmul("bf16"),
    "matmul_fp16": lambda: matmul("fp16"),
    "matmul_tf32": lambda: matmul("tf32"),
    "matmul_fp32": lambda: matmul("fp32"),
    "matmul_fp8": matmul_fp8,
    "sdpa_flash": sdpa_sweep,
}


def measure_all(only: list[str] | None = None) -> dict:
    """Run every microbenchmark (or those in ``only``); failures are recorded, not raised."""
    result: dict = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "python": sys.version.split()[0],
    }
    try:
        result["device"] = device_attributes()
    except Exception as exc:
        result["device"] = {"error": repr(exc)}
    for name, bench in BENCHES.items():
        if only and name not in only:
            continue
        try:
            result[name] = bench()
        except Exception as exc:
            result[name] = {"error": repr(exc), "traceback": traceback.format_exc(limit=3)}
    return result


def _summary_lines(result: dict) -> list[str]:
    lines = [f"device: {result['device'].get('name')}"]
    for name, value in result.items():
        if not isinstance(value, dict) or name == "device":
            continue
        for key, number in value.items():
            if key.endswith("_per_s") and isinstance(number, float):
                scale = 1e12 if "flop" in key or key == "exp_per_s" else GB
                unit = "T/s" if scale == 1e12 else "GB/s"
                lines.append(f"{name:16s} {key:28s} {number / scale:10.2f} {unit}")
            elif key.endswith("launch_overhead_s"):
                lines.append(f"{name:16s} {key:28s} {number * 1e6:10.2f} us")
            elif key == "error":
                lines.append(f"{name:16s} ERROR {number}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    args = parser.parse_args(argv)
    result = measure_all(args.only)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print("\n".join(_summary_lines(result)))
    return exit_code(result)


def exit_code(result: dict) -> int:
    """0 when at least one microbenchmark measured something, 1 when every one failed (or
    none ran): a run without a single ceiling must not look like a success."""
    benches = [v for k, v in result.items() if k in BENCHES and isinstance(v, dict)]
    return 0 if any("error" not in v for v in benches) else 1


if __name__ == "__main__":
    sys.exit(main())
