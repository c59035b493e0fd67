"""AttentionProblem and Mask: defaults, layouts, and bad input named by field, value, rule."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from memsim.attention import predict
from memsim.errors import InputError, format_validation_error
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.units import dtype_bytes

BASE = dict(batch=1, seq_len=128, heads=8, head_dim=64)


def rejected(**changes: object) -> str:
    """The one-line-per-problem message of the ValidationError ``changes`` raise."""
    with pytest.raises(ValidationError) as err:
        AttentionProblem(**{**BASE, **changes})
    return format_validation_error(err.value)


def test_defaults_resolve_to_the_notation() -> None:
    p = AttentionProblem(**BASE)
    assert (p.B, p.N, p.S, p.H, p.K, p.D, p.Dv) == (1, 128, 128, 8, 8, 64, 64)
    assert p.mask.kind == "causal" and p.pass_ == "forward" and p.dtype == "bf16"


@pytest.mark.parametrize(("changes", "layout"), [
    ({}, "mha"), ({"kv_heads": 2}, "gqa"), ({"kv_heads": 1}, "mqa"),
    ({"kv_heads": 1, "mla": True, "head_dim": 576, "head_dim_v": 512}, "mla"),
])
def test_head_layouts(changes: dict, layout: str) -> None:
    assert AttentionProblem(**{**BASE, **changes}).layout == layout


@pytest.mark.parametrize("field", ["batch", "seq_len", "kv_len", "heads", "kv_heads",
                                   "head_dim", "head_dim_v"])
@pytest.mark.parametrize("value", [0, -3])
def test_zero_or_negative_sizes_name_the_field_and_value(field: str, value: int) -> None:
    msg = rejected(**{field: value})
    assert f"{field}={value}" in msg and "greater than 0" in msg


def test_kv_heads_must_divide_heads() -> None:
    assert "kv_heads=3 must divide heads=10" in rejected(heads=10, kv_heads=3)


def test_queries_cannot_outnumber_keys() -> None:
    assert "seq_len=128 must not exceed kv_len=64" in rejected(kv_len=64)


@pytest.mark.parametrize("field", ["window", "chunk", "top_k"])
@pytest.mark.parametrize("value", [0, -1])
def test_window_chunk_and_top_k_must_be_positive(field: str, value: int) -> None:
    msg = rejected(mask={field: value})
    assert f"mask.{field}={value}" in msg and "greater than 0" in msg


def test_unknown_dtype_names_the_choices() -> None:
    msg = rejected(dtype="fp12")
    assert "dtype='fp12'" in msg and "bf16" in msg
    with pytest.raises(InputError, match=r"dtype='bf61' must be one of .*did you mean 'bf16'"):
        dtype_bytes("bf61")


def test_one_pattern_per_mask() -> None:
    assert "window=8 cannot be combined with chunk=16" in rejected(mask={"window": 8, "chunk": 16})
    assert "window=8 cannot be combined with top_k=4" in rejected(mask={"window": 8, "top_k": 4})


@pytest.mark.parametrize("field", ["chunk", "top_k"])
def test_chunk_and_top_k_are_causal(field: str) -> None:
    assert "causal=False is not supported" in rejected(mask={field: 8, "causal": False})


def test_mla_shares_one_latent() -> None:
    assert "kv_heads=8 must be 1 with mla" in rejected(mla=True)
    msg = rejected(mla=True, kv_heads=1, head_dim=64, head_dim_v=128)
    assert "head_dim_v=128 must not exceed head_dim=64" in msg


def test_unknown_fields_are_rejected() -> None:
    assert "heads_kv" in rejected(heads_kv=2)


def test_indexer_sizes_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="heads"):
        Indexer(heads=0)


@pytest.mark.parametrize(("mask", "kind", "text"), [
    (Mask(causal=False), "full", "full"),
    (Mask(), "causal", "causal"),
    (Mask(window=4096), "window", "causal window 4096"),
    (Mask(causal=False, window=128), "window", "bidirectional window 128"),
    (Mask(chunk=8192), "chunk", "chunked local 8192"),
    (Mask(top_k=2048), "topk", "top-2048"),
])
def test_mask_kinds(mask: Mask, kind: str, text: str) -> None:
    assert (mask.kind, mask.describe()) == (kind, text)


@pytest.mark.parametrize(("algorithm", "changes"), [
    ("flash2", dict(seq_len=10**9, mask=Mask())),
    ("flash1", dict(seq_len=10**9, mask=Mask(window=4096))),
    ("standard", dict(seq_len=10**9, mask=Mask(chunk=8192))),
    ("flash_decode", dict(seq_len=1, kv_len=10**9, mask=Mask())),
    ("dsa", dict(seq_len=10**9, heads=128, kv_heads=1, mla=True, head_dim=576,
                 head_dim_v=512, mask=Mask(top_k=2048), indexer=Indexer())),
])
def test_a_billion_tokens_computes_without_overflow(algorithm: str, changes: dict) -> None:
    """N = 10⁹ (or a 10⁹-token cache): every number finite and non-negative, and the FLOPs
    where they have a closed form. flash2 causal: ≈ 4·D·H·N²/2 (FA-2 §4.1), within the
    diagonal tiles' (Br + Bc)/N."""
    p = AttentionProblem(**{**BASE, **changes})
    out = predict(p, "h100-sxm", algorithm).to_dict()
    numbers = [v for k, v in out.items() if isinstance(v, float)] + list(out["terms_s"].values())
    assert all(math.isfinite(v) and v >= 0 for v in numbers)
    if algorithm == "flash2":
        assert out["flops"] == pytest.approx(4 * 64 * 8 * 10**18 / 2, rel=1e-6)
    if algorithm == "flash_decode":  # one token against 10⁹ keys: 2·(D + Dv)·S·H
        assert out["flops"] == pytest.approx(2 * 128 * 10**9 * 8, rel=1e-12)
