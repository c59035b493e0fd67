"""memsim's Numba-CUDA attention kernels (installed as ``memsim.kernels``).

One module per family — standard, flash1, flash2, decode (split-KV), dsa — each built from
a memsim :class:`~memsim.tiling.Tiling`; float64 references (reference); the access recorder
for the CUDA simulator (access_trace); the GPU bench runner (bench, gpu_smoke); and the
hardware ceilings (ceilings). Nothing here imports GPU code at import time.
"""
