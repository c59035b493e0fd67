"""The Tiling a Numba kernel runs with: memsim's default, within the static shared memory a
Numba kernel may declare (48 KiB per block), with square-ish tiles where the query tile is
free. One rule for the bench, the GPU smoke run and the validation suites; no GPU imports.
"""

from __future__ import annotations

from memsim.algorithms import tiles_queries
from memsim.errors import InputError
from memsim.tiling import Tiling, default_tiling

#: Static shared memory a Numba kernel may declare per block (CUDA's static limit).
STATIC_SHARED_LIMIT_BYTES = 48 * 1024
#: Candidate Br and Bc of the tiled kernels, tokens.
TILE_SIZES = (128, 64, 32, 16)
#: Threads per block: one per query row of the block, in whole warps, 32 to 256.
MIN_THREADS, MAX_THREADS = 32, 256


def kernel_tiling(problem, gpu, algorithm: str, *, block_q: int | None = None,
                  block_kv: int | None = None, threads: int | None = None,
                  kv_splits: int | None = None, index_block_q: int | None = None) -> Tiling:
    """memsim's default Tiling of ``algorithm`` for ``problem`` on ``gpu`` (a GPU profile)
    within min(48 KiB, the GPU's shared memory per block). Where the query tile is free
    (:func:`memsim.algorithms.tiles_queries`) and no size is given: the largest square-ish
    (Br, Bc) from :data:`TILE_SIZES` that fits — memsim's default shrinks Br to 1 before it
    touches Bc, which at fp32 leaves one query row per block. Threads default to the rows
    of a block rounded up to whole warps: these kernels give each query row one thread."""
    limit = min(STATIC_SHARED_LIMIT_BYTES, gpu.spec.shared_memory_per_block_max_bytes)
    sizes = [(block_q, block_kv)]
    if tiles_queries(algorithm) and block_q is None and block_kv is None:
        sizes = sorted(((br, bc) for br in TILE_SIZES for bc in TILE_SIZES),
                       key=lambda s: (min(s), s[0] * s[1], s[0]), reverse=True)
    for i, (br, bc) in enumerate(sizes):
        try:
            tiling = default_tiling(problem, gpu, algorithm, block_q=br, block_kv=bc,
                                    kv_splits=kv_splits, threads=threads,
                                    sram_limit_bytes=limit)
            break
        except InputError:
            if i == len(sizes) - 1:
                raise
    update: dict[str, int] = {}
    if threads is None:
        update["threads"] = min(MAX_THREADS, max(MIN_THREADS, -(-tiling.rows // 32) * 32))
    if index_block_q is not None:
        update["index_block_q"] = index_block_q
    return tiling.model_copy(update=update).check_fits(limit)
