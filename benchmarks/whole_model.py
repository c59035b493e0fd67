"""Whole model against the database: `memsim predict` beside the sum of aiconfigurator's
measured operators (issue 10's whole-model target: prefill and decode step within 10 %).

    .venv/bin/python -m benchmarks.whole_model            # every case, one table each
    .venv/bin/python -m benchmarks.whole_model --rows     # and every database row used

Needs the ``silicon`` extra (aiconfigurator-core). For each case the model's operators are
listed as aiconfigurator's own model files list them (sdk/models/llama.py, deepseek.py:
GEMMs per projection, the attention kernel, the custom all-reduces, the MoE layer, the
DeepEP dispatch and combine) and each is read from the measured table of that operator, on
that GPU and backend, at the step's exact token count. A GEMM whose (n, k) is off the
measured grid is interpolated linearly in n and k between the four measured rows around
it (time is linear in n and k away from the wave steps; aiconfigurator interpolates its
grid likewise), a message size log-log between the two around it; every row that enters a
sum is quoted (``--rows``: file and row index in the parquet). Element-wise kernels
(norms, the gated activation, the embedding gather) have no table: they are listed as
memsim-only and left out of both sides of the comparison.

memsim's side is `memsim predict`'s ``operators_s`` for the same deployment (the
``Setup`` below is what ``memsim predict --model ... --gpu ... --tp ...`` builds), its
gated-activation time split out of ``mlp`` with the same function predict uses.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KEY_ORDER = ("qkv_proj", "attention", "o_proj", "all_reduce", "mlp", "all_gather",
             "all_to_all", "lm_head")
MEMSIM_ONLY = ("norms", "embedding", "activation")


# ---- the database ---------------------------------------------------------------------


class Database:
    """The measured tables of one GPU system and backend (the files memsim validate
    scores: per table the largest version, memsim.silicon.source.table_files)."""

    def __init__(self, system: str, backend: str) -> None:
        self.system, self.backend = system, backend
        self._frames: dict[tuple[str, str], Any] = {}

    def table(self, name: str, backend: str | None = None) -> tuple[Any, str]:
        """(DataFrame with a ``row`` column, file path below the package's data folder)."""
        import pandas as pd

        from memsim.silicon.source import table_files

        backend = backend or self.backend
        key = (name, backend)
        if key not in self._frames:
            files = [f for f in table_files(name)
                     if f.system == self.system and f.backend == backend]
            if not files:
                raise LookupError(f"no {name} for {self.system}/{backend}")
            df = pd.read_parquet(files[0].path)
            df["row"] = np.arange(len(df))
            self._frames[key] = (df, files[0].relative)
        return self._frames[key]


@dataclass
class Lookup:
    """One measured operator time (seconds) and the rows it came from."""

    seconds: float
    file: str
    rows: list[int]
    note: str = ""


def _select(df: Any, **exact: Any) -> Any:
    mask = np.ones(len(df), dtype=bool)
    for col, val in exact.items():
        mask &= (df[col] == val).to_numpy()
    return df[mask]


def _bracket(values: Iterable[float], x: float) -> tuple[float, float]:
    """The grid values around ``x`` (equal when x is on the grid; the two outermost when
    x lies beyond it: linear extrapolation)."""
    v = np.unique(np.asarray(list(values), dtype=float))
    if x in v:
        return x, x
    i = int(np.searchsorted(v, x))
    i = min(max(i, 1), len(v) - 1)
    return float(v[i - 1]), float(v[i])


def _lin(x: float, lo: float, hi: float, t_lo: float, t_hi: float, log: bool = False) -> float:
    if lo == hi:
        return t_lo
    if log:
        w = (np.log(x) - np.log(lo)) / (np.log(hi) - np.log(lo))
        return float(np.exp(np.log(t_lo) + w * (np.log(t_hi) - np.log(t_lo))))
    return t_lo + (x - lo) / (hi - lo) * (t_hi - t_lo)


def gemm(db: Database, m: int, n: float, k: float, dtype: str) -> Lookup:
    """gemm_perf at exact m and dtype, bilinear in (n, k)."""
    df, file = db.table("gemm_perf")
    d = _select(df, m=m, gemm_dtype=dtype)
    if len(d) == 0:
        raise LookupError(f"gemm_perf {db.system}/{db.backend} has no m={m} {dtype}")
    n0, n1 = _bracket(d["n"], n)
    k0, k1 = _bracket(d["k"], k)
    rows, t = [], {}
    for nn in {n0, n1}:
        for kk in {k0, k1}:
            r = _select(d, n=nn, k=kk)
            if len(r) == 0:
                raise LookupError(f"gemm_perf has no m={m} n={nn} k={kk} {dtype}")
            t[nn, kk] = float(r["latency"].iloc[0]) * 1e-3
            rows.append(int(r["row"].iloc[0]))
    at_n = {nn: _lin(k, k0, k1, t[nn, k0], t[nn, k1]) for nn in {n0, n1}}
    exact = n0 == n1 == n and k0 == k1 == k
    note = "" if exact else f"(n,k)=({n:g},{k:g}) interpolated"
    if n > n1 or k > k1:
        note = f"(n,k)=({n:g},{k:g}) extrapolated"
    return Lookup(_lin(n, n0, n1, at_n[n0], at_n[n1]), file, rows, note)


def by_size(df: Any, file: str, axis: str, x: float, log: bool = True, **exact: Any
            ) -> Lookup:
    """A row at exact columns, interpolated along ``axis`` (log-log by default)."""
    d = _select(df, **exact)
    if len(d) == 0:
        raise LookupError(f"{file}: no rows with {exact}")
    lo, hi = _bracket(d[axis], x)
    r_lo = d[d[axis] == lo].iloc[0]
    r_hi = d[d[axis] == hi].iloc[0]
    t = _lin(x, lo, hi, float(r_lo["latency"]), float(r_hi["latency"]), log=log)
    note = "" if lo == hi else f"{axis}={x:g} interpolated"
    return Lookup(t, file, sorted({int(r_lo["row"]), int(r_hi["row"])}), note)


def ms(look: Lookup) -> Lookup:
    look.seconds *= 1e-3
    return look


def us(look: Lookup) -> Lookup:
    look.seconds *= 1e-6
    return look


def custom_allreduce(db: Database, elements: float, gpus: int) -> Lookup:
    df, file = db.table("custom_allreduce_perf")
    graph = df[~df["kernel_source"].astype(str).str.contains("_eager")]
    return ms(by_size(graph, file, "message_size", elements, num_gpus=gpus,
                      allreduce_dtype="bfloat16"))


def nccl(db: Database, op: str, elements: float, gpus: int) -> Lookup:
    df, file = db.table("nccl_perf", backend="nccl")
    return ms(by_size(df, file, "message_size", elements, op_name=op, num_gpus=gpus,
                      nccl_dtype="half"))


# ---- a case: operators on both sides ----------------------------------------------------


@dataclass
class Operator:
    key: str           # memsim's operators_s key it adds to
    name: str          # aiconfigurator's op name
    count: float       # layers (or calls) per step
    look: Lookup


@dataclass
class Case:
    title: str
    db_ops: list[Operator]
    memsim_s: dict[str, float]
    memsim_only_s: dict[str, float] = field(default_factory=dict)

    def db_by_key(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for op in self.db_ops:
            out[op.key] = out.get(op.key, 0.0) + op.count * op.look.seconds
        return out

    def keys(self) -> list[str]:
        """memsim's operators compared: those either side has."""
        db = self.db_by_key()
        extra = set(self.memsim_s) - set(KEY_ORDER)
        if any(self.memsim_s[k] > 0 for k in extra):
            raise ValueError(f"memsim operators with no database counterpart: {extra}")
        return [k for k in KEY_ORDER if k in db or self.memsim_s.get(k, 0.0) > 0]

    def totals(self) -> tuple[float, float]:
        """(database sum, memsim sum) over :meth:`keys`, seconds."""
        db = self.db_by_key()
        keys = self.keys()
        return (sum(db.get(k, 0.0) for k in keys),
                sum(self.memsim_s.get(k, 0.0) for k in keys))


def _memsim(setup: Any, context: int, batch: int, phase: str) -> tuple[dict, dict]:
    """memsim predict's operators for one phase, the gated activation split out of mlp."""
    from memsim.inference import predict
    from memsim.inference.mlp import activation_s

    pred = predict(setup, context, batch)
    ops = dict(pred[phase]["operators_s"])
    only = {k: ops.pop(k, 0.0) for k in ("norms", "embedding")}
    # the gated activation of every dense MLP / shared expert (routed experts fuse theirs)
    m, W, D = setup.model, setup.stage_gpus, setup.attention_dp
    rank_T = -(-batch // D) * (context if phase == "prefill" else 1)
    stage_T = batch * (context if phase == "prefill" else 1)
    act = 0.0
    for g in m.groups:
        if not g.mlp.gated:
            continue
        if g.mlp.is_moe:
            if g.mlp.shared_experts:
                inter = g.mlp.shared_intermediate or g.mlp.intermediate * g.mlp.shared_experts
                ways = setup.tp if setup.ep > 1 else W
                T = rank_T if setup.ep > 1 else stage_T
                act += g.count * float(activation_s(setup, T, inter / ways))
        else:
            act += g.count * float(activation_s(setup, stage_T, g.mlp.intermediate / W))
    ops["mlp"] = ops.get("mlp", 0.0) - act
    only["activation"] = act
    return ops, only


def llama_case(gpu: str, system: str, backend: str, tp: int, phase: str, context: int,
               batch: int) -> Case:
    """Llama-3-70B at TP ``tp`` in bf16 (aiconfigurator sdk/models/llama.py's operators)."""
    from memsim.hardware import load_gpu
    from memsim.inference import Setup
    from memsim.models import load_model

    model = load_model("llama-3-70b")
    setup = Setup(model, load_gpu(gpu), tp=tp, backend=backend)
    db = Database(system, backend)
    a, h = model.groups[0].attention, model.hidden_size
    L, inter, vocab = model.groups[0].count, model.groups[0].mlp.intermediate, model.vocab_size
    H, K, Dh = a.heads // tp, a.kv_heads // tp, a.head_dim
    T = batch * context if phase == "prefill" else batch
    ops = [Operator("qkv_proj", "qkv_gemm", L, ms_gemm(db, T, (H + 2 * K) * Dh, h)),
           Operator("attention", f"{phase}_attention", L, _attention(db, phase, batch,
                                                                     context, H, K, Dh)),
           Operator("o_proj", "proj_gemm", L, ms_gemm(db, T, h, H * Dh)),
           Operator("mlp", "gate_ffn1_gemm", L, ms_gemm(db, T, 2 * inter / tp, h)),
           Operator("mlp", "ffn2_gemm", L, ms_gemm(db, T, h, inter / tp)),
           Operator("lm_head", "logits_gemm", 1, ms_gemm(db, batch, vocab / tp, h))]
    if tp > 1:
        ops.append(Operator("all_reduce", "ar_1 + ar_2", 2 * L,
                            custom_allreduce(db, T * h, tp)))
    # memsim's decode at position p attends to p + 1 keys; the table's row to isl + step
    mem_ctx = context if phase == "prefill" else context - 1
    mem, only = _memsim(setup, mem_ctx, batch, phase)
    return Case(f"Llama-3-70B {gpu} TP{tp} {backend} bf16, {phase} batch {batch} "
                f"{'prompt' if phase == 'prefill' else 'keys'} {context}", ops, mem, only)


def ms_gemm(db: Database, m: float, n: float, k: float, dtype: str = "bfloat16") -> Lookup:
    return gemm(db, int(m), float(n), float(k), dtype)


def _attention(db: Database, phase: str, batch: int, context: int, H: int, K: int,
               Dh: int) -> Lookup:
    if phase == "prefill":
        df, file = db.table("context_attention_perf")
        return ms(by_size(df, file, "isl", context, batch_size=batch, num_heads=H,
                          num_key_value_heads=K, head_dim=Dh, window_size=0,
                          attn_dtype="bfloat16", kv_cache_dtype="bfloat16"))
    df, file = db.table("generation_attention_perf")
    # key length isl + step (aiconfigurator attention.rs: kv_seq_tokens = isl + step)
    return ms(by_size(df, file, "step", context - 1, batch_size=batch, num_heads=H,
                      num_key_value_heads=K, head_dim=Dh, window_size=0, isl=1,
                      kv_cache_dtype="bfloat16"))


def deepseek_case(phase: str, context: int, batch: int, gpu: str = "h200",
                  system: str = "h200_sxm", backend: str = "trtllm") -> Case:
    """DeepSeek-V3 on 8 GPUs: attention data-parallel over 8 replicas (TP 1), routed
    experts EP 8, fp8 block-scaled weights, bf16 KV cache (aiconfigurator
    sdk/models/deepseek.py's operators for its attention-DP + EP deployment; the MoE
    communication its large-EP path reads: DeepEP HT for context, LL for generation)."""
    from memsim.hardware import load_gpu
    from memsim.inference import Setup
    from memsim.models import load_model

    model = load_model("deepseek-v3")
    G = 8
    setup = Setup(model, load_gpu(gpu), tp=1, gpus=G, dp_attention=True, ep=G,
                  weight_dtype="fp8", backend=backend)
    db = Database(system, backend)
    h, vocab = model.hidden_size, model.vocab_size
    dense, moe = model.groups
    mla = dense.attention.mla
    heads = dense.attention.heads
    rank_B = -(-batch // G)
    rank_T = rank_B * (context if phase == "prefill" else 1)
    stage_T = batch * (context if phase == "prefill" else 1)
    L = dense.count + moe.count
    f8 = "fp8_block"
    q_out = heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim)
    ops = [Operator("qkv_proj", "downscale_gemm (q_a + kv_a)", L,
                    gemm(db, rank_T, mla.q_lora_rank + mla.kv_lora_rank + mla.qk_rope_head_dim,
                         h, f8)),
           Operator("qkv_proj", "q_b_proj_gemm", L, gemm(db, rank_T, q_out, mla.q_lora_rank,
                                                         f8))]
    if phase == "prefill":
        ops.append(Operator("qkv_proj", "kv_b_proj_gemm", L,
                            gemm(db, rank_T, heads * (mla.qk_nope_head_dim + mla.v_head_dim),
                                 mla.kv_lora_rank, f8)))
        df, file = db.table("context_mla_perf")
        att = ms(by_size(df, file, "isl", context, batch_size=rank_B, num_heads=heads,
                         tp_size=1, mla_dtype="bfloat16", kv_cache_dtype="bfloat16"))
    else:
        bmm, bfile = db.table("mla_bmm_perf")
        for op, name in (("mla_gen_pre", "bmm_pre"), ("mla_gen_post", "bmm_post")):
            ops.append(Operator("qkv_proj" if op.endswith("pre") else "o_proj", name, L,
                                ms(by_size(bmm, bfile, "num_tokens", rank_T, op_name=op,
                                           num_heads=heads, bmm_dtype="fp8"))))
        df, file = db.table("generation_mla_perf")
        att = ms(by_size(df, file, "step", context - 1, batch_size=rank_B, num_heads=heads,
                         tp_size=1, isl=1, mla_dtype="bfloat16", kv_cache_dtype="bfloat16"))
    ops += [Operator("attention", f"{phase}_mla", L, att),
            Operator("o_proj", "proj_gemm", L, gemm(db, rank_T, h, heads * mla.v_head_dim,
                                                    f8)),
            # dense layers: the MLP tensor-parallel over the 8 GPUs on the gathered tokens
            Operator("mlp", "dense gate_ffn1_gemm", dense.count,
                     gemm(db, stage_T, 2 * dense.mlp.intermediate / G, h, f8)),
            Operator("mlp", "dense ffn2_gemm", dense.count,
                     gemm(db, stage_T, h, dense.mlp.intermediate / G, f8)),
            Operator("all_gather", "dense all_gather", dense.count,
                     nccl(db, "all_gather", stage_T * h, G)),
            Operator("all_gather", "dense reduce_scatter", dense.count,
                     nccl(db, "reduce_scatter", stage_T * h, G))]
    moe_df, moe_file = db.table("moe_perf")
    # num_tokens: the tokens of every attention replica (aiconfigurator's MoE query scales
    # the rank's tokens by attention_dp_size), balanced routing as memsim assumes
    ops += [Operator("mlp", "moe (routed experts)", moe.count,
                     ms(by_size(moe_df, moe_file, "num_tokens", stage_T, log=True,
                                hidden_size=h, inter_size=moe.mlp.intermediate,
                                topk=moe.mlp.experts_per_token,
                                num_experts=moe.mlp.experts, moe_tp_size=1, moe_ep_size=G,
                                moe_dtype=f8, distribution="balanced"))),
            Operator("mlp", "shared_gate_up_gemm", moe.count,
                     gemm(db, rank_T, 2 * moe.mlp.shared_intermediate, h, f8)),
            Operator("mlp", "shared_ffn2_gemm", moe.count,
                     gemm(db, rank_T, h, moe.mlp.shared_intermediate, f8)),
            Operator("mlp", "router_gemm", moe.count,
                     gemm(db, rank_T, moe.mlp.experts, h, "bfloat16"))]
    a2a, afile = db.table("moe_a2a_perf")
    mode, wire = (("trtllm_deepep_ht", "bfloat16") if phase == "prefill"
                  else ("trtllm_deepep_ll", "fp8"))
    for ph in ("dispatch", "combine"):
        ops.append(Operator("all_to_all", f"{mode} {ph} ({wire})", moe.count,
                            us(by_size(a2a, afile, "num_tokens", rank_T, comm_backend=mode,
                                       phase=ph, comm_dtype=wire, ep_size=G, node_num=1,
                                       hidden_size=h, topk=moe.mlp.experts_per_token,
                                       num_experts=moe.mlp.experts))))
    ops.append(Operator("lm_head", "logits_gemm", 1, gemm(db, rank_B, vocab, h, "bfloat16")))
    mem_ctx = context if phase == "prefill" else context - 1
    mem, only = _memsim(setup, mem_ctx, batch, phase)
    return Case(f"DeepSeek-V3 {G}x{gpu} DP-attention {G} EP{G} {backend} fp8, {phase} "
                f"batch {batch} {'prompt' if phase == 'prefill' else 'keys'} {context}",
                ops, mem, only)


# ---- output -----------------------------------------------------------------------------


def render(case: Case, rows: bool) -> str:
    db = case.db_by_key()
    keys = case.keys()
    lines = [case.title,
             f"  {'operator':<11}{'database':>11}{'memsim':>11}{'error':>9}   database rows"]
    for k in keys:
        d, m = db.get(k, 0.0), case.memsim_s.get(k, 0.0)
        err = f"{(m / d - 1) * 100:+.1f}%" if d > 0 else "–"
        names = ", ".join(f"{op.count:g}×{op.name}" for op in case.db_ops if op.key == k)
        lines.append(f"  {k:<11}{d * 1e3:>9.3f}ms{m * 1e3:>9.3f}ms{err:>9}   {names}")
    total_db, total_m = case.totals()
    lines.append(f"  {'total':<11}{total_db * 1e3:>9.3f}ms{total_m * 1e3:>9.3f}ms"
                 f"{(total_m / total_db - 1) * 100:>+8.1f}%")
    only = ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in case.memsim_only_s.items())
    lines.append(f"  memsim-only (no table, left out of both): {only}")
    if rows:
        for op in case.db_ops:
            note = f" [{op.look.note}]" if op.look.note else ""
            lines.append(f"    {op.name}: {op.look.file} rows {op.look.rows}{note} "
                         f"{op.look.seconds * 1e6:.2f} µs")
    return "\n".join(lines)


def cases(only: str = "") -> list[Any]:
    """(builder, kwargs) of every case reported (``only``: builder name filter)."""
    out: list[Any] = []
    for tp in (1, 2, 4, 8):
        out.append((llama_case, dict(gpu="h100-sxm", system="h100_sxm", backend="trtllm",
                                     tp=tp, phase="prefill", context=4096, batch=1)))
        out.append((llama_case, dict(gpu="h100-sxm", system="h100_sxm", backend="trtllm",
                                     tp=tp, phase="decode", context=4096, batch=1)))
        out.append((llama_case, dict(gpu="h100-sxm", system="h100_sxm", backend="trtllm",
                                     tp=tp, phase="decode", context=4096, batch=64)))
    out.append((deepseek_case, dict(phase="prefill", context=2048, batch=8)))
    out.append((deepseek_case, dict(phase="decode", context=4096, batch=256)))
    return [(b, kw) for b, kw in out if only in b.__name__]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", action="store_true", help="quote every database row")
    parser.add_argument("--only", default="", help="cases whose builder contains this "
                        "(llama, deepseek)")
    args = parser.parse_args(argv)
    summary = []
    for build, kw in cases(args.only):
        case = build(**kw)
        print(render(case, args.rows), end="\n\n")
        summary.append((case.title, *case.totals()))
    print(f"{'case':<92}{'database':>11}{'memsim':>11}{'error':>9}")
    for title, db, m in summary:
        print(f"{title:<92}{db * 1e3:>9.3f}ms{m * 1e3:>9.3f}ms{(m / db - 1) * 100:>+8.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
