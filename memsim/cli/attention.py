"""``memsim attention``: FLOPs, bytes per level, workspace and time of one attention call.

The problem options are shared with ``memsim trace`` through :func:`problem_options` and
:func:`build`.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from memsim import limits
from memsim.cli import app, user_errors
from memsim.limits import size_option
from memsim.units import INDEXER_HEAD_DIM, INDEXER_HEADS
from memsim.units import format_bytes as _fmt_bytes
from memsim.units import format_seconds as _fmt_s

ALGORITHM_HELP = ("standard | standard_blockskip | flash1 | flash2 | flash_decode | dsa; a "
                  "comma-separated list compares several in one table")


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
    mask = Mask(causal=not bidirectional, window=window, chunk=chunk, top_k=top_k)
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


def expand(options: dict) -> list[dict]:
    """One set of options per (algorithm, N) of the comma-separated ``algorithm`` and
    ``seq_len`` lists, algorithm outer; raises :class:`InputError` for an empty or
    non-integer entry."""
    from memsim.errors import InputError

    algorithms = [a.strip() for a in str(options["algorithm"]).split(",")]
    lengths = []
    for text in str(options["seq_len"]).split(","):
        try:
            value = int(text)
        except ValueError:
            raise InputError("seq_len", options["seq_len"],
                             "must be an integer or a comma-separated list of integers"
                             ) from None
        lengths.append(limits.check_size("seq_len", value, limits.MAX_TOKENS))
    if not all(algorithms):
        raise InputError("algorithm", options["algorithm"], "has an empty entry")
    return [options | {"algorithm": a, "seq_len": n} for a in algorithms for n in lengths]


def _list_title(r: dict[str, Any]) -> str:
    p = r["problem"]
    return (f"B={p['batch']} H={p['heads']} K={p['kv_heads'] or p['heads']} D={p['head_dim']} "
            f"{p['dtype']} {r['mask']} {p['pass']}")


def print_rows(title: str, rows: list[dict[str, Any]], columns) -> None:
    """One table, a row per result; ``columns``: (heading, function of a result → text)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, (heading, _) in enumerate(columns):
        table.add_column(heading, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    Console().print(table)


LIST_COLUMNS = (
    ("algorithm", lambda r: r["algorithm"]),
    ("N", lambda r: str(r["problem"]["seq_len"])),
    ("no reuse", lambda r: _fmt_bytes(r["hbm_bytes"])),
    ("L2 est.", lambda r: _fmt_bytes((r.get("l2_estimate") or r)["hbm_bytes"])),
    ("memory", lambda r: _fmt_bytes(r["workspace_bytes"])),
    ("time", lambda r: _fmt_s(r["time_s"])),
    ("bound", lambda r: r["bound"]),
)


class Opt:
    """The attention-problem options, shared by ``memsim attention`` and ``memsim trace``."""

    algorithm = typer.Option("flash2", help=ALGORITHM_HELP)
    gpu = typer.Option("h100-sxm", help="GPU profile name (memsim gpus) or a .toml")
    batch = size_option(1, "--batch", ceiling=limits.MAX_BATCH, help="B, sequences")
    heads = size_option(32, "--heads", ceiling=limits.MAX_HEADS, help="H, query heads")
    kv_heads = size_option(None, "--kv-heads", ceiling=limits.MAX_HEADS,
                           help="K, key/value heads (default H)")
    seq_len = typer.Option("4096", help="N, query tokens; a comma-separated list compares "
                           "several in one table")
    kv_len = size_option(None, "--kv-len", ceiling=limits.MAX_TOKENS,
                         help="S, key/value tokens (default N)")
    head_dim = size_option(128, "--head-dim", ceiling=limits.MAX_HEAD_DIM,
                           help="D, head dimension of Q and K")
    head_dim_v = size_option(None, "--head-dim-v", ceiling=limits.MAX_HEAD_DIM,
                             help="Dv, head dimension of V (default D)")
    dtype = typer.Option("bf16", help="fp32 | fp16 | bf16 | fp8")
    causal = typer.Option(True, "--causal", help="causal mask: the default (memsim.problem.Mask)")
    bidirectional = typer.Option(False, "--bidirectional",
                                 help="no causal mask: full attention, or a symmetric window")
    window = size_option(None, "--window", ceiling=limits.MAX_TOKENS,
                         help="sliding window W (implies causal)")
    chunk = size_option(None, "--chunk", ceiling=limits.MAX_TOKENS,
                        help="chunked local attention C (implies causal)")
    top_k = size_option(None, "--top-k", ceiling=limits.MAX_TOKENS, help="keys per query (dsa)")
    mla = typer.Option(False, "--mla", help="V is a slice of the shared latent K")
    index_heads = size_option(INDEXER_HEADS, "--index-heads", ceiling=limits.MAX_HEADS,
                              help="dsa indexer heads H_I")
    index_head_dim = size_option(INDEXER_HEAD_DIM, "--index-head-dim",
                                 ceiling=limits.MAX_HEAD_DIM,
                                 help="dsa indexer head dim D_I")
    block_q = size_option(None, "--block-q", ceiling=limits.MAX_TOKENS,
                          help="Br, query tokens per tile")
    block_kv = size_option(None, "--block-kv", ceiling=limits.MAX_TOKENS, help="Bc, keys per tile")
    heads_per_block = size_option(None, "--heads-per-block", ceiling=limits.MAX_HEADS,
                                  help="query heads packed per block")
    kv_splits = size_option(None, "--kv-splits", ceiling=limits.MAX_KV_SPLITS,
                            help="decoding splits (flash_decode, dsa)")
    threads = size_option(None, "--threads", ceiling=limits.MAX_THREADS,
                          help="threads per block (default 128; at most the GPU's)")
    sram_limit = size_option(None, "--sram-limit", ceiling=limits.MAX_SRAM_BYTES,
                             help="SRAM bytes per block (default and most: the GPU's)")
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
    heads: int = Opt.heads, kv_heads: int = Opt.kv_heads, seq_len: str = Opt.seq_len,
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
    results = []
    for options in expand(locals()):
        problem, profile, tiling = build_from(options)
        results.append(predict(problem, profile, options["algorithm"], tiling,
                               matmul_unit=matmul_unit, backend=backend).to_dict())
    if as_json:                      # one object; JSON Lines for a list
        for result in results:
            typer.echo(json.dumps(result))
    elif len(results) == 1:
        print_table(results[0])
    else:
        print_rows(f"HBM bytes and time on {results[0]['gpu']}: {_list_title(results[0])}; "
                   "memory: workspace", results, LIST_COLUMNS)
