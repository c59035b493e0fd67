"""The line-level L2 (memsim/trace/l2_lines.py): sectors, lines, sets, ways, write-back;
the geometry of a tile in its tensor's layout; and what it says about the tile L2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from memsim.algorithms import ALGORITHMS, check_supported
from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import default_tiling
from memsim.trace import l2_lines
from memsim.trace.l2 import HBM_READ, HBM_WRITE
from memsim.trace.layout import Layout
from memsim.trace.program import LOAD, Access, KernelBuilder
from memsim.trace.schedule import build_schedule
from memsim.trace.simulate import simulate

LINE, SECTOR = 128, 32


def _cache(sets: int, ways: int, hashed: bool = False) -> tuple:
    return l2_lines.new_state(sets * ways * LINE, LINE, SECTOR, ways, hashed)


def _stats() -> np.ndarray:
    return np.zeros((1, 4))


def test_sector_granular_fill_and_reuse() -> None:
    """A load fills only the sectors it asks for (32 B each from DRAM); the rest of the
    line is read when asked for; a re-read hits."""
    st_, stats = _cache(4, 2), _stats()
    assert not l2_lines.line_access(st_, 7, 0b0001, False, 0, stats)
    assert stats[0, HBM_READ] == SECTOR
    assert not l2_lines.line_access(st_, 7, 0b1111, False, 0, stats)   # line present, 3 new
    assert stats[0, HBM_READ] == 4 * SECTOR
    assert l2_lines.line_access(st_, 7, 0b0110, False, 0, stats)
    assert stats[0, HBM_READ] == 4 * SECTOR


def test_write_allocate_and_write_back_of_dirty_sectors_only() -> None:
    """A store reads nothing from DRAM; eviction and flush write back the dirty sectors,
    not the line."""
    st_, stats = _cache(1, 1), _stats()
    l2_lines.line_access(st_, 3, 0b0011, True, 0, stats)         # 2 dirty sectors
    l2_lines.line_access(st_, 3, 0b0100, False, 0, stats)        # a clean one read
    assert stats[0, HBM_READ] == SECTOR and stats[0, HBM_WRITE] == 0
    l2_lines.line_access(st_, 4, 0b1000, True, 0, stats)         # evicts line 3
    assert stats[0, HBM_WRITE] == 2 * SECTOR
    assert l2_lines.flush(st_, stats) == SECTOR                   # line 4's one sector
    assert stats[0, HBM_WRITE] == 3 * SECTOR
    assert l2_lines.flush(st_, stats) == 0                        # clean now


def test_lru_within_a_set_and_conflict_misses() -> None:
    """Three lines of one set cycled through two ways always miss (LRU); three ways hold
    them. With the modulo index, lines a multiple of the sets apart share a set."""
    for ways, misses in ((2, 9), (3, 3)):
        st_, stats = _cache(4, ways), _stats()
        for _ in range(3):
            for line in (0, 4, 8):                                # all in set 0 of 4
                l2_lines.line_access(st_, line, 0b1111, False, 0, stats)
        assert stats[0, HBM_READ] == misses * LINE, ways


def test_hashed_index_spreads_a_power_of_two_stride() -> None:
    """Lines 2^k apart fall into one set under the modulo index (sets a power of two)
    and into many under the hash, so they stop evicting each other."""
    lines = np.arange(64) * 64
    for hashed, most in ((False, 1), (True, 20)):
        st_, stats = _cache(64, 4, hashed), _stats()
        for _ in range(2):
            for line in lines:
                l2_lines.line_access(st_, int(line), 0b1111, False, 0, stats)
        used_sets = len(np.unique(np.flatnonzero(st_[0] >= 0) // 4))
        assert (used_sets == most) if not hashed else (used_sets >= most), hashed
    assert stats[0, HBM_READ] < 2 * 64 * LINE        # hashed: some second reads hit


def _kernel_geometry(shape, elem_bytes, index, unit_bytes, *, head_axis=None, hpg=1,
                     step=0, count=1, groups=1):
    layout = Layout()
    x = layout.add("t", shape, elem_bytes, "input", head_axis=head_axis, heads_per_group=hpg)
    t = layout[x]
    kb = KernelBuilder("k", 1, per_head=groups > 1, sram_bytes=0)
    kb.run(0, 0, count, [Access(LOAD, x, t.address(*index), unit_bytes, step_bytes=step)])
    return l2_lines.unit_geometry(layout, kb.build(), 1, groups)


def test_geometry_of_a_gqa_query_tile() -> None:
    """A Q tile of 64 rows × 2 heads × D 72 bf16 in (B, N, H, D) = (1, 256, 8, 72): rows
    of 2 · 144 B every 8 · 144 B, stepping 64 rows; ragged or misaligned rows included."""
    row = 8 * 72 * 2
    geom, fallbacks = _kernel_geometry((1, 256, 8, 72), 2, (0, 64, 2, 0), 64 * 2 * 72 * 2,
                                       head_axis=2, hpg=2, step=64 * row, count=3,
                                       groups=4)
    assert fallbacks == 0
    assert list(geom[0]) == [2 * 72 * 2, 64, row, 1, 0, 1, 0]


def test_geometry_of_an_mla_value_slice() -> None:
    """MLA's V: the first Dv = 512 of a 576-element latent row, Bc rows: rows of 1024 B
    every 1152 B (the innermost extent is what the unit's bytes leave)."""
    geom, fallbacks = _kernel_geometry((1, 1024, 1, 576), 2, (0, 128, 0, 0), 64 * 512 * 2,
                                       step=64 * 1152, count=4)
    assert fallbacks == 0
    assert list(geom[0]) == [1024, 64, 1152, 1, 0, 1, 0]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_schedule_has_a_box_geometry(name: str) -> None:
    """Every access of every registered algorithm's kernels (forward and, where
    modelled, backward; GQA, odd lengths, D·e not a multiple of 32 B) is a box of its
    tensor: no unit falls back to one contiguous segment."""
    gpu = load_gpu("h100-sxm")
    for pass_ in ("forward", "backward"):
        mask = Mask(top_k=64) if name == "dsa" else Mask()
        p = AttentionProblem(batch=2, seq_len=300, kv_len=300 if name != "flash_decode"
                             else 300, heads=8, kv_heads=2, head_dim=72, mask=mask,
                             **{"pass": pass_})
        if name == "flash_decode":
            p = p.model_copy(update={"seq_len": 1})
        try:
            check_supported(name, p)
        except InputError:
            continue
        s = build_schedule(p, default_tiling(p, gpu, name), name, None,
                           gpu.spec.shared_memory_per_block_max_bytes)
        for k in s.kernels:
            groups = s.instances(k, simulated=False) // s.dims.B
            _, fallbacks = l2_lines.unit_geometry(s.layout, k, s.dims.B, groups)
            assert fallbacks == 0, (name, pass_, k.name)


def test_lines_equal_tiles_when_nothing_is_evicted() -> None:
    """Rows that are whole sectors (D · e = 256 B) and an L2 that holds everything: both
    models read each input once and write each output once, to the byte; a misaligned
    row (D 72, bf16: 144 B) costs no more either, because neighbouring heads read the
    shared sectors while they are still resident."""
    gpu = load_gpu("h100-sxm")
    for D in (128, 72):
        p = AttentionProblem(batch=1, seq_len=1000, heads=8, kv_heads=2, head_dim=D)
        a = simulate(p, gpu, "flash2")
        b = simulate(p, gpu, "flash2", a.tiling, l2_model="lines")
        assert b.l2_model == "lines" and b.to_dict()["l2_model"] == "lines"
        assert b.cost.hbm_read_bytes == a.cost.hbm_read_bytes
        assert b.cost.hbm_write_bytes == a.cost.hbm_write_bytes
        assert b.cost.global_bytes == a.cost.global_bytes


def test_units_written_in_the_slices_they_are_read_in_hit_in_both_models() -> None:
    """Eager attention under MLA: QKᵀ reads the scaled latent K as two slices per key
    tile (the first Dv elements and the rope part), and the scale kernel writes it in the
    same two slices (sched_standard._scale_kernel's ``split_at``). The tile L2 keys a unit
    by its first byte, so before it found the rope slice never written and read it from
    DRAM (S · (D − Dv) · 4 bytes, bf16 inputs computed on fp32 copies) where the line L2
    found its sectors resident; now both read the scaled K from L2 only, and agree on
    the whole call."""
    gpu = load_gpu("h100-sxm")
    S, D, Dv = 300, 576, 512
    p = AttentionProblem(batch=1, seq_len=S, heads=16, kv_heads=1, head_dim=D,
                         head_dim_v=Dv, mla=True)
    a = simulate(p, gpu, "standard")
    b = simulate(p, gpu, "standard", a.tiling, l2_model="lines")
    tiles = {t["name"]: t["hbm_read_bytes"] for t in a.tensors}
    lines = {t["name"]: t["hbm_read_bytes"] for t in b.tensors}
    assert tiles["k_scaled"] == lines["k_scaled"] == 0
    assert a.cost.hbm_read_bytes == b.cost.hbm_read_bytes


def test_lines_need_the_profile_fields() -> None:
    p = AttentionProblem(batch=1, seq_len=256, heads=8, head_dim=64)
    with pytest.raises(InputError, match="l2_ways"):
        simulate(p, "mi300x", "flash2", l2_model="lines")
    with pytest.raises(InputError, match="l2_model"):
        simulate(p, "h100-sxm", "flash2", l2_model="sectors")


def _small_gpu(l2_bytes: int, sm_count: int):
    gpu = load_gpu("h100-sxm")
    spec = gpu.spec.model_copy(update={"l2_bytes": l2_bytes, "sm_count": sm_count})
    return gpu.model_copy(update={"spec": spec})


def _read_ratio(p: AttentionProblem, gpu, algorithm: str = "flash2") -> float:
    a = simulate(p, gpu, algorithm)
    b = simulate(p, gpu, algorithm, a.tiling, l2_model="lines")
    return b.cost.hbm_read_bytes / a.cost.hbm_read_bytes


def test_misaligned_rows_take_whole_lines_of_capacity() -> None:
    """Where the tile L2 says a head's K/V just fits, the line L2 thrashes: K and V rows
    of D 72 bf16 are 144 B, interleaved with the other KV head's every 288 B, so each
    row touches two 128 B lines and a line's capacity is taken whole, whichever of its
    sectors are valid — one head's K/V (S 3468) is 1.00 MB as tiles and 1.78 MB as
    lines. At a 1 MiB L2 (4 SMs, causal FA-2, H 8, K 2): 5.4 × the tile L2's DRAM reads
    (measured 2026-12-01; 4–1024 ways, hashed or modulo sets: 5.4–5.8, so not conflict
    misses); at 2 MiB the rows fit as lines too (1.04); rows of D 64 (128 B, one line
    each) agree at both (0.98, 1.00). Since FA-2's key tiles are walked down (2026-12-02,
    branch revwalk): 4.57 at 1 MiB; 1.10 at 2 MiB, where the 1.78 MB of lines and the
    tiles the other blocks in flight sweep between two reads of a tile (their end gaps)
    just overflow; 1.02 at 3 MiB; D 64 1.00 at 1 and 2 MiB. Since FA-2's forward declares
    its sourced 255 registers per thread (2026-12-02, branch regs: 2 blocks per SM, not 3):
    D 72 4.50 / 1.10 / 1.02; D 64 1.08 at 1 MiB (measured, not analysed), 1.00 at 2 MiB."""
    p72 = AttentionProblem(batch=1, seq_len=3468, heads=8, kv_heads=2, head_dim=72)
    p64 = p72.model_copy(update={"head_dim": 64})
    assert _read_ratio(p72, _small_gpu(1 << 20, 4)) > 4
    assert _read_ratio(p72, _small_gpu(2 << 20, 4)) == pytest.approx(1.10, abs=0.03)
    assert _read_ratio(p72, _small_gpu(3 << 20, 4)) < 1.05
    assert _read_ratio(p64, _small_gpu(1 << 20, 4)) == pytest.approx(1.08, abs=0.03)
    assert abs(_read_ratio(p64, _small_gpu(2 << 20, 4)) - 1) < 0.05


#: lines / tiles DRAM read bytes where the tile L2 has no capacity threshold near: the
#: spread measured when written was 0.9992–1.0045 (see the property's docstring)
FLAT_READ_RATIO_TOLERANCE = 0.02


@settings(max_examples=12, deadline=None)
@given(alg=st.sampled_from(["flash1", "flash2", "standard"]),
       n64=st.integers(1, 32), H=st.sampled_from([4, 8]), k_div=st.sampled_from([1, 2, 4]),
       D=st.sampled_from([64, 128]), causal=st.booleans(),
       dtype=st.sampled_from(["bf16", "fp32"]),
       l2_kib=st.sampled_from([256, 512, 1024, 2048]), sms=st.sampled_from([4, 8]))
def test_lines_against_tiles(alg, n64, H, k_div, D, causal, dtype, l2_kib, sms) -> None:
    """What the line L2 says about the tile L2, random small shapes on a shrunken GPU
    (0.25–2 MiB L2, 4–8 SMs) whose rows are whole lines (D 64 / 128, N a multiple of
    64): wherever the tile L2's DRAM reads are the same at 0.7× and 1.3× the capacity
    (no threshold near, so hashed sets filling unevenly and lines leaving one by one
    cannot matter), the line L2 reads the same bytes within FLAT_READ_RATIO_TOLERANCE;
    always at least the inputs once.

    Measured 2026-12-01 (/tmp scripts, numpy draws of this domain, seed 5): 150 draws,
    86 flat, lines / tiles 0.9992–1.0045 on them; all 150: 148 within 10 %, 0.77–1.16
    (a threshold within ±30 % of the capacity: the two models cross it at different
    capacities). A wider domain (200 draws, seeds 31–32: N 64–4096 any, D 64–128 incl.
    72, 80, 96, B 1–2, H 4–16, 0.25–4 MiB, 4–16 SMs): 171/200 within 10 % — FA-1 63/64
    (0.84–1.07), FA-2 56/64 (0.97–5.44), eager standard 52/72 (0.81–1.25). Where they
    differ: (1) score rows of S keys not a multiple of 16 bf16 (eager standard, 1.1–1.25
    for reads and writes alike): a tile row's 128 B straddle five sectors, and the next
    key tile's half of the shared sector is evicted before it comes when one step's
    tiles of all blocks in flight overflow the shrunken L2; (2) a working set near the
    capacity (FA-2 1.30 at N 1092 GQA fp32 2 MiB; 1.35 at N 1900 D 72): lines leave one
    by one where the tile L2 keeps or drops a tile whole, and a hashed 16-way set fills
    unevenly; (3) misaligned K/V rows taking two lines
    (test_misaligned_rows_take_whole_lines_of_capacity: the 5.44); (4) below 1 (FA-1
    0.84 at N 85, standard 0.81 at N 239, both fp32 with D 72 / 96): the tile L2
    re-reads from DRAM whole units of P (standard) and of Q and O (FA-1) that the line
    L2 still holds in part — a unit is kept or dropped whole, and a tensor read in units
    of another shape than it was written in misses by key
    (test_units_of_different_shapes_share_lines); not analysed further.
    """
    p = AttentionProblem(batch=1, seq_len=64 * n64, heads=H, kv_heads=H // k_div,
                         head_dim=D, dtype=dtype, mask=Mask(causal=causal))
    l2_bytes = l2_kib * 1024
    a = simulate(p, _small_gpu(l2_bytes, sms), alg)
    below, above = (simulate(p, _small_gpu(int(f * l2_bytes), sms), alg, a.tiling)
                    .cost.hbm_read_bytes for f in (0.7, 1.3))
    b = simulate(p, _small_gpu(l2_bytes, sms), alg, a.tiling, l2_model="lines")
    inputs = sum(t["bytes"] for t in b.tensors if t["role"] == "input")
    assert b.cost.hbm_read_bytes >= inputs
    assume(abs(below / above - 1) < 0.01)
    ratio = b.cost.hbm_read_bytes / a.cost.hbm_read_bytes
    assert abs(ratio - 1) <= FLAT_READ_RATIO_TOLERANCE, ratio


def test_cli_l2_model_option() -> None:
    """``memsim trace --l2-model lines`` runs the line L2 (the JSON says so; the title
    names it); a misspelt model is one error line and exit 2."""
    import json

    from typer.testing import CliRunner

    from memsim.cli import _register, app

    _register()
    small = ["trace", "--seq-len", "512", "--heads", "4", "--kv-heads", "2", "--head-dim",
             "72"]
    result = CliRunner().invoke(app, [*small, "--l2-model", "lines", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["l2_model"] == "lines" and out["hbm_read_bytes"] > 0
    table = CliRunner().invoke(app, [*small, "--l2-model", "lines"])
    assert table.exit_code == 0 and "lines: sectors, sets, ways" in table.output
    bad = CliRunner().invoke(app, [*small, "--l2-model", "sectors"])
    assert bad.exit_code == 2 and "l2_model" in bad.output
