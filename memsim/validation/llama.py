"""A small Llama with random weights against ``memsim predict`` for the same config.

The model is Meta-Llama-3-8B cut to ``layers`` layers (2–4): the full width (hidden 4096,
32 query and 8 KV heads of 128, MLP 14336, vocabulary 128256), built by ``transformers``
from the bundled config — no download, random bf16 weights on the GPU, SDPA attention.
memsim reads the very same config dict (:func:`config`), so both sides describe one model.

Cases (batch ``B``):

- ``prefill`` of ``tokens`` tokens: ``model(ids, use_cache=True, logits_to_keep=1)`` — one
  forward that fills the KV cache and computes the logits of the last token only, as
  generation does. Measured: CUDA-event time, and the absolute peak of
  ``torch.cuda.max_memory_allocated`` (weights + KV cache + activations + workspace),
  compared with memsim's VRAM total less its runtime reserve (which PyTorch never allocates).
- ``decode`` at ``position`` p: one token against a cache of p tokens (memsim: the next
  token at position p, S = p + 1 keys). The cache is cropped back to p after each timed
  step. transformers' DynamicCache concatenates K and V every step (a copy of the whole
  cache), and a 2-layer model at batch 1 is bound by the host's kernel launches; the host
  time per step is recorded beside the GPU time to show it.

Before timing, a decode step's logits are checked against a forward over all p + 1 tokens
(the KV-cache path must compute the same function), and every output must be finite.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from memsim.errors import InputError
from memsim.hardware import GPU

BASE_MODEL = "meta-llama/Meta-Llama-3-8B"
LOGITS_TOLERANCE = 0.1  # ‖cached − full‖/‖full‖ of bf16 logits through a few layers


def config(layers: int) -> dict[str, Any]:
    """The Hugging Face config dict of :data:`BASE_MODEL` with ``layers`` layers."""
    from memsim.models import PRESETS_DIR

    if not isinstance(layers, int) or not 1 <= layers <= 32:
        raise InputError("layers", layers, "must be an integer from 1 to 32")
    cfg = json.loads((PRESETS_DIR / BASE_MODEL / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_memsim")}
    cfg["num_hidden_layers"] = layers
    return cfg


def predict_llama(params: dict[str, Any], gpu: GPU) -> dict[str, Any]:
    """memsim's whole-model prediction for one case; no GPU needed.

    Returns ``{"analytic": {"time_s", "weights_bytes", "peak_memory_bytes"?}, "trace": None,
    "vram": {...}, "operators_s": {...}}``.
    """
    from memsim.inference import Setup, predict
    from memsim.models import from_hf_config

    model = from_hf_config(config(params["layers"]), name=f"{BASE_MODEL}[:{params['layers']}]")
    setup = Setup(model, gpu, attention="auto")
    if params["phase"] == "prefill":
        result = predict(setup, params["tokens"], params["batch"])
        vram = result["vram"]
        analytic = {"time_s": result["prefill"]["time_s"],
                    "weights_bytes": vram["weights_bytes"],
                    "peak_memory_bytes": vram["total_bytes"] - vram["reserve_bytes"]}
        operators = result["prefill"]["operators_s"]
    elif params["phase"] == "decode":
        result = predict(setup, params["position"], params["batch"])
        vram = result["vram"]
        analytic = {"time_s": result["decode"]["time_per_token_s"],
                    "weights_bytes": vram["weights_bytes"]}
        operators = result["decode"]["operators_s"]
    else:
        raise InputError("phase", params["phase"], "must be 'prefill' or 'decode'")
    return {"analytic": analytic, "trace": None,
            "trace_note": "whole-model predictions come from the analytic model",
            "vram": vram, "operators_s": operators, "profile": gpu.name,
            "profile_kind": "calibrated" if gpu.calibrated_from else "datasheet"}


# ---- on the GPU -------------------------------------------------------------------------


def build_model(layers: int) -> Any:
    """``LlamaForCausalLM`` of :func:`config` with random bf16 weights, built on the GPU."""
    import torch
    import transformers

    hf_config = transformers.LlamaConfig(**config(layers), attn_implementation="sdpa")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = transformers.LlamaForCausalLM(hf_config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def _forward(model: Any, ids: Any, cache: Any = None) -> Any:
    """One forward computing the last position's logits only."""
    kwargs = {"input_ids": ids, "use_cache": True}
    if cache is not None:
        kwargs["past_key_values"] = cache
    try:
        return model(**kwargs, logits_to_keep=1)
    except TypeError:  # transformers < 4.50
        return model(**kwargs, num_logits_to_keep=1)


def _finite(logits: Any) -> None:
    import torch

    if not bool(torch.isfinite(logits).all()):
        raise RuntimeError("validation failed: non-finite logits")


def measure_prefill(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from memsim.validation.timing import median_time_s

    vocab, B, N = model.config.vocab_size, params["batch"], params["tokens"]
    ids = torch.randint(0, vocab, (B, N), device="cuda")
    with torch.inference_mode():
        _finite(_forward(model, ids).logits)
        timing = median_time_s(lambda: _forward(model, ids), warmup=2, max_repeats=20,
                               target_s=1.0)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        out = _forward(model, ids)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        del out
    return {**timing, "peak_memory_bytes": int(peak)}


def measure_decode(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from memsim.validation.timing import median_time_s, relative_l2_error

    vocab, B, p = model.config.vocab_size, params["batch"], params["position"]
    ids = torch.randint(0, vocab, (B, p + 1), device="cuda")
    with torch.inference_mode():
        cache = _forward(model, ids[:, :p]).past_key_values
        if not hasattr(cache, "crop"):
            raise RuntimeError(f"{type(cache).__name__} cannot be cropped back to position {p}")
        checked = copy.deepcopy(cache)
        step_logits = _forward(model, ids[:, p:], checked).logits[:, -1]
        full_logits = _forward(model, ids).logits[:, -1]
        _finite(step_logits)
        error = relative_l2_error(step_logits, full_logits)
        if not error <= LOGITS_TOLERANCE:
            raise RuntimeError(f"validation failed: cached decode logits differ from the full "
                               f"forward by {error:.3g} > {LOGITS_TOLERANCE}")
        del checked

        def step() -> Any:
            out = _forward(model, ids[:, p:], cache)
            cache.crop(-1)  # drop the token just added: back to p (negative: newer API)
            return out

        timing = median_time_s(step, warmup=3, max_repeats=50, target_s=0.5)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            step()
        torch.cuda.synchronize()
        host_time_s = (time.perf_counter() - t0) / 10
    return {**timing, "host_time_s": host_time_s, "logits_relative_error": error}


def run(params: dict[str, Any], gpu: GPU, models: dict[int, Any]) -> dict[str, Any]:
    """Measure and predict one case; ``models`` caches the built model by layer count."""
    import torch

    layers = params["layers"]
    if layers not in models:
        models.clear()
        torch.cuda.empty_cache()
        models[layers] = build_model(layers)
    model = models[layers]
    if params["phase"] == "prefill":
        measurement = measure_prefill(model, params)
    else:
        measurement = measure_decode(model, params)
    measurement["weights_bytes"] = sum(t.numel() * t.element_size() for t in model.parameters())
    return {"prediction": predict_llama(params, gpu), "measurement": measurement}
