"""Model architectures read from Hugging Face ``config.json`` files.

A :class:`ModelConfig` describes a transformer layer by layer: each layer has its attention
(head layout, mask, MLA latent, DSA indexer) and its MLP (dense or mixture of experts).
Layers that are alike are grouped (:class:`LayerGroup`, with a count), so that whole-model
arithmetic loops over a handful of kinds, not over 126 layers.

The package is split by job; everything public is re-exported here, so
``from memsim.models import load_model`` keeps working:

- :mod:`memsim.models.config` — the dataclasses and their parameter / KV-cache arithmetic;
- :mod:`memsim.models.parsing` — keyed access to a config dict, head layout, layer grouping;
- :mod:`memsim.models.families` — one builder per ``model_type`` family;
- :mod:`memsim.models.hf` — :func:`from_hf_config` (wrappers, vision tower, provenance);
- :mod:`memsim.models.presets` — bundled presets and lookup by id, name, alias or path.

Supported ``model_type`` values: gpt2, llama, mistral, mixtral, qwen2, gemma2, gemma3 /
gemma3_text, llama4 / llama4_text, modernbert, deepseek_v3, deepseek_v32. Bundled presets live
in ``memsim/presets/<org>/<name>/config.json`` (named by Hugging Face id) with the parameter
count they must produce in ``_memsim_expected_params`` and its ``_memsim_params_source``.

Units: counts are Python ints; bytes carry ``_bytes``. Notation as in docs/DESIGN.md
§"Notation" (H query heads, K key/value heads, D head dimension, L layers).
"""

from memsim.models.config import (
    MLA,
    MLP,
    Attention,
    LayerGroup,
    ModelConfig,
    attention_params,
    indexer_key_bytes,
)
from memsim.models.families import SUPPORTED_MODEL_TYPES
from memsim.models.hf import from_hf_config
from memsim.models.presets import PRESETS_DIR, load_config_file, load_model, preset_names

__all__ = [
    "MLA", "MLP", "PRESETS_DIR", "SUPPORTED_MODEL_TYPES", "Attention", "LayerGroup",
    "ModelConfig", "attention_params", "from_hf_config", "indexer_key_bytes",
    "load_config_file", "load_model", "preset_names",
]
