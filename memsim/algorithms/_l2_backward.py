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


def carried_fraction(footprint, old_per_group, new_per_group, groups, l2_bytes):
    """Fraction of the (batch, head group) pairs whose bytes ``X`` touched by kernel k are
    still in L2 when kernel k + 1 asks for them (the cross-kernel rule of the module
    docstring, made quantitative).

    ``footprint``: distinct bytes kernel k touched (all groups); ``old_per_group``: the
    bytes of kernel k per group that kernel k + 1 does not touch (Z); ``new_per_group``:
    the bytes kernel k + 1 brings in per group (Y, its misses and new writes). Past the
    capacity nothing is carried. Within it, kernel k's bytes sit in L2 in group order,
    least recent first; kernel k + 1 moves X_g to the recent end as it reaches group g
    and each of its groups evicts Y bytes from the least recent end — first the slack
    (L2 − footprint), then Z_0, Z_1, …, then the untouched X of later groups. X_g is
    still there iff g·(Y − Z) < slack + Z: a share min(1, (slack + Z)/((Y − Z)·groups))
    of the groups hits."""
    slack = l2_bytes - footprint
    z, y = old_per_group, new_per_group
    reach = (slack + z) / np.maximum((y - z) * np.maximum(groups, 1), 1e-30)
    frac = np.where(y <= z, 1.0, np.clip(reach, 0.0, 1.0))
    return np.where(slack >= 0, frac, 0.0)


def _swapped(x):
    """The dense arrays seen from a grid over key tiles (dV, dK kernels): queries and
    keys exchanged, so :meth:`Arrays.hbm_key_loads` counts the query rows those kernels'
    blocks re-read (the full mask is symmetric under the exchange)."""
    from dataclasses import replace

    return replace(x, N=x.S, S=x.N, Br=x.Bc, Bc=x.Br)


def standard_backward_hbm(x, masked: bool) -> tuple[np.ndarray, np.ndarray]:
    """HBM (read, write) bytes per (batch, head group) of eager attention's backward
    (memsim.algorithms.standard_blockskip.backward over the dense scores ``x``, and
    masked_fill's gradient when ``masked``), kernel by kernel in autograd's order:

        dV  (grid: key tiles)    P column, dO rows re-read per key tile; dV once
        dP  (grid: query tiles)  dO rows once, V re-read per query tile; dP row written
        dS  (grid: query tiles)  P, dP rows twice (two passes); dS row written
        masked_fill              dS read and written back (``masked``)
        dQ  (grid: query tiles)  dS row, K re-read per query tile; dQ once
        dK  (grid: key tiles)    dS column, Q rows re-read per key tile; dK once

    - The small operand each matmul kernel re-reads (dO, V, K, Q) is the forward's K/V
      re-read with the roles named by the grid: :meth:`Arrays.hbm_key_loads` with the
      block's score row or column (and output) as its streamed bytes, which pass through
      L2 between two waves' reads of a tile.
    - dS's second pass re-reads key tile j of P and dP after each block in flight has
      touched the rest of its rows in pass 1 and the first j tiles in pass 2 (2·S + j·Bc
      scores of Br rows, dS's writes included): those within the L2 hit.
    - A score matrix or operand kernel k touched is read by kernel k + 1 from L2 in the
      share :func:`carried_fraction` gives; dS's masked_fill rewrites lines still dirty
      where its read hits, so dS is written back once.
    Score matrices are read in whole tiles and written once per kernel; the tensors
    touched two kernels back (P in the dS kernel) are taken as evicted.
    """
    cap = x.l2_bytes
    t = x.tiles()
    hpb, e, D, Dv, N, S = x.hpb, x.e, x.D, x.Dv, x.N, x.S
    g = np.maximum(x.groups, 1)
    scores = N * S * hpb * e                              # one score matrix, one group
    do_b, q_b, dq_b = N * hpb * Dv * e, N * hpb * D * e, N * hpb * D * e
    k_b, v_b = S * D * e, S * Dv * e
    xs = _swapped(x)
    ts = xs.tiles()
    # re-read operands: HBM loads per group within each kernel (first read included)
    do_dv = xs.hbm_key_loads(ts, hpb * Dv * e, stream_bytes=x.Bc * (N * hpb * e + Dv * e)) \
        * hpb * Dv * e
    v_dp = x.hbm_key_loads(t, Dv * e, stream_bytes=x.Br * hpb * (S * e + Dv * e)) * Dv * e
    k_dq = x.hbm_key_loads(t, D * e, stream_bytes=x.Br * hpb * (S * e + D * e)) * D * e
    q_dk = xs.hbm_key_loads(ts, hpb * D * e, stream_bytes=x.Bc * (N * hpb * e + D * e)) \
        * hpb * D * e
    # dS pass 2: key tile j hits iff W·Br·hpb·e·(2·S + j·Bc) ≤ L2 (W blocks in flight)
    in_flight = np.minimum(np.maximum(x.slots, 1), g * np.maximum(t.q_tiles, 1))
    hit_keys = np.clip(cap / (in_flight * x.Br * hpb * e) - 2 * S, 0, S)
    pass2 = 2 * scores * (1 - hit_keys / np.maximum(S, 1))
    # kernels' footprints (all groups) and what each carries to the next
    f_dv = g * (scores + do_b + v_b)
    f_dp = g * (do_b + v_b + scores)
    f_ds = g * 3 * scores
    f_mf = g * scores
    f_dq = g * (scores + k_b + dq_b)
    c_do = carried_fraction(f_dv, scores + v_b, v_dp + scores, g, cap)   # dO into dP
    c_dp = carried_fraction(f_dp, do_b + v_b, scores + pass2 + scores, g, cap)  # dP → dS
    c_ds = carried_fraction(f_ds, 2 * scores, 0 * scores, g, cap)       # dS → masked_fill
    prev = np.where(masked, f_mf, f_ds)
    y_dq = k_dq + dq_b
    c_dsq = np.where(masked, carried_fraction(prev, 0 * scores, y_dq, g, cap),
                     carried_fraction(prev, 2 * scores, y_dq, g, cap))  # dS → dQ
    c_dsk = carried_fraction(f_dq, k_b + dq_b, q_dk + k_b, g, cap)      # dS → dK
    reads = (scores + do_dv                                # dV kernel (cold)
             + do_b * (1 - c_do) + v_dp                    # dP
             + scores + scores * (1 - c_dp) + pass2        # dS: P, dP pass 1, pass 2
             + masked * scores * (1 - c_ds)                # masked_fill
             + scores * (1 - c_dsq) + k_dq                 # dQ
             + scores * (1 - c_dsk) + q_dk)                # dK
    writes = (v_b + scores + scores + masked * scores * (1 - c_ds)
              + dq_b + k_b)
    return reads, writes
