"""Build a :class:`ModelConfig` from a parsed Hugging Face ``config.json``.

Supported ``model_type`` values: gpt2, llama, mistral, mixtral, qwen2, gemma2, gemma3 /
gemma3_text, llama4 / llama4_text, modernbert, deepseek_v3, deepseek_v32 (one builder per
family in :mod:`memsim.models.families`).
"""

from __future__ import annotations

from typing import Any

from memsim.errors import InputError, closest
from memsim.models.config import ModelConfig
from memsim.models.families import BUILDERS, SUPPORTED_MODEL_TYPES
from memsim.models.parsing import ConfigKeys


def vision_params_of(v: dict[str, Any], text_hidden: int) -> int:
    """Vision tower of a multimodal checkpoint (ViT, Dosovitskiy et al. arXiv 2010.11929).

    Per layer: q, k, v, o with biases, fc1/fc2 with biases, two LayerNorms with biases;
    patch embedding, position embedding, final LayerNorm; then the projector into the text
    model (Gemma 3: one matrix + RMSNorm; Llama 4: pixel-shuffle MLP + projector).
    """
    h, i, n = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    p, img, c = v["patch_size"], v["image_size"], v.get("num_channels", 3)
    per_layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
    patches = (img // p) ** 2
    total = n * per_layer + c * p * p * h + h + patches * h + 2 * h
    if v.get("model_type") == "llama4_vision_model":
        ratio = v.get("pixel_shuffle_ratio", 0.5)
        shuffled = int(h / ratio**2)
        total += h + 2 * h  # class embedding, pre-LayerNorm
        total += shuffled * v["projector_input_dim"] + v["projector_input_dim"] \
            * v["projector_output_dim"]
        total += v["vision_output_dim"] * text_hidden
    else:  # Gemma 3: mm_input_projection (h × hidden) + mm_soft_emb_norm (h)
        total += h * text_hidden + h
    return total


def from_hf_config(cfg: dict[str, Any], name: str = "config.json") -> ModelConfig:
    """Build a :class:`ModelConfig` from a parsed Hugging Face ``config.json``.

    Multimodal wrappers (``gemma3``, ``llama4``) are read through their ``text_config``; the
    vision tower counts towards the parameters only. Raises :class:`InputError` naming the
    key for a missing or contradictory key and the model_type for an unsupported one.
    """
    if not isinstance(cfg, dict):
        raise InputError(name, type(cfg).__name__, "must hold a JSON object")
    mt = cfg.get("model_type")
    if mt is None:
        raise InputError("model_type", None, f"is missing from {name}")
    text, vision = cfg, None
    if mt in ("gemma3", "llama4"):
        text = cfg.get("text_config")
        if not isinstance(text, dict):
            raise InputError("text_config", text, f"is missing from {name} "
                             f"(required for model_type {mt!r})")
        vision = cfg.get("vision_config")
        mt = {"gemma3": "gemma3_text", "llama4": "llama4_text"}[mt]
    builder = BUILDERS.get(mt)
    if builder is None:
        raise InputError("model_type", mt, "is not supported; supported: "
                         + ", ".join(SUPPORTED_MODEL_TYPES) + closest(mt, SUPPORTED_MODEL_TYPES))
    fields = builder(ConfigKeys(text, mt, name), mt)
    vision_params = 0
    if isinstance(vision, dict) and vision.get("hidden_size"):
        try:
            vision_params = vision_params_of(vision, fields["hidden_size"])
        except KeyError as exc:
            raise InputError(f"vision_config.{exc.args[0]}", None,
                             f"is missing from {name}") from None
    return ModelConfig(
        name=name, model_type=mt, vision_params=vision_params,
        expected_params=cfg.get("_memsim_expected_params"),
        expected_active_params=cfg.get("_memsim_expected_active_params"),
        params_source=cfg.get("_memsim_params_source", ""),
        hf_id=name if "/" in name and not name.endswith(".json") else "",
        aliases=tuple(cfg.get("_memsim_aliases", ())),
        **fields,
    )
