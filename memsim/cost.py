"""The Cost record every algorithm returns, and that the trace simulator returns too.

Fields are floats, or numpy float64 arrays of one shape when an algorithm is evaluated
over many configurations at once. Units are in the names.

Levels of the memory hierarchy:

- *global* bytes: every byte a kernel asks of global memory; all of it reaches L2.
- *HBM* bytes: what reaches DRAM. The analytic model assumes no reuse in L2 (HBM = global);
  the trace-driven model replays the schedule through an L2 and counts only misses and
  write-backs.
- *SRAM* bytes: shared-memory traffic inside each thread block.

``a + b`` is sequential composition (kernels run one after another): flows add up,
``workspace_bytes`` (peak extra global memory) is the larger of the two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

Number = float | np.ndarray


@dataclass(frozen=True)
class Cost:
    """FLOPs per unit and bytes per level of one or more kernels.

    - ``matmul_flops``: QKᵀ, PV and their gradients (2 FLOP per multiply-add); tensor cores
      at the problem's dtype in production kernels, CUDA cores in memsim's Numba kernels.
    - ``fp8_matmul_flops``: matmuls that run at the fp8 tensor rate whatever the problem's
      dtype (DeepSeek Sparse Attention's lightning indexer).
    - ``vector_flops``: element-wise work on CUDA cores (scale, max, subtract, sums, rescale).
    - ``exp_ops``: exponentials on the special-function unit.
    """

    matmul_flops: Number = 0.0
    fp8_matmul_flops: Number = 0.0
    vector_flops: Number = 0.0
    exp_ops: Number = 0.0
    global_read_bytes: Number = 0.0
    global_write_bytes: Number = 0.0
    hbm_read_bytes: Number = 0.0
    hbm_write_bytes: Number = 0.0
    sram_read_bytes: Number = 0.0
    sram_write_bytes: Number = 0.0
    workspace_bytes: Number = 0.0
    launches: Number = 0.0
    blocks: Number = 0.0

    # ---- composition -----------------------------------------------------------------

    def __add__(self, other: Cost) -> Cost:
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = np.maximum(a, b) if f.name == "workspace_bytes" else a + b
        return Cost(**values)

    def times(self, repeats: Number) -> Cost:
        """``repeats`` runs one after another: flows scale, the workspace does not."""
        return Cost(**{f.name: getattr(self, f.name) if f.name == "workspace_bytes"
                       else getattr(self, f.name) * repeats for f in fields(self)})

    # ---- totals ----------------------------------------------------------------------

    @property
    def flops(self) -> Number:
        """Matmul FLOPs (all dtypes): the count FlashAttention's papers report."""
        return self.matmul_flops + self.fp8_matmul_flops

    @property
    def global_bytes(self) -> Number:
        return self.global_read_bytes + self.global_write_bytes

    @property
    def hbm_bytes(self) -> Number:
        return self.hbm_read_bytes + self.hbm_write_bytes

    @property
    def sram_bytes(self) -> Number:
        return self.sram_read_bytes + self.sram_write_bytes

    def to_dict(self) -> dict[str, Number]:
        """Every field plus the totals; numpy scalars become floats."""
        d = asdict(self)
        d.update(flops=self.flops, global_bytes=self.global_bytes, hbm_bytes=self.hbm_bytes,
                 sram_bytes=self.sram_bytes)
        return {k: _plain(v) for k, v in d.items()}

    def item(self, index: int | tuple = ()) -> Cost:
        """The Cost of one configuration out of a vectorised Cost."""
        def pick(v: Number) -> float:
            v = np.asarray(v)
            return float(v if v.ndim == 0 else v[index])

        return Cost(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})


def _plain(v: Number) -> Number:
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return float(v)
    if isinstance(v, np.generic):
        return float(v)
    return v
