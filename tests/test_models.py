"""Model configs: presets, parameter counts, KV bytes per token, layer patterns, bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.errors import InputError
from memsim.models import PRESETS_DIR, from_hf_config, load_model, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_preset_parameter_count_within_one_percent(name: str) -> None:
    """Every preset reproduces the published total it records, with its source, within 1 %."""
    m = load_model(name)
    assert m.expected_params, f"{name} records no _memsim_expected_params"
    assert m.params_source, f"{name} records no _memsim_params_source"
    assert m.params_total == pytest.approx(m.expected_params, rel=0.01)


@pytest.mark.parametrize("name", [n for n in preset_names()
                                  if load_model(n).expected_active_params])
def test_moe_active_parameters(name: str) -> None:
    """Active parameters per token of the MoE presets (model cards); 5 % because V3.2-Exp
    carries its indexer (+0.85B) on top of the 37B that DeepSeek quotes for V3."""
    m = load_model(name)
    assert m.params_active == pytest.approx(m.expected_active_params, rel=0.05)


def test_there_are_21_presets() -> None:
    assert len(preset_names()) == 21


# ---- golden KV bytes per token (docs/reference/inputs.md §C, [D] from the configs) -----


@pytest.mark.parametrize(("name", "kv_bytes"), [
    ("llama-3-70b", 327_680),      # 2 · 80 layers · 8 kv heads · 128 · 2 B
    ("llama-3.1-405b", 516_096),   # 2 · 126 · 8 · 128 · 2 B
    ("deepseek-v3", 70_272),       # (512 + 64) · 61 · 2 B (DeepSeek-V2 §2.1: (d_c + d_h^R)·l)
    ("llama-3-8b", 131_072),       # 2 · 32 · 8 · 128 · 2 B
])
def test_kv_bytes_per_token_golden(name: str, kv_bytes: int) -> None:
    assert load_model(name).kv_bytes_per_token("bf16") == kv_bytes


def test_deepseek_v32_adds_indexer_keys() -> None:
    """V3.2-Exp: 1,152 B latent + 132 B fp8 indexer key per token per layer
    (docs/reference/inputs.md §B.1)."""
    v31 = load_model("deepseek-v3.1-terminus").kv_bytes_per_token("bf16")
    v32 = load_model("deepseek-v3.2-exp").kv_bytes_per_token("bf16")
    assert v32 - v31 == 61 * 132
    assert v31 == 61 * 1152


def test_mistral_cache_capped_at_window() -> None:
    """Mistral 7B v0.1: SWA W = 4096 on every layer, rolling buffer (arXiv 2310.06825 §2)."""
    m = load_model("mistral-7b")
    per_token = 131_072
    assert m.kv_cache_bytes(4096) == 4096 * per_token
    assert m.kv_cache_bytes(32_768) == 4096 * per_token  # 512 MiB per sequence
    assert m.kv_cache_bytes(32_768) == 512 * 2**20


def test_kv_cache_fp8_halves_bf16() -> None:
    m = load_model("llama-3-70b")
    assert m.kv_cache_bytes(1000, 2, "fp8") * 2 == m.kv_cache_bytes(1000, 2, "bf16")


# ---- layer patterns ---------------------------------------------------------------------


def _masks(name: str) -> list[str]:
    m = load_model(name)
    return [m.groups[k].attention.mask.kind for k in m.layer_kinds]


def test_gemma3_five_local_one_global() -> None:
    kinds = _masks("gemma-3-27b")
    assert len(kinds) == 62
    assert [i for i, k in enumerate(kinds) if k == "causal"] == list(range(5, 62, 6))
    assert load_model("gemma-3-27b").groups[0].attention.mask.window == 1024


def test_gemma2_alternates_starting_local() -> None:
    kinds = _masks("gemma-2-9b")
    assert kinds[:4] == ["window", "causal", "window", "causal"]


def test_llama4_nope_global_every_fourth_layer() -> None:
    for name in ("llama-4-scout", "llama-4-maverick"):
        kinds = _masks(name)
        assert [i for i, k in enumerate(kinds) if k == "causal"] == list(range(3, 48, 4))
        assert set(kinds) == {"causal", "chunk"}


def test_llama4_maverick_alternates_dense_and_moe() -> None:
    m = load_model("llama-4-maverick")
    moe = [m.groups[k].mlp.is_moe for k in m.layer_kinds]
    assert moe == [i % 2 == 1 for i in range(48)]


def test_modernbert_global_every_third_bidirectional() -> None:
    m = load_model("modernbert-base")
    kinds = _masks("modernbert-base")
    assert [i for i, k in enumerate(kinds) if k == "full"] == [0, 3, 6, 9, 12, 15, 18, 21]
    assert not m.decoder
    assert all(not g.attention.mask.causal for g in m.groups)


def test_deepseek_dense_then_moe_and_mla() -> None:
    m = load_model("deepseek-v3.1")
    moe = [m.groups[k].mlp.is_moe for k in m.layer_kinds]
    assert moe == [False] * 3 + [True] * 58
    assert all(g.attention.layout == "mla" for g in m.groups)
    v32 = load_model("deepseek-v3.2")
    assert all(g.attention.mask.top_k == 2048 for g in v32.groups)
    assert all(g.attention.indexer is not None for g in v32.groups)


def test_mixtral_and_llama2_are_global() -> None:
    assert set(_masks("mixtral-8x7b")) == {"causal"}
    assert set(_masks("llama-2-7b")) == {"causal"}


# ---- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama-3-70b", "META-LLAMA/META-LLAMA-3-70B",
                                  "Meta-Llama-3-70B", "meta-llama/Meta-Llama-3-70B"])
def test_names_case_insensitive_and_aliases(name: str) -> None:
    assert load_model(name).name == "meta-llama/Meta-Llama-3-70B"


def test_unknown_model_suggests_closest() -> None:
    with pytest.raises(InputError) as err:
        load_model("llama-3-71b")
    assert err.value.field == "model"
    assert "did you mean" in str(err.value)
    assert "llama-3-70b" in str(err.value)


def test_config_path_loads(tmp_path) -> None:
    cfg = json.loads((PRESETS_DIR / "mistralai/Mistral-7B-v0.1" / "config.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert load_model(str(path)).params_total == load_model("mistral-7b").params_total


# ---- bad input --------------------------------------------------------------------------


def _llama(**over):
    cfg = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 2,
           "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 11008,
           "vocab_size": 32000, "max_position_embeddings": 4096}
    cfg.update(over)
    return {k: v for k, v in cfg.items() if v is not None}


def test_missing_key_named() -> None:
    with pytest.raises(InputError) as err:
        from_hf_config(_llama(intermediate_size=None))
    assert err.value.field == "intermediate_size"
    assert "missing" in err.value.rule


def test_kv_heads_must_divide_heads() -> None:
    with pytest.raises(InputError) as err:
        from_hf_config(_llama(num_key_value_heads=5))
    assert err.value.field == "num_key_value_heads"
    assert "divide" in err.value.rule


def test_hidden_not_multiple_of_heads() -> None:
    with pytest.raises(InputError) as err:
        from_hf_config(_llama(hidden_size=4100))
    assert err.value.field == "hidden_size"


def test_unsupported_architecture() -> None:
    with pytest.raises(InputError) as err:
        from_hf_config({"model_type": "mamba"})
    assert err.value.field == "model_type"
    assert "not supported" in err.value.rule


@pytest.mark.parametrize("bad", [0, -1, 2.5, "32"])
def test_non_positive_sizes_rejected(bad) -> None:
    with pytest.raises(InputError):
        from_hf_config(_llama(num_hidden_layers=bad))


def test_moe_top_k_above_experts() -> None:
    with pytest.raises(InputError) as err:
        from_hf_config(_llama(model_type="mixtral", num_local_experts=2, num_experts_per_tok=4))
    assert err.value.field == "num_experts_per_tok"


def test_bad_json_file(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(InputError) as err:
        load_model(str(path))
    assert "not valid JSON" in err.value.rule


# ---- properties -------------------------------------------------------------------------


@given(heads=st.sampled_from([8, 16, 32, 64]), group=st.sampled_from([1, 2, 4, 8]),
       layers=st.integers(1, 8), ctx=st.integers(1, 100_000))
def test_kv_per_token_scales_with_kv_heads(heads: int, group: int, layers: int, ctx: int) -> None:
    """GQA changes KV bytes by K/H exactly; parameters match the llama formula."""
    kv = heads // group
    mha = from_hf_config(_llama(num_attention_heads=heads, num_key_value_heads=heads,
                                num_hidden_layers=layers))
    gqa = from_hf_config(_llama(num_attention_heads=heads, num_key_value_heads=kv,
                                num_hidden_layers=layers))
    assert gqa.kv_cache_bytes(ctx) * heads == mha.kv_cache_bytes(ctx) * kv
    h, i = 4096, 11008
    per_layer = 2 * h * h + 2 * h * (kv * h // heads) + 3 * h * i + 2 * h
    assert gqa.params_total == 2 * 32000 * h + layers * per_layer + h


def test_the_split_package_keeps_every_public_name() -> None:
    """memsim/models.py became a package (config, parsing, families, hf, presets); every name
    it exported still imports from ``memsim.models`` and is the one its module defines."""
    import importlib

    import memsim.models as models

    for name in models.__all__:
        obj = getattr(models, name)
        home = getattr(obj, "__module__", None)
        if home is not None and home.startswith("memsim.models."):
            assert getattr(importlib.import_module(home), name) is obj
    assert models.PRESETS_DIR.is_dir() and models.preset_names()
