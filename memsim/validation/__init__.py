"""Validation on real GPUs: measure, compare with both models, summarise, calibrate.

The flow (docs/DESIGN.md §"Layers": kernel run → measurement → validation → calibration →
prediction):

- :mod:`~memsim.validation.device` reads the GPU and picks the matching profile;
- :mod:`~memsim.validation.suites` lists the cases of the quick and full suites;
- :mod:`~memsim.validation.runner` runs them, one handler per kind of case
  (:mod:`~memsim.validation.microbench` ceilings, :mod:`~memsim.validation.kernels` memsim's
  Numba kernels, :mod:`~memsim.validation.sdpa` PyTorch attention,
  :mod:`~memsim.validation.llama` a small Llama, :mod:`~memsim.validation.ncu` Nsight
  Compute counters), and writes each case through :mod:`~memsim.validation.records` the
  moment it is measured;
- :mod:`~memsim.validation.summary` computes the error statistics;
- :mod:`~memsim.validation.calibrate` fits efficiency factors and writes a calibrated profile.

Everything here imports no GPU library at import time; torch, numba.cuda and transformers
are imported inside the functions that measure.
"""
