"""Problem and tiling as numpy arrays: the common input of every algorithm's cost function.

All fields broadcast together, so one call evaluates many configurations (docs/DESIGN.md
§"Three models that must agree": "vectorised over numpy arrays"). :func:`from_problem`
builds the size-1 case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memsim.algorithms._tiles import INDEX_BLOCK_Q
from memsim.geometry import MaskGeometry, TileSums, floor_sum, tile_sums
from memsim.problem import Indexer
from memsim.units import DTYPE_BYTES, scaled_row_bytes

_INDEXER = Indexer()  # the indexer's defaults, stated once (memsim.problem.Indexer)

#: the standard normal on a grid: z, Φ(z) and ψ(z) = E[min(z, Z)] = z·(1 − Φ(z)) − φ(z)
#: (increasing in z), for :meth:`Arrays._causal_later_key_loads`; its quadrature points
#: per step and the most steps it sums one by one
_Z = np.linspace(-8.0, 8.0, 1601)
_PHI_CDF = 0.5 * (1 + np.array([math.erf(z / math.sqrt(2)) for z in _Z]))
_PSI = _Z * (1 - _PHI_CDF) - np.exp(-_Z * _Z / 2) / math.sqrt(2 * math.pi)
_QUAD = 2
_MAX_STEPS = 16


@dataclass(frozen=True)
class Arrays:
    """Shapes (B, N, S, H, K, D, Dv), storage width ``e`` in bytes, MLA flag, tiles
    (Br, Bc, heads per block, KV splits, warps), top-k and the indexer's (H_I, D_I, e_I)."""

    B: np.ndarray
    N: np.ndarray
    S: np.ndarray
    H: np.ndarray
    K: np.ndarray
    D: np.ndarray
    Dv: np.ndarray
    e: np.ndarray
    mla: np.ndarray
    Br: np.ndarray
    Bc: np.ndarray
    hpb: np.ndarray
    splits: np.ndarray
    warps: np.ndarray
    geometry: MaskGeometry
    top_k: np.ndarray | None = None
    index_heads: np.ndarray | int = _INDEXER.heads
    index_head_dim: np.ndarray | int = _INDEXER.head_dim
    index_e: np.ndarray | float = DTYPE_BYTES[_INDEXER.dtype]
    index_scale_block: int = _INDEXER.scale_block
    index_Br: np.ndarray | int = INDEX_BLOCK_Q
    index_chunk: np.ndarray | int = _INDEXER.logits_chunk
    slots: np.ndarray | None = None
    l2_bytes: float = 0.0
    bwd_Br: np.ndarray | None = None      # backward kernels' own tiles (None: the forward's)
    bwd_Bc: np.ndarray | None = None
    bwd_warps: np.ndarray | None = None
    bwd_slots: np.ndarray | None = None   # backward kernel's blocks resident at once
    # what a launched split-KV block with no key tile writes (flash_decode.EMPTY_SPLITS)
    empty_splits: str = "fa2"

    def backward(self) -> Arrays:
        """These arrays with the backward kernels' tiles (Br, Bc, warps) in place of the
        forward's (FA-2's backward has its own launch templates: memsim.tiling)."""
        from dataclasses import replace

        if self.bwd_Br is None:
            return self
        return replace(self, Br=self.bwd_Br, Bc=self.bwd_Bc, warps=self.bwd_warps,
                       slots=self.slots if self.bwd_slots is None else self.bwd_slots,
                       bwd_Br=None, bwd_Bc=None, bwd_warps=None, bwd_slots=None)

    def __post_init__(self) -> None:
        # B in float64: every count is a product that starts with B (or with groups =
        # B·(H // hpb)), so it is evaluated in float64 and cannot wrap around int64 however
        # large the sizes (memsim/limits.py); exact below 2^53.
        object.__setattr__(self, "B", np.asarray(self.B, dtype=np.float64))

    @property
    def index_key_bytes(self):
        return scaled_row_bytes(self.index_head_dim, self.index_e, self.index_scale_block)

    @property
    def groups(self) -> np.ndarray:
        """(batch, head group) pairs: one per set of heads_per_block heads."""
        return self.B * (self.H // self.hpb)

    @property
    def dv_load(self) -> np.ndarray:
        """V elements loaded per key beside K: 0 under MLA (V is a slice of the latent)."""
        return np.where(self.mla, 0, self.Dv)

    def tiles(self) -> TileSums:
        return tile_sums(self.N, self.S, self.Br, self.Bc, self.geometry)

    def hbm_key_loads(self, t: TileSums, bytes_per_key, Br=None, geometry=None,
                      stream_bytes=0.0, walk_down: bool = False):
        """Keys whose K/V bytes reach HBM when every query tile streams its active key tiles
        (per batch and head group; ``bytes_per_key``: K/V bytes of one key;
        ``stream_bytes``: bytes each block reads or writes once besides K/V — its Q tile,
        O tile and logsumexp — which pass through L2 between two waves' reads of a tile;
        ``walk_down``: each block walks its key tiles from the last down, as FA-2's forward
        kernel does — flash_fwd_kernel.h ``compute_attn_1rowblock``, "We iterate over the
        blocks in reverse order" — instead of from the first up).

        Without ``slots`` (the analytic default) every load reaches HBM: ``t.key_loads``.
        With ``slots`` (blocks resident at once, SMs × blocks per SM) and ``l2_bytes``, a
        closed-form L2 estimate of the launch order FA-2 and FA-3 use (query tiles fastest,
        then batch, then head group). Blocks read their key tiles in the same order at the
        same pace, so a re-read of key tile j by block a hits iff the distinct bytes
        touched since the previous reader read j — the K/V span swept by the blocks in
        flight in between — fit in L2 (an LRU misses every time past that):

        - **The groups in flight fit** (their K/V together ≤ L2): each group reads its
          union of key tiles once.
        - **Several groups per wave** (fewer query tiles than slots), causal: each wave of
          ``slots`` blocks reads the union of its tiles once (a tile sum with a query tile
          ``slots`` times taller) unless the groups in flight fit.
        - **Several groups per wave**, equal block durations: a group inside one wave reads
          its union once; each wave boundary splits one group, whose second part re-reads
          its tiles after the K/V of the ⌈slots / query tiles⌉ + 1 groups of the two waves
          and the waves' streamed bytes: from HBM iff they overflow the L2.
        - **Equal block durations** (full, window, band, chunk masks; one group at a time):
          blocks stay in lock-step waves; a wave's blocks read tile j at once (one read),
          and the next wave re-reads it after the whole K/V of the groups in the two waves,
          P of them (2 where a wave straddles two groups, as the first and last waves of a
          group do when slots do not divide the query tiles), and the Q, O and logsumexp
          a wave streams: a wave between two of the group's own re-reads its tiles from HBM
          iff K/V + streamed > L2; next to a straddling wave the span of tile j is 2n − j
          (or n + j) tiles, so the tiles whose span overflows miss.
        - **Causal** (one group at a time): block durations grow with the query tile, so
          after the first wave (which starts at once) blocks start staggered: in generation
          k (blocks k·slots … (k+1)·slots − 1, each started when block a − slots ended),
          consecutive blocks start Σ_{m<k} (d_{a−m·slots+1} − d_{a−m·slots}) apart, and
          in that gap the ``slots`` blocks in flight sweep distinct tiles: the K/V of the
          key tiles of query tile k·slots. Blocks with the same number of tiles start
          together (⌊Bc/Br⌋ of them when Bc > Br) and share their reads. So every query
          tile a ≥ a* = k*·slots, k* the first generation whose span exceeds L2, re-reads
          all its tiles once per such clump; those before a* read only new tiles. That
          is the first group, which starts on an idle GPU; the groups after it start in
          the slots the previous one frees, with irregular gaps
          (:meth:`_causal_later_key_loads`).

        **Walking down** (``walk_down``): a block reads key tile j at its end − 1 − j tile-
        times, so two blocks' reads of tile j are their *end* gap apart, not their start
        gap. An LRU's misses are those of the trace read backwards (a re-read's distance
        is the distinct bytes between two touches, the same either way; Mattson et al.
        1970), and read backwards a block walking down walks up from its end: the rules
        above hold with end gaps in place of start gaps. Under equal durations the two
        are the same (lock-step waves end together as they start). Under a causal mask a
        group's blocks end in launch order and each end gap is the start gap plus the δ
        tiles the later clump's duration adds (consecutive clumps' durations differ by
        δ tile-times, so their ends are their starts' gap + δ apart): the first
        wave, which starts at once, ends δ apart, and generation k's span grows from
        n(k·slots) − n(0) to n((k+1)·slots) − n(0) tiles.

        The trace-driven model (memsim.trace) plays the same schedule through an LRU; the
        property tests in tests/test_l2_estimate.py hold the two together.
        """
        if self.slots is None:
            return t.key_loads
        Br = self.Br if Br is None else Br
        geometry = self.geometry if geometry is None else geometry
        cap = self.l2_bytes
        slots = np.maximum(self.slots, 1)
        Q = np.maximum(t.q_tiles, 1)
        kv = t.union_keys * bytes_per_key                       # one group's K/V
        groups = np.maximum(self.groups, 1)
        streamed = slots * stream_bytes                         # a wave's Q, O, logsumexp
        in_wave = np.minimum(slots, Q)
        per_wave = tile_sums(self.N, self.S, Br * in_wave, self.Bc, geometry).key_loads
        if geometry.kind == "causal":
            groups_in_flight = np.clip(slots // Q, 1, groups)
            fits = groups_in_flight * kv <= cap
            if walk_down:
                return self._causal_down_key_loads(t, bytes_per_key, Br, geometry, slots,
                                                   stream_bytes, groups_in_flight)
            many = np.where(fits, t.union_keys, np.minimum(per_wave, t.key_loads))
            one = self._causal_key_loads(t, bytes_per_key, Br, geometry, slots, stream_bytes)
            one = np.where(kv <= cap, t.union_keys, np.minimum(one, t.key_loads))
            first = np.where(Q >= slots, one, many)             # the first head group
            later = self._causal_later_key_loads(t, bytes_per_key, Br, slots, stream_bytes)
            later = np.where((kv <= cap) | ((Q < slots) & fits), t.union_keys, later)
            return (first + (groups - 1) * np.minimum(later, t.key_loads)) / groups
        waves = np.ceil(groups * Q / slots)
        in_two_waves = np.minimum(np.ceil(slots / Q) + 1, groups)
        split = (waves - 1) / groups * (in_two_waves * kv + streamed > cap)
        many = t.union_keys * (1 + split)
        one = self._lockstep_key_loads(t, kv, streamed, per_wave, slots, Q, groups)
        return np.minimum(np.where(Q >= slots, one, many), t.key_loads)

    def _causal_down_key_loads(self, t: TileSums, bytes_per_key, Br, geometry, slots,
                               stream_bytes, groups_in_flight):
        """Key loads of a causal launch whose blocks walk their key tiles down (see
        :meth:`hbm_key_loads`), per batch and head group.

        - **The first wave** (the groups whose blocks start at once on the idle GPU: one,
          or slots / Q of them, the last in part, with fewer query tiles Q than slots)
          ends δ apart, so between two reads of a tile each clump in flight sweeps δ
          tiles of its own: slots·Br keys, at most the K/V of the ``groups_in_flight``
          (⌊slots / Q⌋, clipped to 1 … groups), with the Q, O and logsumexp of the clump
          that ends. Where that fits the L2 each re-read hits and a group reads its union
          once; where it does not, every re-read misses. With Q ≥ slots the first
          group's generations decide instead (:meth:`_causal_key_loads`, end gaps).
        - **Every later group** starts in the slots the groups before it free, at
          irregular gaps, whether it shares them with other groups (Q < slots) or not:
          each of its re-reads misses with the probability that the blocks in flight
          sweep more than the L2 in its end gap (:meth:`_causal_later_key_loads`, end
          gaps) — an expected share, not a step at the L2's edge (with the first wave's
          all-or-nothing rule for them, B 1, H 16, D 64, 2 MiB L2, 16 SMs gave
          estimate / trace 1.56 at N 700 and 1.40 at N 6000, 0.13 at N 6000 with
          2.1 MiB; tests/test_l2_estimate.py)."""
        Q = np.maximum(t.q_tiles, 1)
        groups = np.maximum(self.groups, 1)
        clump = np.maximum(self.Bc // Br, 1)
        swept = (np.minimum(slots * Br, groups_in_flight * t.union_keys) * bytes_per_key
                 + clump * stream_bytes)
        first_wave = np.where(swept <= self.l2_bytes, t.union_keys, t.key_loads)
        one = self._causal_key_loads(t, bytes_per_key, Br, geometry, slots, stream_bytes,
                                     True)
        first = np.where(Q >= slots, np.minimum(one, t.key_loads), first_wave)
        later = self._causal_later_key_loads(t, bytes_per_key, Br, slots, stream_bytes, True)
        in_first_wave = np.clip(slots / Q, 1, groups)       # groups, the last one in part
        return (in_first_wave * first
                + (groups - in_first_wave) * np.minimum(later, t.key_loads)) / groups

    def _lockstep_key_loads(self, t: TileSums, kv, streamed, per_wave, slots, Q, groups):
        """One group's HBM keys when its blocks run in lock-step waves (see
        :meth:`hbm_key_loads`): the first wave reads the union, a re-reading wave re-reads
        a wave's union (the per-wave average) when the groups of the two waves overflow."""
        waves_of_group = np.ceil(Q / slots)
        plain, slanted, both = wave_boundaries(Q, slots, groups > 1)
        wave_keys = per_wave / waves_of_group
        miss_one = kv + streamed > self.l2_bytes
        miss_both = 2 * kv + streamed > self.l2_bytes
        # next to a straddling wave the re-read of tile j follows 2·n − j (or n + j) tiles:
        # the tiles j whose span overflows miss, a fraction (2·K/V + streamed − L2) / K/V
        miss_two = np.clip((2 * kv + streamed - self.l2_bytes) / np.maximum(kv, 1e-30), 0, 1)
        return t.union_keys + wave_keys * (plain * miss_one + slanted * miss_two
                                           + both * miss_both)

    def _causal_later_key_loads(self, t: TileSums, bytes_per_key, Br, slots,
                                stream_bytes=0.0, walk_down: bool = False):
        """HBM keys of one causal head group after the first (see :meth:`hbm_key_loads`):
        its blocks start in the slots the previous group's blocks free, not in the first
        group's regular generations.

        In clumps of c = ⌊Bc/Br⌋ blocks that start together (clump i reads n_i = α + δ·i
        key tiles, δ = c·Br/Bc; P_c = slots / c clump slots; times in tile-times), the
        trace's block log shows every group after the first run in two phases (H100,
        H 32, D 128, K 8 and 32, N 16K–256K; sched_flash2 blocks, list scheduling):

        - **Start-up**, while the previous group's blocks still run (d_max = n_{Q_c−1}
          tile-times after the group's first start): clumps start at a constant mean gap
          g_s, in the merged stream of the previous group's ends and the group's own
          short blocks' ends. It covers the first i₀ = d_max / g_s clumps.
        - **Steps**: from i₀ on, clump i starts when the clump P_c before it ends, so its
          gap is that clump's gap plus δ (their durations differ by δ): μ_i = g_s + δ·k
          in the k-th P_c clumps after i₀. The gaps of a group sum to its work per slot,
          Q_c·g_s + Σ_{i ≥ i₀} δ·k_i = Σ n_i / P_c, which sets g_s.
        - **Spread**: a start-up gap is one of the group's own end gaps (m = g_s + δ)
          or a piece of one, split where one of the previous group's ends falls (h =
          μ_end + δ apart, in a gap chosen in proportion to its length, uniformly
          within it); with own gaps that are themselves start-up gaps plus δ, the
          fixed point of the first two moments is σ² = m²·(1/(1 + m/h) − 1/3)/2, and
          later gaps keep it (each is its source's gap plus δ). Measured in the trace:
          g_s 2.5–2.9, σ 1.3–1.9 per clump at GQA 16K–128K (model 2.9–3.0, 1.7–1.8).
        - **Misses**: a clump that starts g after the one before re-reads its tiles after
          the blocks in flight swept Σ_b min(g, g_b) distinct tiles (each block's window
          of g tile-times; the windows of blocks started closer than g overlap). With
          the gaps normal, that is P_c·E[min(g, G_w)], G_w ~ N(μ_w, σ²), μ_w the mean gap
          of the clumps in flight: the P_c before clump i when it reads its first tile …
          the P_c after it when it reads its last (beyond the group: the previous group's
          last step, the next group's start-up), p averaged over three such windows.
          It misses its n_i − δ old tiles iff that exceeds the M tiles the L2 holds:
          with probability 1 − Φ((g* − μ_i)/σ), μ_w + σ·ψ((g* − μ_w)/σ) = M/P_c,
          ψ(z) = E[min(z, Z)] = z·(1 − Φ(z)) − φ(z).

        ``walk_down``: the gaps that separate two reads of a tile are end gaps, each the
        start gap plus δ (:meth:`hbm_key_loads`), the previous group's and the next
        group's included.

        Returns one later group's key loads (its union read once, plus the expected
        misses), summed step by step (:data:`_QUAD` points each, at most
        :data:`_MAX_STEPS` steps, weighted by the stride past that)."""
        N, S, Bc = self.N, self.S, self.Bc
        o = S - N
        Q = np.maximum(t.q_tiles, 1).astype(np.float64)
        c = np.maximum(Bc // Br, 1)
        delta = c * Br / Bc                                  # tiles added per clump
        Qc, Pc = Q / c, np.maximum(np.asarray(slots, dtype=np.float64) / c, 1.0)
        alpha = (o + Br - 1) / Bc + 1                        # tiles of the first clump
        M = np.maximum(self.l2_bytes - c * stream_bytes, 0) / (Bc * bytes_per_key)
        parts = np.broadcast_arrays(Qc, Pc, alpha, delta, M)
        if walk_down:   # the blocks in flight sweep other groups' tiles too: every group
            need = np.ones(parts[0].shape, dtype=bool)
        else:           # a group whose key tiles all fit never misses: only the others
            need = parts[2] + parts[3] * (parts[0] - 1) > parts[4]
        total = np.zeros(need.shape)
        if np.any(need):
            total[need] = _later_misses(*(np.asarray(v, dtype=np.float64)[need]
                                          for v in parts), walk_down=walk_down)
        return t.union_keys + Bc * np.maximum(total, 0)

    def _causal_key_loads(self, t: TileSums, bytes_per_key, Br, geometry, slots,
                          stream_bytes=0.0, walk_down: bool = False):
        """One group's HBM keys under a causal mask with staggered generations (see
        :meth:`hbm_key_loads`).

        Query tiles a < a* read only their new key tiles (the prefix's union). From a* on,
        a clump re-reads all its tiles, except in the group's last ``slots`` blocks: while
        they run, the next group's blocks take the slots of the finished ones and sweep
        only the few tiles at the start of their K/V, so the span falls by one gap's tiles
        (D/slots, D the generation's span in tiles) per block launched after a; re-reads
        of tile j hit once the span D − max(0, j − (Q − 1 − a)·D/slots) fits, and block
        a misses min(n_a, D − M + (Q − 1 − a)·D/slots) tiles (M: tiles the L2 holds).
        Walking down, every span is one generation longer, slots·Br/Bc tiles more (the
        end gaps, :meth:`hbm_key_loads`), and the first wave can miss too.
        """
        N, S, Bc = self.N, self.S, self.Bc
        o = S - N
        Q = np.maximum(t.q_tiles, 1)
        tile_bytes = Bc * bytes_per_key
        clump = np.maximum(Bc // Br, 1)
        # key tiles the L2 holds beside the Q, O and logsumexp of the clump of blocks
        # that starts (and the one that ends) between two clumps' reads of a tile
        M = np.floor(np.maximum(self.l2_bytes - clump * stream_bytes, 0) / tile_bytes)

        def n_at(a):  # key tiles of query tile a (causal): ⌊(o + (a+1)·Br − 1)/Bc⌋ + 1
            return np.floor((o + (a + 1) * Br - 1) / Bc) + 1

        # generation k's span is n(k·slots) − n(0) tiles (the chain of duration differences
        # summed over k predecessors; walking down, over k + 1): the first query tile whose
        # span exceeds M, then the first tile of its generation
        extra = slots * Br / Bc if walk_down else 0.0      # the down walk's longer span
        need = M + n_at(0) - extra                          # n_a ≥ need + 1
        a_thr = np.maximum(np.ceil((need * Bc - o + 1) / Br) - 1, 0)
        k_star = np.maximum(np.ceil(a_thr / slots), 0 if walk_down else 1)
        a_star = np.minimum(np.ceil(k_star * slots / clump) * clump, Q)
        a_tail = np.clip(np.ceil((Q - slots) / clump) * clump, a_star, Q)
        tall = Br * clump

        def loads(rows, height):  # key loads of the first ``rows`` query rows
            rows = np.minimum(rows, N)
            return np.where(rows > 0, tile_sums(rows, o + rows, height, Bc, geometry)
                            .key_loads, 0.0)

        rows_star = np.minimum(a_star * Br, N)
        prefix = np.where(rows_star > 0, tile_sums(rows_star, o + rows_star, Br, Bc,
                                                   geometry).union_keys, 0.0)
        body = loads(a_tail * Br, tall) - loads(a_star * Br, tall)
        # the tail: Σ_a min(n_a, L(a)) over a_tail ≤ a < Q, one per clump, n_a and L(a)
        # linear in a (the ragged last tile counted as full: at most Bc keys over)
        span = n_at(np.floor(np.maximum(Q - slots / 2, 0) / slots) * slots) - n_at(0) + extra
        gap = span / slots
        alpha, beta = (o + Br - 1) / Bc + 1, Br / Bc        # n_a ≈ alpha + beta·a
        gamma, delta = span - M + (Q - 1) * gap, gap        # L(a) = gamma − delta·a
        cross = np.clip(np.ceil((gamma - alpha) / (beta + delta)), a_tail, Q)

        def series(a0, a1, c0, c1):  # Σ_{a0 ≤ a < a1} (c0 + c1·a)
            n = np.maximum(a1 - a0, 0)
            return n * c0 + c1 * (a0 + a1 - 1) * n / 2

        tail_tiles = (series(a_tail, cross, alpha, beta)
                      + series(cross, Q, gamma, -delta)) / clump
        tail = np.where(span > M, np.maximum(tail_tiles, 0) * Bc, 0.0)
        return prefix + body + tail

    def hbm_state_rereads(self, t: TileSums, bytes_per_row, kv_key_bytes,
                          stored_key_bytes=0.0):
        """FA-1's re-reads (and write-backs) of per-row state that reach HBM: query rows
        re-touched by a later key tile whose Q, O, ℓ, m come from HBM (and whose stored
        O, ℓ, m were evicted, i.e. written back, before that), per batch and head group.

        Without ``slots``: every re-touch, ``row_pairs − N``. With them (FA-1 Alg. 1: one
        block per group, outer loop over key tiles j, inner over the query tiles that see
        j; blocks launched batch fastest, then head group, memsim.trace.sched_flash1):
        every block lasts as long as the others, so the groups run in lock-step waves of
        ``slots`` groups, the last wave holding the ``groups mod slots`` left over. In a
        wave of G groups, between two touches of a row tile (key tiles j − 1 and j) each
        group touches the rows active at j once and one K/V tile: the re-touch hits iff
        G × (rows(j) · ``bytes_per_row`` + K/V tile j) ≤ L2 (``kv_key_bytes``: K/V bytes
        of one key; tile j holds Bc keys but the ragged last one; the tile's own rows
        are counted in the span: a slight over-count, large only when a head has one or
        two query tiles; ``stored_key_bytes``: bytes per key stored after key tile
        j − 1's inner loop, a full Bc tile in the span too: FA-1's backward dK, dV, Dao
        et al. 2022 Alg. 4 line 24, memsim/trace/sched_flash1.py:151–155). Under a
        causal mask rows(j) = N − max(0, j·Bc − (S − N)) shrinks with j, so the early
        key tiles miss and the late ones hit; under other masks rows(j) is taken as its
        mean (row_pairs / key tiles) and every re-touch misses or none does.
        """
        rereads = t.row_pairs - self.N
        if self.slots is None:
            return rereads
        kv_tile_bytes = (self._retouch_tile_keys(t) * kv_key_bytes
                         + np.minimum(self.Bc, t.union_keys) * stored_key_bytes)
        groups, slots = np.maximum(self.groups, 1), np.maximum(self.slots, 1)
        full_waves = np.floor(groups / slots)
        last = groups - full_waves * slots                   # groups of the last wave
        wide = self._state_rereads_in_wave(t, rereads, bytes_per_row, kv_tile_bytes,
                                           np.minimum(groups, slots))
        narrow = self._state_rereads_in_wave(t, rereads, bytes_per_row, kv_tile_bytes,
                                             np.maximum(last, 1))
        return (full_waves * slots * wide + last * narrow) / groups

    def _retouch_tile_keys(self, t: TileSums):
        """Keys of the K/V tile j in the span of a re-touch at key tile j ≥ 1 (see
        :meth:`hbm_state_rereads`): causal, Bc (the tiles where rows(j) crosses the
        L2 are full; the ragged last one has the fewest rows); other masks, where every
        re-touch is charged alike, the mean of tiles 1 … T − 1, the last one ragged."""
        full = np.minimum(self.Bc, t.union_keys)
        if self.geometry is not None and self.geometry.kind == "causal":
            return full
        return np.where(t.union_tiles > 1, (t.union_keys - full)
                        / np.maximum(t.union_tiles - 1, 1), full)

    def _state_rereads_in_wave(self, t: TileSums, rereads, bytes_per_row, kv_tile_bytes,
                               in_flight):
        """One group's HBM re-touches in a wave of ``in_flight`` lock-step groups (see
        :meth:`hbm_state_rereads`)."""
        rows_fit = (self.l2_bytes / in_flight - kv_tile_bytes) / bytes_per_row
        tiles = np.maximum(t.union_tiles, 1)
        if self.geometry is None or self.geometry.kind != "causal":
            mean_rows = t.row_pairs / tiles
            return np.where(mean_rows <= rows_fit, 0.0, rereads)
        N, Bc, Br = self.N, self.Bc, self.Br
        o = self.S - N
        # query tile a is active at key tile j iff its last position o + (a+1)·Br − 1
        # ≥ j·Bc: rows(j) = N − Br·max(0, ⌊(j·Bc − o)/Br⌋), whole tiles (the last one,
        # ragged or not, is active at every j). Key tiles 1 … m miss, m = j* − 1, j* the
        # first j with rows(j) ≤ rows_fit, i.e. with ⌊(j·Bc − o)/Br⌋ ≥ q:
        q = np.ceil((N - rows_fit) / Br)
        j_star = np.clip(np.ceil((q * Br + o) / Bc), 1, tiles)
        m = np.where(rows_fit >= N, 0, j_star - 1)
        # Σ_{j=1..m} rows(j) = m·N − Br·Σ_{j0 ≤ j ≤ m} ⌊(j·Bc − o)/Br⌋, j0 the first j ≥ 1
        # with j·Bc ≥ o
        j0 = np.maximum(np.ceil(o / Bc), 1)
        n_cut = np.maximum(m - j0 + 1, 0)
        cut = floor_sum(n_cut, Br, Bc, np.maximum(j0 * Bc - o, 0))
        return np.clip(m * N - Br * cut, 0, rereads)

    def hbm_query_rows(self, t: TileSums, bytes_per_row):
        """Query rows whose per-row bytes (Q, dO, logsumexp, Δ, the fp32 dQ accumulator)
        reach HBM when every key tile's block streams its active query tiles (FA-2's
        backward, grid = (key tiles, B, head groups)): :meth:`hbm_key_loads` with the roles
        of queries and keys exchanged.

        Without ``slots`` every load reaches HBM: ``t.row_pairs``. With them, the blocks of
        one head group in flight walk the same query tiles in step, so a wave of them reads
        the rows of the union of their query tiles once — the row sum with a key tile
        ``slots`` times wider; if the query-side rows of every group in flight fit in L2,
        each group reads its N rows once. The trace-driven model checks this estimate.
        """
        if self.slots is None:
            return t.row_pairs
        in_wave = np.minimum(np.maximum(self.slots, 1), np.maximum(t.union_tiles, 1))
        per_wave = tile_sums(self.N, self.S, self.Br, self.Bc * in_wave,
                             self.geometry).row_pairs
        groups_in_flight = np.clip(self.slots // np.maximum(t.union_tiles, 1), 1,
                                   np.maximum(self.groups, 1))
        fits = groups_in_flight * self.N * bytes_per_row <= self.l2_bytes
        return np.where(fits, self.N, np.minimum(per_wave, t.row_pairs))


def _normal_cdf(z):
    """Φ(z), Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), element-wise."""
    x = np.abs(z) / math.sqrt(2)
    k = 1 / (1 + 0.3275911 * x)
    poly = k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027
                                                                           + k * 1.061405429))))
    erf = 1 - poly * np.exp(-x * x)
    return 0.5 * (1 + np.sign(z) * erf)


@dataclass(frozen=True)
class _Group:
    """Per-configuration parameters of :func:`_later_misses` (1-D arrays, same length):
    clumps, clump slots, first clump's tiles, tiles per clump, start of the steps, the
    start-up gap, the gaps' spread, the L2's tiles per clump slot, the last step's gap,
    and the lag a read gap adds to a start gap (δ walking down, else 0)."""

    Qc: np.ndarray
    Pc: np.ndarray
    alpha: np.ndarray
    delta: np.ndarray
    i0: np.ndarray
    g_s: np.ndarray
    sigma: np.ndarray
    target: np.ndarray
    mu_end: np.ndarray
    lag: np.ndarray

    def take(self, mask: np.ndarray) -> _Group:
        return _Group(**{name: value[mask] for name, value in vars(self).items()})


def _integral(g: _Group, x):
    """∫_0^x μ: start-up g_s, then steps of δ per P_c clumps; before the group the
    previous group's last step, after it the next start-up; every gap plus the lag."""
    y = np.clip(x, 0, g.Qc) - g.i0
    K = np.floor(np.maximum(y, 0) / g.Pc)
    steps = np.where(y > 0, y + g.Pc * K * (K - 1) / 2 + K * (y - K * g.Pc), 0.0)
    inside = g.g_s * np.clip(x, 0, g.Qc) + g.delta * steps
    return (inside + g.mu_end * np.minimum(x, 0) + g.g_s * np.maximum(x - g.Qc, 0)
            + g.lag * x)


def _p_miss(g: _Group, mu_own, mu_w):
    """P(a clump misses): P_c·E[min(gap, G_w)] > M."""
    g_star = mu_w + g.sigma * np.interp((g.target - mu_w) / g.sigma, _PSI, _Z)
    return np.where(mu_w > g.target, 1 - _normal_cdf((g_star - mu_own) / g.sigma), 0.0)


def _step_misses(g: _Group, a0, a1, mu_k):
    """Expected old tiles re-read by the clumps a0 … a1 (:data:`_QUAD` points)."""
    width = np.maximum(a1 - a0, 0) / _QUAD
    out = 0.0
    for q in range(_QUAD):
        i = a0 + (q + 0.5) * width
        # the blocks in flight while clump i reads tile j: the P_c clumps before it
        # (j = 0) … the P_c after it (j = n_i); p averaged over three such windows
        edge = [_integral(g, i + h * g.Pc) for h in (-1.0, -0.5, 0.0, 0.5, 1.0)]
        p = sum(_p_miss(g, mu_k, (edge[w + 2] - edge[w]) / g.Pc) for w in range(3)) / 3
        out = out + p * np.maximum(g.alpha + g.delta * (i - 1), 0) * width  # old tiles
    return out


def _later_misses(Qc, Pc, alpha, delta, M, walk_down: bool = False):
    """Expected old key tiles a later causal head group re-reads from HBM (1-D arrays:
    clumps, clump slots, tiles of the first clump, tiles added per clump, tiles the L2
    holds; see :meth:`Arrays._causal_later_key_loads`): the start-up (clumps 0 … i₀)
    and the steps k = 1 … gens after it, :data:`_QUAD` points each, at most
    :data:`_MAX_STEPS` steps (every stride-th, weighted by the stride); ``walk_down``:
    read gaps are end gaps, start gaps plus δ."""
    d_max = alpha + delta * (Qc - 1)
    work = (Qc * alpha + delta * Qc * (Qc - 1) / 2) / Pc    # tile-times per slot

    def ramp_sum(L):  # Σ over the L clumps after i₀ of δ·(1 + ⌊j / P_c⌋), smoothed
        return delta * (L / 2 + L * L / (2 * Pc))

    lo, hi = np.full_like(work, 1e-6), np.maximum(work / Qc * 2, 1.0)
    for _ in range(40):                                       # bisection for g_s
        g = (lo + hi) / 2
        over = Qc * g + ramp_sum(Qc - np.minimum(d_max / g, Qc)) > work
        lo, hi = np.where(over, lo, g), np.where(over, g, hi)
    g_s = (lo + hi) / 2
    i0 = np.minimum(d_max / g_s, Qc)
    gens = np.ceil((Qc - i0) / Pc)                            # steps after i₀
    m, h = g_s + delta, g_s + delta * (gens + 1)              # own ends, previous ends
    sigma = np.sqrt(np.maximum(m * m * (1 / (1 + m / h) - 1 / 3) / 2, 1e-12))
    lag = delta if walk_down else np.zeros_like(delta)
    group = _Group(Qc=Qc, Pc=Pc, alpha=alpha, delta=delta, i0=i0, g_s=g_s, sigma=sigma,
                   target=M / Pc, mu_end=g_s + delta * gens, lag=lag)
    total = _step_misses(group, 0.0, i0, g_s + lag)
    stride = max(1.0, float(np.ceil(np.max(gens) / _MAX_STEPS)))
    k = 1.0
    while np.any(k <= gens):
        # only the groups with a step k left: the others' steps are empty (weight 0;
        # a0 = a1 = Qc), so leaving them out changes no sum
        live = k <= gens
        gk = group.take(live)
        weight = np.clip(gens[live] - k + 1, 0, stride)
        a0 = np.minimum(gk.i0 + (k - 1) * gk.Pc, gk.Qc)
        a1 = np.minimum(gk.i0 + k * gk.Pc, gk.Qc)
        total[live] = total[live] + weight * _step_misses(gk, a0, a1,
                                                          gk.g_s + gk.delta * k + gk.lag)
        k += stride
    return total


def wave_boundaries(blocks, slots, shared):
    """Expected wave boundaries inside one group of ``blocks`` equal blocks launched in
    lock-step waves of ``slots`` (group after group), by what the two waves around a
    boundary hold besides the group: (plain, slanted, both) — neither wave straddles a
    neighbouring group (a re-read after one group's bytes), one does (after 2·n − j or
    n + j tiles of the group's n: the tiles whose span overflows miss), both do (after
    two groups' bytes whatever the tile). Arrays broadcast; ``shared``: whether other
    groups share the waves (more than one group).

    Group g starts at offset o = g·blocks mod slots of its first wave, which runs over
    the multiples of d = gcd(blocks, slots), each equally often; it crosses
    B(o) = ⌊(o + blocks − 1)/slots⌋ boundaries, its first wave straddles iff o > 0 and
    its last iff (o + blocks) mod slots > 0 (averaged over the n = slots/d offsets; one
    group alone starts at o = 0 and straddles nothing)."""
    Q = np.asarray(blocks, dtype=np.int64)
    W = np.maximum(np.asarray(slots, dtype=np.int64), 1)
    Q, W, shared = np.broadcast_arrays(Q, W, np.asarray(shared, dtype=bool))
    n = np.where(shared, W // np.gcd(np.maximum(Q, 1), W), 1)   # offsets a group starts at
    k = np.arange(int(n.max(initial=1)))
    o = k * (W // n)[..., None]                           # the offsets, d apart
    valid = k < n[..., None]
    B = (o + Q[..., None] - 1) // W[..., None]
    first = (o > 0) & shared[..., None]
    last = ((o + Q[..., None]) % W[..., None] > 0) & shared[..., None]
    one = B == 1
    both = one & first & last
    slanted = np.where(one, first ^ last, (B >= 2) * (first * 1 + last * 1))
    plain = B - both - slanted
    mean = lambda v: np.where(valid, v, 0).sum(axis=-1) / n      # noqa: E731
    return mean(plain), mean(slanted), mean(both)


def handoff_hit_fraction(first_bytes, second_bytes, l2_bytes):
    """Fraction of a tensor's units that one kernel leaves in L2 for the next kernel to
    read (memsim.trace.l2: LRU, kernels back to back, one L2).

    Both kernels walk their blocks in the same launch order and each touches its tensors
    in proportion along it (``first_bytes``, ``second_bytes``: the distinct bytes each
    touches in all). The unit at fraction f of the order is re-touched after the first
    kernel's bytes past f and the second's before f, (1 − f)·first + f·second distinct
    bytes — linear in f — so it hits iff that fits the L2: all units, none, or those on
    the side of the crossing where the smaller kernel dominates."""
    first, second = np.asarray(first_bytes, float), np.asarray(second_bytes, float)
    slope = second - first
    cross = (l2_bytes - first) / np.where(slope == 0, 1.0, slope)   # d(cross) = L2
    frac = np.where(slope > 0, np.clip(cross, 0, 1), np.clip(1 - cross, 0, 1))
    return np.where(slope == 0, (first <= l2_bytes) * 1.0, frac)


def from_problem(problem, tiling, gpu=None) -> Arrays:  # (AttentionProblem, Tiling, GPU)
    """Size-1 arrays of ``problem`` under ``tiling``; with ``gpu``, HBM bytes use the L2
    reuse estimate of :meth:`Arrays.hbm_key_loads` (occupancy and L2 size from the GPU)."""
    from memsim.geometry import geometry_of

    mask = problem.mask
    geometry = geometry_of(mask) if mask.kind != "topk" else None
    idx = problem.indexer or Indexer()  # the defaults are Indexer's, stated once
    a = lambda v: np.asarray([v], dtype=np.int64)  # noqa: E731
    return Arrays(
        B=a(problem.B), N=a(problem.N), S=a(problem.S), H=a(problem.H), K=a(problem.K),
        D=a(problem.D), Dv=a(problem.Dv), e=np.asarray([DTYPE_BYTES[problem.dtype]]),
        mla=np.asarray([problem.mla]), Br=a(tiling.block_q), Bc=a(tiling.block_kv),
        hpb=a(tiling.heads_per_block), splits=a(tiling.kv_splits), warps=a(tiling.warps),
        geometry=geometry, top_k=a(mask.top_k) if mask.top_k else None,
        index_heads=idx.heads, index_head_dim=idx.head_dim, index_e=DTYPE_BYTES[idx.dtype],
        index_scale_block=idx.scale_block, index_Br=max(tiling.index_block_q, 1),
        index_chunk=idx.logits_chunk,
        slots=None if gpu is None else a(gpu.spec.sm_count * max(tiling.blocks_per_sm(gpu), 1)),
        l2_bytes=0.0 if gpu is None else gpu.l2_dram_capacity_bytes,
        **_backward_tiles(tiling, a, gpu),
    )


def _backward_tiles(tiling, a, gpu=None) -> dict:
    """bwd_Br, bwd_Bc, bwd_warps where the Tiling sets backward tiles of its own (FA-2's
    launch templates) and, with ``gpu``, bwd_slots: SMs × the resident blocks of FA-2's
    dq/dk/dv kernel (its shared memory and threads, memsim.algorithms._tiles)."""
    if not (tiling.backward_block_q or tiling.backward_block_kv or tiling.backward_threads):
        return {}
    from memsim.algorithms._tiles import blocks_per_sm, fa2_backward_kernel_sram_bytes

    br, bc, warps = tiling.backward_tiles
    out = {"bwd_Br": a(br), "bwd_Bc": a(bc), "bwd_warps": a(warps)}
    if gpu is not None:
        sram = fa2_backward_kernel_sram_bytes(br, bc, tiling.head_dim, tiling.head_dim_v,
                                              tiling.elem_bytes,
                                              gpu.spec.shared_memory_per_block_max_bytes)
        resident = blocks_per_sm(gpu, sram, warps * 32, tiling.registers_per_thread)
        out["bwd_slots"] = a(gpu.spec.sm_count * max(int(resident), 1))
    return out
