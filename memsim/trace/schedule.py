"""Block-level schedules of every algorithm, generated from the Tiling and the mask geometry.

:func:`build_schedule` returns a :class:`Schedule`: the tensors (real layouts, base
addresses) and, per kernel launch, the template blocks' programs
(:class:`memsim.trace.program.KernelProgram`). The generators live one per algorithm in
``memsim/trace/sched_*.py``, their shared pieces in :mod:`memsim.trace.tiles`; each
module docstring lists the global accesses of each block in order. They walk the tiles
with :func:`memsim.geometry.tile_terms` — which key tiles each query tile visits — and
never call the analytic cost formulas, so that trace and analytic counts are two
independent derivations from the same geometry.

Grid order (launch order of blocks) is that of FlashAttention-2's kernels: the template
block index varies fastest, then the batch, then the head group
(``grid = (tiles, B, H / heads_per_block)``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from memsim.algorithms import get
from memsim.errors import InputError
from memsim.trace.layout import Layout
from memsim.trace.program import KernelProgram
from memsim.trace.tiles import Dims, dims_of


@dataclass
class Schedule:
    """Tensors and kernels of one attention call; ``G_sim`` head groups are simulated
    (all ``G`` unless a heads sample was asked for)."""

    algorithm: str
    dims: Dims
    layout: Layout
    kernels: list[KernelProgram]
    G_sim: int

    def sampled_groups(self) -> np.ndarray:
        """The head groups replayed through the L2: all, or ``G_sim`` consecutive groups
        from the middle of the grid (groups ⌊(G − G_sim)/2⌋ …).

        Consecutive, because the grid runs group after group: the groups in flight
        together share the L2, and a sampled group replayed with its real neighbours sees
        what they sweep; from the middle, because the first group starts on an idle
        machine (all its first wave at once) and the last one ends alone. Measured
        (H100, D 128, FA-2 forward; unsampled → sampled 4/8/16 heads): causal GQA K 8
        N = 131,072: 67.1 GB → 60.5/60.5/61.7 (evenly spread groups: 95.8/76.6/68.4);
        full MHA N = 65,536: 3.53 → 3.23/3.50 (spread: 2.16/2.16)."""
        start = (self.dims.G - self.G_sim) // 2
        return np.arange(start, start + self.G_sim)

    def instances(self, kernel: KernelProgram, simulated: bool = True) -> int:
        """(batch, head group) instances the grid repeats the template blocks over (one
        for a kernel that runs once per call)."""
        if kernel.once:
            return 1
        if not kernel.per_head:
            return self.dims.B
        return self.dims.B * (self.G_sim if simulated else self.dims.G)

    def scale(self, kernel: KernelProgram) -> float:
        """Factor from the simulated head groups to all of them (1 without sampling, and
        for kernels that do not run per head group: a sample replays all their blocks)."""
        return 1.0 if not kernel.per_head or kernel.once else self.dims.G / self.G_sim

    def blocks(self, simulated: bool = True) -> int:
        return sum(k.template_blocks * self.instances(k, simulated) for k in self.kernels)

    def events(self) -> int:
        """Tile events the simulation will process (exact)."""
        return sum(k.events_per_instance() * self.instances(k) for k in self.kernels)


#: forward schedule builders by the name an algorithm's ``SCHEDULE`` declares, as
#: (module of memsim.trace, function): a trace imports only its own generator
FORWARD = {
    "standard": ("sched_standard", "build"),
    "standard_blockskip": ("sched_standard", "build_blockskip"),
    "flash1": ("sched_flash1", "build"),
    "flash2": ("sched_flash2", "build"),
    "flash2_decode": ("sched_flash2", "build_decode"),
    "dsa": ("sched_dsa", "build"),
}
#: backward schedule builders (schedules whose backward the trace simulates)
BACKWARD = {
    "standard": ("sched_standard", "build_backward"),
    "standard_blockskip": ("sched_standard", "build_backward_blockskip"),
    "flash1": ("sched_flash1", "build_backward"),
    "flash2": ("sched_flash2", "build_backward"),
}


def _builder(table: dict, name: str):
    module, function = table[name]
    return getattr(importlib.import_module(f"memsim.trace.{module}"), function)


def builders() -> dict:
    """The forward schedule builders by name: what an algorithm's ``SCHEDULE`` names."""
    return {name: _builder(FORWARD, name) for name in FORWARD}


def build_schedule(problem, tiling, algorithm: str, heads_sample: int | None = None,
                   sram_limit_bytes: int = 0) -> Schedule:
    """Tensors and block programs of ``algorithm`` on ``problem`` with ``tiling``.

    ``problem.pass_``: forward, backward, or forward+backward (the forward's kernels,
    then the backward's; a training step runs the rest of the network between them, so
    the first backward kernel starts with a cold L2: ``KernelProgram.cold_l2``).
    ``heads_sample``: replay only ``heads_sample`` query heads (a multiple of
    heads_per_block, consecutive: :meth:`Schedule.sampled_groups`) through the L2; the
    caller scales their bytes to all heads.
    """
    name = get(algorithm).SCHEDULE
    if name not in FORWARD:
        raise InputError("algorithm", algorithm,
                         f"has no trace schedule (known: {', '.join(FORWARD)})")
    if problem.pass_ != "forward" and name not in BACKWARD:
        raise InputError("pass", problem.pass_, f"is not simulated for {algorithm} by the "
                         f"trace model (backward: {', '.join(BACKWARD)})")
    d = dims_of(problem, tiling, sram_limit_bytes)
    G_sim = d.G
    if heads_sample is not None:
        if not 1 <= heads_sample <= d.H or heads_sample % d.hpb:
            raise InputError("heads_sample", heads_sample,
                             f"must be a multiple of heads_per_block={d.hpb} between "
                             f"{d.hpb} and heads={d.H}")
        G_sim = heads_sample // d.hpb
    layout = Layout()
    kernels = []
    if problem.pass_ in ("forward", "forward+backward"):
        kernels += _builder(FORWARD, name)(d, layout)
    if problem.pass_ in ("backward", "forward+backward"):
        backward = _builder(BACKWARD, name)(d, layout)
        if kernels:
            backward[0].cold_l2 = True
        kernels += backward
    return Schedule(algorithm, d, layout, kernels, G_sim)
