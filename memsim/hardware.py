"""GPU profiles: one TOML file per GPU in ``hardware_profiles/``, loaded into a frozen model.

A profile is data, not code. Every number sits in an inline table with its ``source``::

    [spec]
    sm_count = { value = 132, source = "FlashAttention-3 (arXiv 2407.08608) §1" }

Sections: ``[spec]`` (datasheet or measured hardware numbers), ``[efficiency]`` (achievable
fraction of each peak, from published microbenchmarks or our own measurements) and
``[price]`` (``usd_per_gpu_hour`` with a ``date``) and ``[interconnect]`` (the links between
GPUs: NVLink per direction, the NVSwitch domain, the inter-node network, their latencies;
read by :mod:`memsim.ops.comm`). A calibrated profile (written by
``memsim calibrate``) may add ``[class_efficiency."<kernel class>"]`` tables: factors fitted
to one kernel class's measurements (e.g. ``"sdpa/flash"``), used for predictions of that
class. Numbers derived from others (SRAM bandwidth, ridge points) are properties, never
stored twice.

The profiles ship inside the wheel as package data (``memsim/hardware_profiles``); in a
source checkout they are read from the repository's ``hardware_profiles/``.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memsim.errors import InputError, closest, format_validation_error

Unit = Literal["tensor", "fp32", "exp"]

_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class GPUSpec(BaseModel):
    """Hardware numbers of one GPU, SI units. Optional fields are absent on some parts."""

    model_config = _STRICT

    sm_count: int = Field(gt=0)
    boost_clock_hz: float = Field(gt=0)
    shared_memory_per_sm_bytes: int = Field(gt=0)
    shared_memory_per_block_max_bytes: int = Field(gt=0)
    registers_per_sm: int = Field(gt=0, description="32-bit registers per SM")
    max_registers_per_thread: int = Field(gt=0)
    max_threads_per_sm: int = Field(gt=0)
    max_threads_per_block: int = Field(gt=0)
    max_blocks_per_sm: int = Field(gt=0)
    warp_size: int = Field(gt=0)
    l2_bytes: int = Field(gt=0)
    l2_line_bytes: int | None = Field(default=None, gt=0, description="L2 cache line")
    l2_sector_bytes: int | None = Field(
        default=None, gt=0, description="L2 sector: the unit filled from and written to DRAM")
    l2_partitions: int | None = Field(
        default=None, gt=0, description="L2 sections, each caching for the SMs next to it")
    l2_ways: int | None = Field(
        default=None, gt=0, description="L2 associativity: lines per set (the line model)")
    l2_set_hash: Literal["hashed", "modulo"] | None = Field(
        default=None, description="L2 set index: a hash of the line address's bits "
        "('hashed') or the line address modulo the sets ('modulo')")
    hbm_bytes: int = Field(gt=0)
    hbm_bandwidth_bytes_per_s: float = Field(gt=0)
    l2_bandwidth_bytes_per_s: float = Field(gt=0)
    sram_bytes_per_clock_per_sm: float = Field(gt=0)
    fp32_flop_per_s: float = Field(gt=0, description="non-tensor fp32 (CUDA cores)")
    tf32_tensor_flop_per_s: float = Field(gt=0)
    fp16_tensor_flop_per_s: float = Field(gt=0, description="dense, fp32 accumulate")
    bf16_tensor_flop_per_s: float = Field(gt=0, description="dense, fp32 accumulate")
    fp8_tensor_flop_per_s: float | None = Field(default=None, gt=0, description="dense")
    int8_tensor_op_per_s: float | None = Field(default=None, gt=0, description="dense")
    exp_per_s: float = Field(gt=0, description="special-function unit exp2 per second")
    interconnect_bytes_per_s: float = Field(
        gt=0, description="GPU-to-GPU bandwidth, both directions together (NVLink or PCIe)"
    )
    kernel_launch_overhead_s: float = Field(ge=0)
    tdp_w: float = Field(gt=0)


class Efficiency(BaseModel):
    """Achievable fraction of each peak (0 < f ≤ 1)."""

    model_config = _STRICT

    hbm_bandwidth: float = Field(gt=0, le=1)
    l2_bandwidth: float = Field(gt=0, le=1)
    sram_bandwidth: float = Field(gt=0, le=1)
    tensor: float = Field(gt=0, le=1)
    fp32: float = Field(gt=0, le=1)
    exp: float = Field(gt=0, le=1)
    interconnect: float = Field(gt=0, le=1)


class Interconnect(BaseModel):
    """Links between GPUs, per GPU and per direction (SI units).

    ``scale_up_gpus``: GPUs one scale-up domain joins (8 on an HGX board, 72 in a GB200
    NVL72 rack); ``nvlink_bytes_per_s_per_direction`` is 0 on parts without NVLink, whose
    scale-up domain is a PCIe node. ``nvls``: the switch
    reduces in the network (NVLink SHARP, NVSwitch gen 3 and later), which NCCL's NVLS
    algorithm uses. ``network_bytes_per_s_per_gpu``: the scale-out NIC of each GPU.
    """

    model_config = _STRICT

    nvlink_bytes_per_s_per_direction: float = Field(ge=0)
    scale_up_gpus: int = Field(ge=1)
    nvls: bool
    pcie_bytes_per_s_per_direction: float = Field(gt=0)
    network_bytes_per_s_per_gpu: float = Field(gt=0)
    nvlink_latency_s: float = Field(gt=0)
    network_latency_s: float = Field(gt=0)

    def link_bytes_per_s(self, gpus: int) -> float:
        """Per-direction bandwidth one GPU has to its peers in a group of ``gpus``:
        NVLink inside the scale-up domain (PCIe where there is no NVLink), else the
        scale-out network."""
        if gpus <= self.scale_up_gpus and self.nvlink_bytes_per_s_per_direction > 0:
            return self.nvlink_bytes_per_s_per_direction
        if gpus <= self.scale_up_gpus:
            return self.pcie_bytes_per_s_per_direction
        return self.network_bytes_per_s_per_gpu

    def link_latency_s(self, gpus: int) -> float:
        """One-hop latency of the link :meth:`link_bytes_per_s` names."""
        return self.nvlink_latency_s if gpus <= self.scale_up_gpus else \
            self.network_latency_s


class Price(BaseModel):
    """Rental price of one GPU for one hour, with the date it was read."""

    model_config = _STRICT

    usd_per_gpu_hour: float = Field(gt=0)
    date: str
    source: str


class GPU(BaseModel):
    """A GPU profile: identity, spec, efficiency factors, price, and where each came from.

    ``sources`` maps ``"spec.sm_count"`` and the like to the source of that number.
    ``calibrated_from`` is empty for a datasheet profile and names the measurement folder
    for a calibrated one.
    """

    model_config = _STRICT

    name: str
    display_name: str
    vendor: Literal["nvidia", "amd"]
    architecture: str
    compute_capability: str
    spec: GPUSpec
    efficiency: Efficiency
    price: Price
    sources: dict[str, str]
    calibrated_from: str = ""
    interconnect: Interconnect | None = None
    class_efficiency: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_number_has_a_source(self) -> GPU:
        for section in ("spec", "efficiency", "interconnect"):
            values = getattr(self, section)
            for key, value in (values.model_dump() if values is not None else {}).items():
                if value is not None and not self.sources.get(f"{section}.{key}"):
                    raise ValueError(f"{section}.{key} has no source")
        units = set(Efficiency.model_fields)
        for name, factors in self.class_efficiency.items():
            for unit, value in factors.items():
                if unit not in units:
                    raise ValueError(f"class_efficiency.{name}.{unit} is not an efficiency "
                                     f"unit ({', '.join(sorted(units))})")
                if not 0 < value <= 1:
                    raise ValueError(f"class_efficiency.{name}.{unit}={value} must be in (0, 1]")
                if not self.sources.get(f"class_efficiency.{name}.{unit}"):
                    raise ValueError(f"class_efficiency.{name}.{unit} has no source")
        if self.spec.shared_memory_per_block_max_bytes > self.spec.shared_memory_per_sm_bytes:
            raise ValueError(
                f"spec.shared_memory_per_block_max_bytes={self.spec.shared_memory_per_block_max_bytes}"
                f" must not exceed spec.shared_memory_per_sm_bytes="
                f"{self.spec.shared_memory_per_sm_bytes}"
            )
        return self

    def for_class(self, kernel_class: str | None) -> GPU:
        """This profile with the efficiency factors fitted for ``kernel_class`` (a
        calibrated profile's ``[class_efficiency."<class>"]``), or itself if it has none."""
        factors = self.class_efficiency.get(kernel_class or "")
        if not factors:
            return self
        return self.model_copy(update={"efficiency": self.efficiency.model_copy(update=factors)})

    # ---- derived numbers -------------------------------------------------------------

    @property
    def sram_bandwidth_bytes_per_s(self) -> float:
        """Shared-memory bandwidth of the whole chip: B/clk/SM × SMs × clock.

        FlashAttention-3 §1 derives H100's 31 TB/s this way; FA-1 §2.1 quotes ~19 TB/s for A100.
        """
        s = self.spec
        return s.sram_bytes_per_clock_per_sm * s.sm_count * s.boost_clock_hz

    def peak_flop_per_s(self, unit: Unit, dtype: str = "bf16") -> float:
        """Peak rate of a compute unit: tensor cores at ``dtype``, fp32 CUDA cores, or exp/s."""
        s = self.spec
        if unit == "fp32":
            return s.fp32_flop_per_s
        if unit == "exp":
            return s.exp_per_s
        rate = {
            "fp32": s.tf32_tensor_flop_per_s,
            "tf32": s.tf32_tensor_flop_per_s,
            "fp16": s.fp16_tensor_flop_per_s,
            "bf16": s.bf16_tensor_flop_per_s,
            "fp8": s.fp8_tensor_flop_per_s,
            "int8": s.int8_tensor_op_per_s,
        }.get(dtype)
        if rate is None:
            raise InputError("dtype", dtype, f"has no tensor-core rate on {self.name}")
        return rate

    def achievable_flop_per_s(self, unit: Unit, dtype: str = "bf16") -> float:
        """Peak rate × the profile's efficiency factor for that unit."""
        eff = {"tensor": self.efficiency.tensor, "fp32": self.efficiency.fp32,
               "exp": self.efficiency.exp}[unit]
        return self.peak_flop_per_s(unit, dtype) * eff

    @property
    def l2_dram_capacity_bytes(self) -> float:
        """The L2 capacity that keeps data from DRAM, for data read by SMs of every L2
        partition (the K/V of attention): the whole ``l2_bytes``, partitions or not.

        A100 and H100 split the L2 into two sections (A100 whitepaper: "Each L2 partition
        localizes and caches data for memory accesses from SMs in the GPCs directly
        connected to the partition"). Data read by SMs of both halves is replicated in
        both only while it fits in one section; past that it stays in one section and the
        far SMs read it across (RRZE gpu-benches, te42kyfo/gpu-benches README, gpu-cache:
        "A100 and H100 drop slightly at 20/25MB, when the capacity of a single cache
        section is exceeded. Beyond this point, data cannot be replicated in both L2 cache
        sections and the maximum bandwidth drops, as data has also to be fetched from the
        other section"; its gpu-l2-cache on H200 holds full rate to ~40 MB of 50). So
        ``l2_partitions`` changes where a hit is served and at what bandwidth, not whether
        a re-read reaches DRAM. The trace (memsim.trace.simulate) and the closed-form
        estimate (memsim.algorithms._arrays) both take this capacity.
        """
        return float(self.spec.l2_bytes)

    @property
    def achievable_hbm_bytes_per_s(self) -> float:
        return self.spec.hbm_bandwidth_bytes_per_s * self.efficiency.hbm_bandwidth

    @property
    def achievable_l2_bytes_per_s(self) -> float:
        return self.spec.l2_bandwidth_bytes_per_s * self.efficiency.l2_bandwidth

    @property
    def achievable_sram_bytes_per_s(self) -> float:
        return self.sram_bandwidth_bytes_per_s * self.efficiency.sram_bandwidth

    @property
    def achievable_interconnect_bytes_per_s(self) -> float:
        return self.spec.interconnect_bytes_per_s * self.efficiency.interconnect

    def ridge_flop_per_byte(self, unit: Unit = "tensor", dtype: str = "bf16") -> float:
        """Arithmetic intensity above which a kernel is compute-bound (peak FLOP/s ÷ HBM B/s)."""
        return self.peak_flop_per_s(unit, dtype) / self.spec.hbm_bandwidth_bytes_per_s

    @property
    def usd_per_gpu_second(self) -> float:
        return self.price.usd_per_gpu_hour / 3600.0


# ---- loading --------------------------------------------------------------------------


def profiles_dir() -> Path:
    """Where the bundled profiles live: package data when installed, else the repo folder."""
    packaged = Path(__file__).parent / "hardware_profiles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "hardware_profiles"


def _split_sourced(section: str, table: dict[str, Any], path: Path) -> tuple[dict, dict]:
    values, sources = {}, {}
    if not isinstance(table, dict):
        raise InputError(f"{path.name}: {section}", table, "must be a table")
    for key, entry in table.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise InputError(
                f"{path.name}: {section}.{key}", entry,
                "must be an inline table { value = ..., source = \"...\" }",
            )
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise InputError(f"{path.name}: {section}.{key}", entry, "needs a non-empty source")
        values[key] = entry["value"]
        sources[f"{section}.{key}"] = entry["source"]
    return values, sources


def _offending_line(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """'; line 12 reads: sm_count = { ...' for a TOML syntax error, so the message names the key."""
    match = re.search(r"at line (\d+)", str(exc))
    lines = text.splitlines()
    if not match or not 1 <= int(match.group(1)) <= len(lines):
        return ""
    return f"; line {match.group(1)} reads: {lines[int(match.group(1)) - 1].strip()[:120]}"


def load_profile_file(path: Path | str) -> GPU:
    """Read one TOML profile; a malformed or incomplete file names the file and the key."""
    from memsim.files import read_text

    path = Path(path)
    text = read_text(path, "profile")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError("profile", str(path),
                         f"is not valid TOML: {exc}{_offending_line(text, exc)}") from None
    for section in ("spec", "efficiency", "price"):
        if section not in raw:
            raise InputError(f"{path.name}", section, "section is missing")
        if not isinstance(raw[section], dict):
            raise InputError(f"{path.name}: {section}", raw[section], "must be a table")
    spec, spec_sources = _split_sourced("spec", raw.pop("spec"), path)
    eff, eff_sources = _split_sourced("efficiency", raw.pop("efficiency"), path)
    price_table = raw.pop("price")
    price_entry = price_table.get("usd_per_gpu_hour")
    if not isinstance(price_entry, dict):
        raise InputError(f"{path.name}: price.usd_per_gpu_hour", price_entry,
                         "must be { value = ..., source = \"...\", date = \"YYYY-MM-DD\" }")
    price = {"usd_per_gpu_hour": price_entry.get("value"), "date": price_entry.get("date"),
             "source": price_entry.get("source")}
    # TOML ints where floats are expected are fine; the strict model wants exact types.
    float_fields = {k for k, f in GPUSpec.model_fields.items() if "float" in str(f.annotation)}
    spec = {k: float(v) if k in float_fields and isinstance(v, int) else v for k, v in spec.items()}
    eff = {k: float(v) if isinstance(v, int) else v for k, v in eff.items()}
    if isinstance(price["usd_per_gpu_hour"], int):
        price["usd_per_gpu_hour"] = float(price["usd_per_gpu_hour"])
    link, link_sources = None, {}
    if "interconnect" in raw:
        link, link_sources = _split_sourced("interconnect", raw.pop("interconnect"), path)
        link = {k: float(v) if k.endswith("_s") and isinstance(v, int) else v
                for k, v in link.items()}
    classes, class_sources = {}, {}
    class_tables = raw.pop("class_efficiency", None) or {}
    if not isinstance(class_tables, dict):
        raise InputError(f"{path.name}: class_efficiency", class_tables, "must be a table")
    for name, table in class_tables.items():
        values, sources = _split_sourced(f"class_efficiency.{name}", table, path)
        if not isinstance(table, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()):
            raise InputError(f"{path.name}: class_efficiency.{name}", values,
                             "must hold numbers")
        classes[name] = {k: float(v) for k, v in values.items()}
        class_sources.update(sources)
    try:
        return GPU(**raw, spec=spec, efficiency=eff, price=price, class_efficiency=classes,
                   interconnect=link,
                   sources={**spec_sources, **eff_sources, **link_sources, **class_sources})
    except ValidationError as exc:
        raise InputError("profile", path.name, "is invalid: " + format_validation_error(exc)
                         ) from None


@functools.cache
def _bundled() -> dict[str, Path]:
    return {p.stem: p for p in sorted(profiles_dir().glob("*.toml"))}


def gpu_names() -> list[str]:
    """Names of the bundled profiles (file stems), sorted."""
    return list(_bundled())


@functools.cache
def load_gpu(name: str) -> GPU:
    """The bundled profile called ``name`` (case-insensitive), or a path to a TOML file.

    Unknown names raise :class:`InputError` suggesting the closest known names.
    """
    if name.endswith(".toml"):
        return load_profile_file(name)
    bundled = _bundled()
    key = name.lower()
    if key not in bundled:
        raise InputError("gpu", name, "is not a known GPU" + _suggest(key, bundled)
                         + f" (known: {', '.join(bundled)})")
    return load_profile_file(bundled[key])


def _suggest(key: str, known: dict[str, Path]) -> str:
    """Names that start with ``key`` first ('h100' → 'h100-sxm', not 'h200'), else the closest."""
    prefixed = sorted((k for k in known if k.startswith(key)),
                      key=lambda k: -difflib.SequenceMatcher(None, key, k).ratio())
    if prefixed:
        return "; did you mean " + " or ".join(repr(k) for k in prefixed[:3]) + "?"
    return closest(key, known)
