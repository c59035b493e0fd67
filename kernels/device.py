"""The attributes of the GPU this runs on, as the driver reports them (SI units); used by
the ceilings (kernels/ceilings.py) and by memsim.validation to pick the matching profile.
Nothing GPU-related is imported at import time.
"""

from __future__ import annotations

from typing import Any

# Numba device attribute → key of the attribute dict, with the factor to SI units.
_NUMBA_ATTRIBUTES: dict[str, tuple[str, float]] = {
    "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN": ("shared_memory_per_block_optin_bytes", 1),
    "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR": ("shared_memory_per_sm_bytes", 1),
    "MAX_REGISTERS_PER_MULTIPROCESSOR": ("registers_per_sm", 1),
    "MAX_BLOCKS_PER_MULTIPROCESSOR": ("max_blocks_per_sm", 1),
    "CLOCK_RATE": ("sm_clock_max_hz", 1e3),           # kHz
    "MEMORY_CLOCK_RATE": ("memory_clock_hz", 1e3),    # kHz
    "GLOBAL_MEMORY_BUS_WIDTH": ("memory_bus_bits", 1),
    "L2_CACHE_SIZE": ("l2_bytes", 1),
    "WARP_SIZE": ("warp_size", 1),
}

# torch.cuda.get_device_properties field → key, for drivers where Numba cannot help.
_TORCH_PROPERTIES: dict[str, str] = {
    "multi_processor_count": "sm_count",
    "total_memory": "total_memory_bytes",
    "L2_cache_size": "l2_bytes",
    "shared_memory_per_multiprocessor": "shared_memory_per_sm_bytes",
    "shared_memory_per_block_optin": "shared_memory_per_block_optin_bytes",
    "regs_per_multiprocessor": "registers_per_sm",
    "max_threads_per_multi_processor": "max_threads_per_sm",
    "warp_size": "warp_size",
}


def read_device(index: int = 0) -> dict[str, Any]:
    """Attributes of CUDA device ``index`` in SI units (needs a GPU and PyTorch or Numba).

    Keys: ``name``, ``compute_capability``, ``sm_count``, ``total_memory_bytes``,
    ``l2_bytes``, ``shared_memory_per_sm_bytes``, ``shared_memory_per_block_optin_bytes``,
    ``registers_per_sm``, ``sm_clock_max_hz``, ``memory_clock_hz``, ``memory_bus_bits``
    and ``errors`` (what could not be read, and why). A missing attribute is absent.
    """
    out: dict[str, Any] = {"errors": {}}
    try:
        import torch

        props = torch.cuda.get_device_properties(index)
        out["name"] = props.name
        out["compute_capability"] = f"{props.major}.{props.minor}"
        for field, key in _TORCH_PROPERTIES.items():
            value = getattr(props, field, None)
            if isinstance(value, int):
                out[key] = value
    except Exception as exc:  # no torch, or no GPU for it
        out["errors"]["torch"] = f"{type(exc).__name__}: {exc}"
    try:
        from numba import cuda

        dev = cuda.select_device(index) if index else cuda.get_current_device()
        out.setdefault("name", dev.name.decode() if isinstance(dev.name, bytes) else dev.name)
        out.setdefault("compute_capability", "{}.{}".format(*dev.compute_capability))
        out.setdefault("sm_count", int(dev.MULTIPROCESSOR_COUNT))
        for attr, (key, factor) in _NUMBA_ATTRIBUTES.items():
            try:
                value = int(getattr(dev, attr))
            except Exception as exc:  # attribute unknown to this driver
                out["errors"][attr.lower()] = f"{type(exc).__name__}: {exc}"
                continue
            out.setdefault(key, value * factor if factor != 1 else value)
    except Exception as exc:
        out["errors"]["numba"] = f"{type(exc).__name__}: {exc}"
    return out
