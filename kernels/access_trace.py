"""Record every memory access a kernel makes, by running it in Numba's CUDA simulator.

The simulator runs each CUDA thread as a Python thread and passes kernel arguments that are
not numpy arrays through untouched. :func:`trace_launches` hands the kernels
:class:`TracedArray` wrappers instead of the global arrays, and wraps every
``cuda.shared.array`` the kernels allocate the same way, so each element read and write is
seen with the thread that made it. Counts are aggregated as the kernel runs:

- per global tensor: elements and bytes read and written, warp requests, and the 32-byte
  sectors those requests touch (coalescing: a warp reading 32 consecutive fp32 values
  touches 4 sectors, one reading a column of a row-major matrix up to 32);
- per (launch, block): bytes read and written;
- per shared array: element accesses, warp requests, and bank-conflict wavefronts (32
  banks of 4 bytes; a request costs as many wavefronts as the most distinct 4-byte words
  any one bank serves; a broadcast of one word is free);
- the kernels' own tally of matmul FLOPs and exponentials (kernels.common: ``count=True``).

A *warp request* is the set of accesses the 32 threads of a warp make in the same dynamic
instance of one source line: the n-th access of each lane from that line to one array (the
line, not the bytecode offset, names the site: Python 3.11 moves the offsets of quickened
instructions). Instances pair up across lanes because the lanes of a warp run the same
loops in the same order; a lane that skips an instance (a ragged last chunk) is absent from
its request, as on the GPU. The simulator runs one block at a time and the recorder reduces
a block's requests to counts, and drops them, as soon as the block ends: memory stays
bounded by one block.

Addresses are element offsets × itemsize from a 256-byte-aligned base (cudaMalloc's
alignment), so the sector counts are those of the real allocation.
"""

from __future__ import annotations

import linecache
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .common import OPS_EXP, OPS_MATMUL_FLOPS, OPS_SLOTS, Launch

SECTOR_BYTES = 32
BANKS = 32
BANK_WORD_BYTES = 4
WARP = 32


@dataclass
class TensorCounts:
    """Global traffic of one tensor. ``*_sectors`` sum, over warp requests, the distinct
    32-byte sectors each request touches."""

    read_elements: int = 0
    write_elements: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    read_requests: int = 0
    write_requests: int = 0
    read_sectors: int = 0
    write_sectors: int = 0


@dataclass
class SharedCounts:
    """Shared-memory traffic of one shared array: ``wavefronts`` ≥ ``requests``, equal
    when no request has a bank conflict."""

    accesses: int = 0
    bytes: int = 0
    requests: int = 0
    wavefronts: int = 0


@dataclass
class AccessTrace:
    """What a traced run did. Keys of ``tensors`` are buffer names; of ``shared``,
    ``'<launch>:<array>'``; of ``blocks``, ``(launch, blockIdx)`` → [read bytes, write bytes]."""

    tensors: dict[str, TensorCounts] = field(default_factory=dict)
    shared: dict[str, SharedCounts] = field(default_factory=dict)
    blocks: dict[tuple[str, tuple[int, ...]], list[int]] = field(default_factory=dict)
    matmul_flops: int = 0
    exp_ops: int = 0

    @property
    def global_read_bytes(self) -> int:
        return sum(t.read_bytes for t in self.tensors.values())

    @property
    def global_write_bytes(self) -> int:
        return sum(t.write_bytes for t in self.tensors.values())

    @property
    def global_sectors(self) -> int:
        return sum(t.read_sectors + t.write_sectors for t in self.tensors.values())

    @property
    def shared_wavefronts(self) -> int:
        return sum(s.wavefronts for s in self.shared.values())

    def summary(self) -> dict:
        """Totals and per-tensor / per-shared-array counts as plain numbers."""
        return {
            "global_read_bytes": self.global_read_bytes,
            "global_write_bytes": self.global_write_bytes,
            "global_sectors": self.global_sectors,
            "matmul_flops": self.matmul_flops,
            "exp_ops": self.exp_ops,
            "blocks": len(self.blocks),
            "tensors": {k: vars(v).copy() for k, v in self.tensors.items()},
            "shared": {k: vars(v).copy() for k, v in self.shared.items()},
        }


class _Recorder:
    """Collects accesses from the simulator's threads and reduces each block's warp
    requests to counts when the simulator finishes the block.

    A simulated thread only appends ``(thread, code, line, array, offset, write)``
    to one list (atomic under the GIL, so no lock); each thread's entries keep its program
    order, which is all that pairing instances across lanes needs.
    """

    def __init__(self, trace: AccessTrace) -> None:
        self.trace = trace
        self.launch = ""
        self.log: list[tuple] = []

    def flush(self, block: tuple[int, ...]) -> None:
        """Reduce the finished block's accesses to counts, then drop them."""
        instances: dict[tuple, int] = {}
        requests: dict[tuple, list[int]] = {}
        per_block = self.trace.blocks.setdefault((self.launch, block), [0, 0])
        for thread, code, line, array, offset, write in self.log:
            key = (thread, code, line, array.name, write)
            n = instances.get(key, 0)
            instances[key] = n + 1
            request = (thread // WARP, code, line, array.name, array.shared, write, n)
            address = offset * array.itemsize
            requests.setdefault(request, []).append(address)
            if array.shared:
                counts = self._shared(array.name)
                counts.accesses += 1
                counts.bytes += array.itemsize
                continue
            t = self.trace.tensors.setdefault(array.name, TensorCounts())
            if write:
                t.write_elements += 1
                t.write_bytes += array.itemsize
                per_block[1] += array.itemsize
            else:
                t.read_elements += 1
                t.read_bytes += array.itemsize
                per_block[0] += array.itemsize
        self.log.clear()
        for (_, _, _, name, shared, write, _), addresses in requests.items():
            if shared:
                s = self._shared(name)
                words = {a // BANK_WORD_BYTES for a in addresses}
                s.requests += 1
                s.wavefronts += max(Counter(w % BANKS for w in words).values())
                continue
            t = self.trace.tensors[name]
            sectors = len({a // SECTOR_BYTES for a in addresses})
            if write:
                t.write_requests += 1
                t.write_sectors += sectors
            else:
                t.read_requests += 1
                t.read_sectors += sectors

    def _shared(self, name: str) -> SharedCounts:
        return self.trace.shared.setdefault(f"{self.launch}:{name}", SharedCounts())


class TracedArray:
    """An array the simulated kernel indexes element by element; every access is logged
    with the thread and the kernel line that made it. Only integer indexing is
    supported (the kernels never slice)."""

    def __init__(self, name: str, array: np.ndarray, recorder: _Recorder,
                 shared: bool = False) -> None:
        self.name = name
        self.array = array
        self.shared = shared
        self.shape = array.shape
        self.ndim = array.ndim
        self.size = array.size
        self.dtype = array.dtype
        self.itemsize = array.itemsize
        self._log = recorder.log
        self._strides = tuple(s // array.itemsize for s in array.strides)

    def _offset(self, index) -> int:
        if not isinstance(index, tuple):
            index = (index,)
        return sum(int(i) * s for i, s in zip(index, self._strides, strict=True))

    def __getitem__(self, index):
        caller = sys._getframe(1)
        self._log.append((threading.current_thread().thread_id, id(caller.f_code),
                          caller.f_lineno, self, self._offset(index), False))
        return self.array[index]

    def __setitem__(self, index, value) -> None:
        caller = sys._getframe(1)
        self._log.append((threading.current_thread().thread_id, id(caller.f_code),
                          caller.f_lineno, self, self._offset(index), True))
        self.array[index] = value

    def __len__(self) -> int:
        return len(self.array)


def _assigned_name(frame) -> str:
    """The variable a ``cuda.shared.array(...)`` call is assigned to, from its source line."""
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    return line.split("=")[0].strip() or f"shared@{frame.f_lineno}"


@contextmanager
def _simulator_hooks(recorder: _Recorder, shared: bool):
    """While active: the simulator flushes the recorder after every block, and (when
    ``shared``) ``cuda.shared.array`` returns :class:`TracedArray` wrappers. Allocations
    are keyed by the kernel's source line, as the simulator itself keys them."""
    from numba.cuda.simulator.kernel import BlockManager
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    from numba.np import numpy_support

    run_block, allocate = BlockManager.run, FakeCUDAShared.array

    def run(self, grid_point, *args):
        run_block(self, grid_point, *args)
        recorder.flush(tuple(int(i) for i in grid_point))

    lock = threading.Lock()               # the block's threads all allocate at once

    def array(self, shape, dtype, alignment=None):
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            allocations = self.__dict__.setdefault("_memsim_traced", {})
            if key not in allocations:
                if not isinstance(dtype, np.dtype) and not isinstance(dtype, type):
                    dtype = numpy_support.as_dtype(dtype)
                allocations[key] = TracedArray(_assigned_name(frame), np.empty(shape, dtype),
                                               recorder, shared=True)
            return allocations[key]

    BlockManager.run = run
    if shared:
        FakeCUDAShared.array = array
    try:
        yield
    finally:
        BlockManager.run, FakeCUDAShared.array = run_block, allocate


def require_simulator() -> None:
    from numba import config

    if not config.ENABLE_CUDASIM:
        raise RuntimeError("access traces need Numba's CUDA simulator: set "
                           "NUMBA_ENABLE_CUDASIM=1 before numba is imported")


def trace_launches(launches: list[Launch], buffers: dict[str, np.ndarray], *,
                   shared: bool = True) -> AccessTrace:
    """Run ``launches`` in the simulator on ``buffers`` (written in place), recording every
    global access, and shared ones when ``shared``. Build the launches with ``count=True``
    to get the FLOP and exponential tallies."""
    require_simulator()
    trace = AccessTrace()
    recorder = _Recorder(trace)
    traced = {name: TracedArray(name, a, recorder) for name, a in buffers.items()}
    ops = np.zeros(OPS_SLOTS, np.int64)
    with _simulator_hooks(recorder, shared):
        for launch in launches:
            recorder.launch = launch.name
            launch(traced, ops)
    trace.matmul_flops = int(ops[OPS_MATMUL_FLOPS])
    trace.exp_ops = int(ops[OPS_EXP])
    return trace
