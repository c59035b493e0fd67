"""``memsim op gemm | all-reduce | moe``: time of the operators that are not attention.

Each prints a small table, or with ``--json`` one object with at least ``time_s``,
``bound``, ``flops``, ``hbm_bytes`` (see :class:`memsim.ops.OpPrediction`).
"""

from __future__ import annotations

import json

import typer

from memsim import limits
from memsim.cli import app, user_errors
from memsim.limits import size_option

op_app = typer.Typer(help="Time of one non-attention operator (GEMM, all-reduce, MoE).",
                     no_args_is_help=True)
app.add_typer(op_app, name="op")

BACKEND_HELP = "trtllm | vllm | sglang: the framework whose kernel class is used (default trtllm)"


class Opt:
    gpu = typer.Option("h100-sxm", help="GPU profile name (memsim gpus) or a .toml")
    backend = typer.Option(None, help=BACKEND_HELP)
    as_json = typer.Option(False, "--json", help="print one JSON object")


def _show(title: str, result: dict, as_json: bool, extra: dict) -> None:
    result = {**extra, **result}
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    from memsim.cli.attention import _fmt_bytes, _fmt_s

    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("time", _fmt_s(result["time_s"]))
    table.add_row("bound", str(result["bound"]))
    table.add_row("latency floor", _fmt_s(result["launch_s"]))
    for name, value in result["terms_s"].items():
        table.add_row(f"{name} term", _fmt_s(value))
    table.add_row("FLOPs", f"{result['flops']:.4g}")
    table.add_row("HBM bytes", _fmt_bytes(result["hbm_bytes"]))
    for name, value in result["detail"].items():
        table.add_row(name, f"{value:g}" if isinstance(value, float) else str(value))
    Console().print(table)


@op_app.command("gemm")
@user_errors
def gemm(m: int = size_option(..., "--m", ceiling=limits.MAX_WIDTH * limits.MAX_BATCH,
                             help="rows of A and C (tokens)"),
         n: int = size_option(..., "--n", ceiling=limits.MAX_WIDTH,
                             help="columns of B and C (output features)"),
         k: int = size_option(..., "--k", ceiling=limits.MAX_WIDTH,
                             help="inner dimension (input features)"),
         dtype: str = typer.Option("bf16", help="bf16 | fp16 | fp8 | fp8_block | int8 | fp32"),
         gpu: str = Opt.gpu, backend: str = Opt.backend, as_json: bool = Opt.as_json) -> None:
    """C[m, n] = A[m, k] · B[k, n]: CUTLASS tiles in waves, roofline, latency floor."""
    from memsim.ops import check_backend
    from memsim.ops import gemm as op

    backend = check_backend(backend)
    r = op.predict(m, n, k, dtype=dtype, gpu=gpu, backend=backend).to_dict()
    _show(f"gemm m={m} n={n} k={k} {dtype} on {gpu} ({backend})", r, as_json,
          {"op": "gemm", "gpu": gpu, "backend": backend, "m": m, "n": n, "k": k, "dtype": dtype})


@op_app.command("all-reduce")
@user_errors
def all_reduce(message_bytes: int = size_option(..., "--bytes", ceiling=limits.MAX_MESSAGE_BYTES,
                                               help="bytes per GPU"),
               gpus: int = size_option(..., "--gpus", ceiling=limits.MAX_TP,
                                      help="GPUs in the group"),
               gpu: str = Opt.gpu, backend: str = Opt.backend,
               as_json: bool = Opt.as_json) -> None:
    """All-reduce with the algorithm the backend's rule picks (one-shot, two-shot, NCCL)."""
    from memsim.ops import check_backend, comm

    backend = check_backend(backend)
    r = comm.all_reduce(message_bytes, gpus, gpu=gpu, backend=backend).to_dict()
    _show(f"all-reduce {message_bytes} B over {gpus} x {gpu} ({backend})", r, as_json,
          {"op": "all_reduce", "gpu": gpu, "backend": backend, "bytes": message_bytes,
           "gpus": gpus})


@op_app.command("moe")
@user_errors
def moe(tokens: int = size_option(..., "--tokens", ceiling=limits.MAX_WIDTH * limits.MAX_BATCH,
                                  help="tokens entering the layer"),
        hidden: int = size_option(..., "--hidden", ceiling=limits.MAX_WIDTH, help="model width"),
        inter: int = size_option(..., "--inter", ceiling=limits.MAX_WIDTH,
                                 help="one expert's intermediate width"),
        experts: int = size_option(..., "--experts", ceiling=limits.MAX_EXPERTS,
                                   help="routed experts"),
        top_k: int = size_option(..., "--top-k", ceiling=limits.MAX_EXPERTS,
                                 help="experts per token"),
        tp: int = size_option(1, "--tp", ceiling=limits.MAX_TP,
                              help="tensor parallelism inside each expert"),
        ep: int = size_option(1, "--ep", ceiling=limits.MAX_TP, help="expert parallelism"),
        dtype: str = typer.Option("bf16", help="bf16 | fp16 | fp8 | fp8_block | w4a16_mxfp4"),
        distribution: str = typer.Option("balanced",
                                         help="balanced | strided | uniform | power_law_<alpha>"),
        gpu: str = Opt.gpu, backend: str = Opt.backend, as_json: bool = Opt.as_json) -> None:
    """One MoE FFN layer on the busiest GPU: routing + grouped GEMM over local experts."""
    from memsim.ops import check_backend
    from memsim.ops import moe as op

    backend = check_backend(backend)
    r = op.predict(tokens, hidden, inter, experts, top_k, tp=tp, ep=ep, dtype=dtype, gpu=gpu,
                   backend=backend, distribution=distribution).to_dict()
    _show(f"moe T={tokens} h={hidden} i={inter} E={experts} k={top_k} tp={tp} ep={ep} {dtype}"
          f" on {gpu} ({backend})", r, as_json,
          {"op": "moe", "gpu": gpu, "backend": backend, "tokens": tokens, "hidden": hidden,
           "inter": inter, "experts": experts, "top_k": top_k, "tp": tp, "ep": ep,
           "dtype": dtype})
