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
        raise InputError("model", name, f"must hold a JSON object, not a {type(cfg).__name__}")
    mt = cfg.get("model_type")
    if mt is None:
        raise InputError("model_type", None, f"is missing from {name}")
    if not isinstance(mt, str):
        raise InputError("model_type", mt, f"must be a string in {name}")
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
        vision_params = _checked_vision_params(vision, fields["hidden_size"], name)
    return ModelConfig(
        name=name, model_type=mt, vision_params=vision_params,
        expected_params=_optional(cfg, "_memsim_expected_params", int, name),
        expected_active_params=_optional(cfg, "_memsim_expected_active_params", int, name),
        params_source=_optional(cfg, "_memsim_params_source", str, name) or "",
        hf_id=name if "/" in name and not name.endswith(".json") else "",
        aliases=tuple(_optional(cfg, "_memsim_aliases", list, name) or ()),
        **fields,
    )


def _optional(cfg: dict[str, Any], key: str, kind: type, name: str) -> Any:
    """memsim's own provenance keys: absent, or of the right JSON type."""
    value = cfg.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise InputError(key, value, f"must be a {kind.__name__} in {name}")
    if kind is list and value is not None and not all(isinstance(v, str) for v in value):
        raise InputError(key, value, f"must be a list of names in {name}")
    return value


_VISION_INTS = ("hidden_size", "intermediate_size", "num_hidden_layers", "patch_size",
                "image_size")


def _checked_vision_params(vision: dict[str, Any], text_hidden: int, name: str) -> int:
    """:func:`vision_params_of` after checking the keys it reads (positive integers below
    memsim's width ceiling; the pixel-shuffle ratio a number in (0, 1])."""
    from memsim import limits

    optional = ("num_channels", "projector_input_dim", "projector_output_dim",
                "vision_output_dim")
    for key in _VISION_INTS + optional:
        value = vision.get(key)
        if value is None and key in optional:
            continue
        try:
            limits.check_size(f"vision_config.{key}", value, limits.MAX_WIDTH)
        except InputError as exc:
            if value is None:
                raise InputError(f"vision_config.{key}", None,
                                 f"is missing from {name}") from None
            raise InputError(exc.field, exc.value, f"{exc.rule} in {name}") from None
    ratio = vision.get("pixel_shuffle_ratio", 0.5)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise InputError("vision_config.pixel_shuffle_ratio", ratio, "must be in (0, 1]")
    try:
        return vision_params_of(vision, text_hidden)
    except KeyError as exc:
        raise InputError(f"vision_config.{exc.args[0]}", None,
                         f"is missing from {name}") from None
