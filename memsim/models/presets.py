"""Bundled presets and model lookup by Hugging Face id, bare name, alias or path.

Presets live in ``memsim/presets/<org>/<name>/config.json`` (named by Hugging Face id) with the
parameter count they must produce in ``_memsim_expected_params`` and its
``_memsim_params_source``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from memsim.errors import InputError, closest
from memsim.models.config import ModelConfig
from memsim.models.hf import from_hf_config

PRESETS_DIR = Path(__file__).parent.parent / "presets"


@functools.cache
def _preset_paths() -> dict[str, Path]:
    """Hugging Face id → bundled config.json path."""
    out = {}
    for path in sorted(PRESETS_DIR.glob("*/*/config.json")):
        out[f"{path.parent.parent.name}/{path.parent.name}"] = path
    return out


@functools.cache
def _lookup_table() -> dict[str, str]:
    """Lower-case name, bare name and alias → Hugging Face id."""
    table: dict[str, str] = {}
    for hf_id, path in _preset_paths().items():
        table[hf_id.lower()] = hf_id
        table[hf_id.split("/")[1].lower()] = hf_id
        for alias in json.loads(path.read_text()).get("_memsim_aliases", ()):
            table[alias.lower()] = hf_id
    return table


def preset_names() -> list[str]:
    """Hugging Face ids of the bundled presets, sorted."""
    return list(_preset_paths())


def load_config_file(path: Path | str) -> ModelConfig:
    """Read any compatible ``config.json``; errors name the file and the key."""
    from memsim.files import read_text

    path = Path(path)
    text = read_text(path, "model")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("model", str(path), f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("model", str(path), "is not valid JSON: nested too deeply") from None
    return from_hf_config(cfg, name=str(path))


@functools.cache
def load_model(name: str) -> ModelConfig:
    """A preset by Hugging Face id, bare name or alias (case-insensitive), or a path.

    Unknown names raise :class:`InputError` suggesting the closest known names.
    """
    if "\x00" in name or len(name) > 4096:
        raise InputError("model", name[:80], "is not a model name or a path")
    if name.endswith(".json") or _is_file(name):
        return load_config_file(name)
    table = _lookup_table()
    hf_id = table.get(name.lower())
    if hf_id is None:
        raise InputError("model", name, "is not a known model" + closest(name, table)
                         + " (see `memsim models`; or pass a path to a config.json)")
    cfg = json.loads(_preset_paths()[hf_id].read_text())
    return from_hf_config(cfg, name=hf_id)


def _is_file(name: str) -> bool:
    try:
        return Path(name).is_file()
    except (OSError, ValueError):  # a name too long for a path, or otherwise not a path
        return False
