"""``memsim attention``: FLOPs, bytes per level, workspace and time of one attention call.

The problem options are shared with ``memsim trace`` through :func:`problem_options` and
:func:`build`.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from memsim.cli import app, user_errors

ALGORITHM_HELP = "standard | flash1 | flash2 | flash_decode | dsa"


def build(*, algorithm: str, gpu: str, batch: int, heads: int, kv_heads: int | None,
          seq_len: int, kv_len: int | None, head_dim: int, head_dim_v: int | None,
          dtype: str, causal: bool, bidirectional: bool, window: int | None,
          chunk: int | None, top_k: int | None, mla: bool, index_heads: int,
          index_head_dim: int, pass_: str, block_q: int | None, block_kv: int | None,
          heads_per_block: int | None, kv_splits: int | None, threads: int | None,
          sram_limit: int | None):
    """Validate the options into (problem, gpu profile, tiling)."""
    from memsim.algorithms import check_supported, get, runs_mask
    from memsim.hardware import load_gpu
    from memsim.problem import AttentionProblem, Indexer, Mask
    from memsim.tiling import default_tiling

    get(algorithm)
    profile = load_gpu(gpu)
    patterned = window is not None or chunk is not None or top_k is not None
    mask = Mask(causal=(causal or patterned) and not bidirectional, window=window,
                chunk=chunk, top_k=top_k)
    indexer = (Indexer(heads=index_heads, head_dim=index_head_dim)
               if runs_mask(algorithm, "topk") else None)
    problem = AttentionProblem(
        batch=batch, seq_len=seq_len, kv_len=kv_len, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, head_dim_v=head_dim_v, dtype=dtype, mla=mla, mask=mask,
        indexer=indexer, **{"pass": pass_})
    check_supported(algorithm, problem)
    tiling = default_tiling(problem, profile, algorithm, block_q=block_q, block_kv=block_kv,
                            heads_per_block=heads_per_block, kv_splits=kv_splits,
                            threads=threads, sram_limit_bytes=sram_limit)
    return problem, profile, tiling


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _fmt_s(t: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t * 1e9:.3g} ns"


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from memsim.roofline import BOUND_EXPLANATIONS

    p = result["problem"]
    title = (f"{result['algorithm']} on {result['gpu']}: B={p['batch']} N={p['seq_len']} "
             f"S={p['kv_len'] or p['seq_len']} H={p['heads']} K={p['kv_heads'] or p['heads']} "
             f"D={p['head_dim']} {p['dtype']} {result['mask']} {p['pass']}")
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("matmul FLOPs", f"{result['flops']:.4g}"),
        ("vector FLOPs / exp", f"{result['vector_flops']:.3g} / {result['exp_ops']:.3g}"),
        ("global (L2) bytes", _fmt_bytes(result["global_bytes"])),
        ("HBM read / write", f"{_fmt_bytes(result['hbm_read_bytes'])} / "
                             f"{_fmt_bytes(result['hbm_write_bytes'])}"),
        ("SRAM bytes", _fmt_bytes(result["sram_bytes"])),
        ("workspace", _fmt_bytes(result["workspace_bytes"])),
        ("arithmetic intensity", f"{result['arithmetic_intensity_flop_per_byte']:.1f} FLOP/B"),
        ("time (lower … upper)", f"{_fmt_s(result['lower_s'])} … {_fmt_s(result['upper_s'])}"
                                 + ("" if not result.get("backend") else
                                    f" ({result['efficiency_class']})")),
        ("tiling", f"Br={result['tiling']['block_q']} Bc={result['tiling']['block_kv']} "
                   f"heads/block={result['tiling']['heads_per_block']} "
                   f"SRAM {result['tiling']['sram_bytes'] / 1024:.0f} KiB "
                   f"waves={result['waves']:.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    terms = result["terms_s"]
    est = result.get("l2_estimate")
    reuse = est is not None and est["hbm_bytes"] < result["hbm_bytes"]
    console.print(
        f"Takeaway: bound by {result['bound']} — {BOUND_EXPLANATIONS[result['bound']]} "
        f"({_fmt_s(terms[result['bound']])} of {_fmt_s(result['time_s'])})"
        + (f", with L2 serving re-reads of K/V tiles (closed-form estimate): HBM "
           f"{_fmt_bytes(est['hbm_bytes'])}, compulsory "
           f"{_fmt_bytes(result['compulsory_bytes'])}." if reuse else "."))
    if reuse:
        nr = result["no_reuse"]
        console.print(
            f"Counting every global read as an HBM read (no reuse): {_fmt_s(nr['time_s'])}, "
            f"bound by {nr['bound']}. `memsim trace` simulates the L2.")


class Opt:
    """The attention-problem options, shared by ``memsim attention`` and ``memsim trace``."""

    algorithm = typer.Option("flash2", help=ALGORITHM_HELP)
    gpu = typer.Option("h100-sxm", help="GPU profile name (memsim gpus) or a .toml")
    batch = typer.Option(1, help="B, sequences")
    heads = typer.Option(32, help="H, query heads")
    kv_heads = typer.Option(None, help="K, key/value heads (default H)")
    seq_len = typer.Option(4096, help="N, query tokens")
    kv_len = typer.Option(None, help="S, key/value tokens (default N)")
    head_dim = typer.Option(128, help="D, head dimension of Q and K")
    head_dim_v = typer.Option(None, help="Dv, head dimension of V (default D)")
    dtype = typer.Option("bf16", help="fp32 | fp16 | bf16 | fp8")
    causal = typer.Option(False, "--causal", help="causal mask")
    bidirectional = typer.Option(False, "--bidirectional", help="window is symmetric (encoders)")
    window = typer.Option(None, help="sliding window W (implies causal)")
    chunk = typer.Option(None, help="chunked local attention C (implies causal)")
    top_k = typer.Option(None, "--top-k", help="keys per query (dsa)")
    mla = typer.Option(False, "--mla", help="V is a slice of the shared latent K")
    index_heads = typer.Option(64, help="dsa indexer heads H_I")
    index_head_dim = typer.Option(128, help="dsa indexer head dim D_I")
    block_q = typer.Option(None, "--block-q", help="Br, query tokens per tile")
    block_kv = typer.Option(None, "--block-kv", help="Bc, keys per tile")
    heads_per_block = typer.Option(None, help="query heads packed per block")
    kv_splits = typer.Option(None, help="decoding splits (flash_decode, dsa)")
    threads = typer.Option(None, help="threads per block (default 128)")
    sram_limit = typer.Option(None, help="SRAM bytes per block (default: the GPU's)")
    matmul_unit = typer.Option("tensor", help="tensor | fp32 (Numba kernels)")
    backend = typer.Option(None, help="trtllm | vllm | sglang: that framework's fitted kernel "
                                      "class (default: memsim's roofline on the profile)")
    as_json = typer.Option(False, "--json", help="print one JSON object")


def build_from(options: dict):  # type: ignore[no-untyped-def]
    """:func:`build` from a command's local variables (the names of :func:`build`'s
    parameters are the option names)."""
    import inspect

    names = inspect.signature(build).parameters
    return build(**{k: v for k, v in options.items() if k in names})


def check_matmul_unit(matmul_unit: str) -> None:
    from memsim.errors import InputError

    if matmul_unit not in ("tensor", "fp32"):
        raise InputError("matmul_unit", matmul_unit, "must be 'tensor' or 'fp32'")


@app.command("attention")
@user_errors
def attention(
    algorithm: str = Opt.algorithm, gpu: str = Opt.gpu, batch: int = Opt.batch,
    heads: int = Opt.heads, kv_heads: int = Opt.kv_heads, seq_len: int = Opt.seq_len,
    kv_len: int = Opt.kv_len, head_dim: int = Opt.head_dim, head_dim_v: int = Opt.head_dim_v,
    dtype: str = Opt.dtype, causal: bool = Opt.causal, bidirectional: bool = Opt.bidirectional,
    window: int = Opt.window, chunk: int = Opt.chunk, top_k: int = Opt.top_k,
    mla: bool = Opt.mla, index_heads: int = Opt.index_heads,
    index_head_dim: int = Opt.index_head_dim,
    pass_: str = typer.Option("forward", "--pass", help="forward | backward | forward+backward"),
    block_q: int = Opt.block_q, block_kv: int = Opt.block_kv,
    heads_per_block: int = Opt.heads_per_block, kv_splits: int = Opt.kv_splits,
    threads: int = Opt.threads, sram_limit: int = Opt.sram_limit,
    matmul_unit: str = Opt.matmul_unit, backend: str = Opt.backend, as_json: bool = Opt.as_json,
) -> None:
    """FLOPs, bytes at every memory level, workspace and roofline time of one attention call."""
    from memsim.attention import predict

    check_matmul_unit(matmul_unit)
    problem, profile, tiling = build_from(locals())
    result = predict(problem, profile, algorithm, tiling, matmul_unit=matmul_unit,
                     backend=backend).to_dict()
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_table(result)
