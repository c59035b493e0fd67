"""Closed-form L2 estimate of the backward passes: HBM reads and writes of FA-1's, FA-2's
and eager standard attention's backward kernels when re-reads can hit in L2.

Every function takes the :class:`~memsim.algorithms._arrays.Arrays` of one call (with
``slots`` and ``l2_bytes`` set: :func:`memsim.algorithms._arrays.from_problem` with a GPU)
and returns per-(batch, head group) or whole-call byte arrays that broadcast with the
arrays' shapes. The L2 is the forward's: one LRU of ``l2_bytes``
(:attr:`memsim.hardware.GPU.l2_dram_capacity_bytes`, the whole L2), write-back and
write-allocate, kept across the kernels of one pass (the trace-driven model,
:mod:`memsim.trace.l2`, plays the same schedules through the same cache and is the
reference: tests/test_l2_backward.py holds the two together).

Two rules recur:

- **Within a kernel**, a re-read hits iff the distinct bytes touched between the two
  reads — by every block in flight — fit in L2 (an LRU misses every time past that).
- **Across kernels**, the grid walks the (batch, head group) pairs in the same order in
  every kernel, so kernel k + 1 asks first for what kernel k touched first, i.e. for the
  least recently used bytes: a tensor kernel k touched is still in L2 for kernel k + 1
  iff kernel k's whole footprint fits (LRU's sequential-loop pathology: past the
  capacity, a loop over the same data in the same order hits nothing).
"""

from __future__ import annotations

import numpy as np

from memsim.geometry import TileSums
from memsim.units import ACCUM_BYTES as F4


def flash1_backward_hbm(x, t: TileSums) -> tuple[np.ndarray, np.ndarray]:
    """HBM (read, write) bytes per (batch, head group) of FA-1's backward (Dao et al.
    2022, Algorithm 4): one block per group; per key tile j (K_j, V_j read, dK_j, dV_j
    written once) the query tiles that see j load Q, O, dO, ℓ, m and, unless j is their
    first key tile, dQ, and store dQ (lines 8, 21).

    Between two touches of a query tile (key tiles j − 1 and j) the groups in flight
    touch the rows active at j once each and one K/V tile (read) and dK/dV tile
    (written): :meth:`Arrays.hbm_state_rereads` with the backward's per-row bytes
    (Q, O, dO, ℓ, m, dQ) and twice the mean K/V tile. A re-touch that misses reads Q, O,
    dO, ℓ, m and dQ again, and its dQ was written back when evicted; one that hits
    reads nothing, and dQ is written back once at the end.
    """
    hpb, e, D, Dv, N = x.hpb, x.e, x.D, x.Dv, x.N
    kv = t.union_keys * (D + x.dv_load) * e
    inputs = hpb * (D * e + 2 * Dv * e + 2 * F4)         # Q, O, dO, ℓ, m per row
    dq = hpb * D * e
    kv_tile = t.union_keys / np.maximum(t.union_tiles, 1) * (D + x.dv_load) * e
    again = x.hbm_state_rereads(t, inputs + dq, 2 * kv_tile)
    return kv + (N + again) * inputs + again * dq, kv + (N + again) * dq
