"""Where the measured tables are: ``aiconfigurator_core/systems/data/<system>/<family>/
<backend>/<version>/<table>.parquet``, and which memsim GPU profile each system is.

Nothing is imported from the package at import time; :func:`data_root` finds it on demand
and raises :class:`memsim.errors.InputError` naming the extra to install when it is missing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from memsim.errors import InputError

PACKAGE = "aiconfigurator-core"
MODULE = "aiconfigurator_core"

# system folder of the database → memsim profile (hardware_profiles/<name>.toml). Systems
# whose profile memsim lacks map to None and are listed as "no profile" by the run.
SYSTEM_PROFILES: dict[str, str | None] = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200",
    "b200_sxm": "b200",
    "gb200": "gb200",
    "b300_sxm": "b300",
    "gb300": None,
    "a100_sxm": "a100-sxm4-80gb",
    "l40s": "l40s",
    "h100_pcie": "h100-pcie",
    "a100_pcie": None,
    "a30": None,
    "l4": None,
    "b60": None,
    "rtx_pro_6000_server": None,
}
BACKENDS = ("trtllm", "vllm", "sglang")


@functools.cache
def package_version() -> str:
    """The installed version of aiconfigurator-core (the measurements' provenance)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        raise InputError("source", "aiconfigurator", f"needs the {PACKAGE} package: "
                         "pip install 'memsim[silicon]'") from None


@functools.cache
def data_root() -> Path:
    """``.../aiconfigurator_core/systems/data`` of the installed package."""
    from importlib.util import find_spec

    spec = find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("source", "aiconfigurator", f"needs the {PACKAGE} package: "
                         "pip install 'memsim[silicon]'")
    root = Path(next(iter(spec.submodule_search_locations))) / "systems" / "data"
    if not root.is_dir():
        raise InputError("source", str(root), f"is missing from the installed {PACKAGE}")
    return root


# MoE activations without a gate projection (one up matrix, not gate + up): aiconfigurator
# sdk/models/nemotron_h.py builds Nemotron-H's experts with is_gated=False ("NemotronH uses
# Relu2 (non-gated)"); its model configs name it ``mlp_hidden_act = "relu2"``
NON_GATED_ACTS = frozenset({"relu2"})


@functools.cache
def non_gated_moe_shapes(configs: Path | None = None) -> frozenset[tuple[int, int, int, int]]:
    """(expert input width, expert intermediate width, experts, top-k) of the MoE models in
    the package's ``model_configs`` whose experts are not gated. The input width is the
    model's ``hidden_size``, and its ``moe_latent_size`` where tokens enter the experts in a
    latent space (Nemotron-3 Super and Ultra). The moe tables mark these rows only in
    TensorRT-LLM's kernel_source (``moe_torch_flow_nongated``); vLLM and SGLang collect the
    same shapes under their usual kernel names. ``configs``: a folder of HuggingFace
    ``config.json`` files (default: the package's; empty without the package)."""
    import json
    from importlib.util import find_spec

    if configs is None:
        spec = find_spec(MODULE)
        if spec is None or not spec.submodule_search_locations:
            return frozenset()
        configs = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    shapes = set()
    for path in sorted(configs.glob("*_config.json")):
        cfg = json.loads(path.read_text())
        act = cfg.get("mlp_hidden_act") or cfg.get("hidden_act")
        experts = cfg.get("n_routed_experts") or cfg.get("num_experts")
        inter, top_k = cfg.get("moe_intermediate_size"), cfg.get("num_experts_per_tok")
        if act not in NON_GATED_ACTS or not (experts and inter and top_k):
            continue
        for width in (cfg.get("hidden_size"), cfg.get("moe_latent_size")):
            if width:
                shapes.add((int(width), int(inter), int(experts), int(top_k)))
    return frozenset(shapes)


@dataclass(frozen=True)
class TableFile:
    """One measured table: ``<system>/<family>/<backend>/<version>/<table>.parquet``."""

    system: str
    family: str
    backend: str
    version: str
    table: str
    path: Path

    @property
    def relative(self) -> str:
        """The path below the package's data folder (the provenance ``file``)."""
        return f"{self.system}/{self.family}/{self.backend}/{self.version}/{self.table}.parquet"

    @property
    def profile(self) -> str | None:
        return SYSTEM_PROFILES.get(self.system)


def _version_key(version: str) -> tuple:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def table_files(table: str, root: Path | None = None) -> list[TableFile]:
    """Every file of ``table`` (e.g. ``gemm_perf``): per (system, family, backend), the
    version with the most rows, the newest among equals.

    A backend often ships several versions of a table: the main sweep and smaller
    model-targeted top-ups (e.g. h100_sxm moe/trtllm: 1.3.0rc20 with 126 360 rows, 1.3.0rc23
    with 10 692 rows of two Nemotron-3 models, per its collection_meta.yaml). Taking one per
    backend never counts a GPU's shape twice; taking the largest scores the sweep.
    """
    import pyarrow.parquet as pq

    root = root or data_root()
    best: dict[tuple[str, str, str], tuple[tuple, TableFile]] = {}
    for path in sorted(root.glob(f"*/*/*/*/{table}.parquet")):
        system, family, backend, version = path.relative_to(root).parts[:4]
        f = TableFile(system, family, backend, version, table, path)
        rank = (pq.read_metadata(path).num_rows, _version_key(version))
        key = (system, family, backend)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, f)
    return sorted((f for _, f in best.values()), key=lambda f: (f.system, f.backend))
