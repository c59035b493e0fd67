"""Block programs as flat numpy arrays: the event stream of a kernel, run-length encoded.

A kernel is a grid of thread blocks; each block executes an ordered list of *steps*. A
step issues its tile loads, does its math, and issues its stores (software pipelining
overlaps a tile's loads with the math, so the timing model takes the max, not the sum).
Consecutive steps that differ only by a constant address stride — the K/V tiles of a
FlashAttention inner loop — form one *run*: ``count`` iterations of the same accesses,
iteration ``t`` at ``address + t · step_bytes``. Runs make the event stream O(blocks)
in memory while every tile access is still simulated one by one: an access of ``units``
units at iteration t touches the L2 units

    LOAD/STORE  address + t·step_bytes + u·unit_stride_bytes          (u < units)
    GATHER      address + key(p, k, first + t·units + u)·unit_stride_bytes

where ``key`` is the top-k selection model of :func:`memsim.trace.engine.selected_key`.
One unit is one tile (or one tile row, where a tensor is read in rows): each tensor is
always accessed in the same units, so a tile-granular L2 sees what a line-granular one
would, up to the partial eviction of one tile at the LRU boundary.

Arrays of a :class:`KernelProgram` (R runs, A accesses, T template blocks):

- ``block_run_ptr`` int64[T+1]: runs of template block i are ``block_run_ptr[i]:[i+1]``.
- ``run_count`` int64[R]; ``run_acc_ptr`` int64[R+1]; ``run_work`` float64[R, 7]: per
  iteration matmul FLOPs, fp8 matmul FLOPs, vector FLOPs, exp ops, SRAM read bytes, SRAM
  write bytes, global bytes (see :data:`WORK_FIELDS`).
- ``acc_*`` [A]: kind, tensor, address, step_bytes, unit_bytes, units, unit_stride_bytes,
  gather_pos, gather_k, gather_first.

Blocks are generated for the template instance (batch 0, head group 0); the grid repeats
them for every (batch, head group) with shifted addresses (:mod:`memsim.trace.layout`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LOAD, STORE, GATHER = 0, 1, 2
WORK_FIELDS = ("matmul_flops", "fp8_matmul_flops", "vector_flops", "exp_ops",
               "sram_read_bytes", "sram_write_bytes", "global_bytes")
ACC_FIELDS = ("kind", "tensor", "address", "step_bytes", "unit_bytes", "units",
              "unit_stride_bytes", "gather_pos", "gather_k", "gather_first")
_FLOAT_ACC = ("unit_bytes",)


@dataclass(frozen=True)
class Access:
    """One tile access per iteration of a run (fields broadcast over the run's blocks).

    ``unit_bytes``: bytes of one unit; ``units``: units per iteration. For GATHER,
    ``unit_stride_bytes`` is the distance between consecutive keys' rows and
    (``gather_pos``, ``gather_k``, ``gather_first``) pick the selected keys.
    """

    kind: int
    tensor: int
    address: object
    unit_bytes: object
    step_bytes: object = 0
    units: object = 1
    unit_stride_bytes: object = 0
    gather_pos: object = 0
    gather_k: object = 0
    gather_first: object = 0


@dataclass
class KernelProgram:
    """The flat arrays of one kernel's template blocks (see module docstring)."""

    name: str
    per_head: bool               # grid repeats over (batch, head group) or over batch only
    sram_bytes: int              # shared memory one block holds
    block_run_ptr: np.ndarray
    run_count: np.ndarray
    run_acc_ptr: np.ndarray
    run_work: np.ndarray
    acc: dict[str, np.ndarray]
    cold_l2: bool = False        # the L2 is written back and emptied before this kernel
    threads: int = 0             # threads per block when the kernel's own (0: the Tiling's)
    once: bool = False           # one instance per call, whatever the batch and head groups
    grid_heads: int = 1          # query heads of the template, launched head by head (below)

    @property
    def template_blocks(self) -> int:
        return len(self.block_run_ptr) - 1

    def launch_order(self, batch: int, instances: int) -> np.ndarray | None:
        """Block ids (template block + T · instance, instance = b + batch · group) in the
        order the grid launches them, or None where that is the ids' own order.

        A template of ``grid_heads`` = h > 1 holds h query heads' blocks, head-major
        (block j·T/h + i: tile i of the group's head j), for a kernel whose real grid puts
        the batch between two heads, (tiles, B, H) (FA-2's backward,
        flash_bwd_launch_template.h: grid_n(num_n_block, params.b, params.h)): launch
        position L = i + (T/h)·(b + batch·(j + h·group))."""
        h = self.grid_heads
        if h == 1 or batch == 1:
            return None
        per_head = self.template_blocks // h
        L = np.arange(self.template_blocks * instances, dtype=np.int64)
        i, rest = L % per_head, L // per_head
        b, rest = rest % batch, rest // batch
        head, group = rest % h, rest // h
        return head * per_head + i + self.template_blocks * (b + batch * group)

    @property
    def runs(self) -> int:
        return len(self.run_count)

    def run_units(self) -> np.ndarray:
        """Units touched per iteration of each run (float64[R])."""
        per_acc = self.acc["units"].astype(np.float64)
        return _segment_sum(per_acc, self.run_acc_ptr)

    def run_has_compute(self) -> np.ndarray:
        return (self.run_work[:, :4] > 0).any(axis=1)

    def events_per_instance(self) -> int:
        """Tile events of the template blocks: every unit accessed + every math step."""
        per_iter = self.run_units() + self.run_has_compute()
        return int(np.sum(self.run_count * per_iter))

    def global_bytes_per_instance(self, n_tensors: int) -> np.ndarray:
        """Global bytes read and written per tensor by the template blocks (float64
        [n_tensors, 2]: read, write); exact for byte counts that are multiples of 1/2."""
        per_run = np.repeat(self.run_count, np.diff(self.run_acc_ptr))
        nbytes = self.acc["unit_bytes"] * self.acc["units"] * per_run
        out = np.zeros((n_tensors, 2))
        np.add.at(out, (self.acc["tensor"], (self.acc["kind"] == STORE).astype(np.int64)),
                  nbytes)
        return out

    def work_per_instance(self) -> np.ndarray:
        """Σ over runs of count × per-iteration work (float64[len(WORK_FIELDS)])."""
        return (self.run_count[:, None] * self.run_work).sum(axis=0)


@dataclass
class _Group:
    block: np.ndarray
    order: np.ndarray
    count: np.ndarray
    work: np.ndarray              # [n, len(WORK_FIELDS)]
    acc: dict[str, np.ndarray]    # field -> [n, m]
    n_acc: int


@dataclass
class KernelBuilder:
    """Collects runs for the template blocks of one kernel, vectorised over blocks.

    ``run(block, order, count, accesses, **work)`` adds one run to each block listed in
    ``block`` (all arguments broadcast); runs with ``count == 0`` are dropped. Within a
    block, runs execute in increasing ``order``.
    """

    name: str
    template_blocks: int
    per_head: bool = True
    sram_bytes: int = 0
    threads: int = 0
    once: bool = False     # the grid runs once per call (not per batch or head group)
    grid_heads: int = 1    # KernelProgram.grid_heads
    _groups: list[_Group] = field(default_factory=list)

    def run(self, block, order, count, accesses: list[Access] = (), *, matmul_flops=0.0,
            fp8_matmul_flops=0.0, vector_flops=0.0, exp_ops=0.0, sram_read_bytes=0.0,
            sram_write_bytes=0.0) -> None:
        accesses = list(accesses)
        acc_cols = [[getattr(a, f) for f in ACC_FIELDS] for a in accesses]
        flat = [block, order, count, matmul_flops, fp8_matmul_flops, vector_flops, exp_ops,
                sram_read_bytes, sram_write_bytes] + [c for cols in acc_cols for c in cols]
        arrays = np.broadcast_arrays(*[np.atleast_1d(np.asarray(v)) for v in flat])
        block, order, count = (arrays[0].astype(np.int64), arrays[1].astype(np.float64),
                               arrays[2].astype(np.int64))
        keep = count > 0
        m = len(accesses)
        acc = {}
        for j, f in enumerate(ACC_FIELDS):
            cols = [arrays[9 + i * len(ACC_FIELDS) + j] for i in range(m)]
            dtype = np.float64 if f in _FLOAT_ACC else np.int64
            acc[f] = (np.stack(cols, axis=1).astype(dtype) if m
                      else np.zeros((len(block), 0), dtype=dtype))[keep]
        units = acc["units"].astype(np.float64)
        global_bytes = (units * acc["unit_bytes"]).sum(axis=1)
        work = np.stack([a.astype(np.float64) for a in arrays[3:9]] + [
            np.zeros(len(block))], axis=1)[keep]
        work[:, -1] = global_bytes
        self._groups.append(_Group(block[keep], order[keep], count[keep], work, acc, m))

    def build(self) -> KernelProgram:
        groups = [g for g in self._groups if len(g.block)]
        if not groups:
            return _empty_program(self)
        block = np.concatenate([g.block for g in groups])
        order = np.concatenate([g.order for g in groups])
        perm = np.lexsort((order, block))             # sort runs by (block, order)
        n_acc = np.concatenate([np.full(len(g.block), g.n_acc, np.int64) for g in groups])
        n_acc_sorted = n_acc[perm]
        run_acc_ptr = np.zeros(len(perm) + 1, np.int64)
        np.cumsum(n_acc_sorted, out=run_acc_ptr[1:])
        # position of every run (in group concatenation order) after sorting
        where = np.empty(len(perm), np.int64)
        where[perm] = np.arange(len(perm))
        acc = {f: np.zeros(int(run_acc_ptr[-1]), np.float64 if f in _FLOAT_ACC else np.int64)
               for f in ACC_FIELDS}
        start = 0
        for g in groups:
            n = len(g.block)
            dest0 = run_acc_ptr[where[start:start + n]]
            for j in range(g.n_acc):
                for f in ACC_FIELDS:
                    acc[f][dest0 + j] = g.acc[f][:, j]
            start += n
        counts = np.bincount(block, minlength=self.template_blocks)
        if len(counts) > self.template_blocks:
            raise ValueError(f"{self.name}: block index out of range")
        block_run_ptr = np.zeros(self.template_blocks + 1, np.int64)
        np.cumsum(counts, out=block_run_ptr[1:])
        return KernelProgram(
            name=self.name, per_head=self.per_head, sram_bytes=int(self.sram_bytes),
            block_run_ptr=block_run_ptr,
            run_count=np.concatenate([g.count for g in groups])[perm],
            run_acc_ptr=run_acc_ptr,
            run_work=np.ascontiguousarray(np.concatenate([g.work for g in groups])[perm]),
            acc=acc, threads=self.threads, once=self.once, grid_heads=self.grid_heads)


def _empty_program(b: KernelBuilder) -> KernelProgram:
    z = np.zeros(0, np.int64)
    return KernelProgram(b.name, b.per_head, int(b.sram_bytes),
                         np.zeros(b.template_blocks + 1, np.int64), z, np.zeros(1, np.int64),
                         np.zeros((0, len(WORK_FIELDS))),
                         {f: np.zeros(0, np.float64 if f in _FLOAT_ACC else np.int64)
                          for f in ACC_FIELDS}, threads=b.threads, once=b.once,
                         grid_heads=b.grid_heads)


def _segment_sum(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Sum of values[ptr[i]:ptr[i+1]] for each i."""
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return csum[ptr[1:]] - csum[ptr[:-1]]
