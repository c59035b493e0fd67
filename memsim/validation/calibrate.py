"""Calibration: efficiency factors fitted to measurements, per unit and per kernel class.

Two steps, each checkable on its own:

1. **Per unit, from the ceilings.** Each microbenchmark measures one resource alone, so its
   factor is a ratio: copy bandwidth (read + write) / HBM peak, L2-resident read / L2 peak,
   8192³ bf16 matmul / tensor peak, SGEMM / fp32 peak, exp kernel / exp peak. These go into
   the calibrated profile, a TOML file written beside the measurements (never over a
   datasheet profile) with ``calibrated_from`` naming the measurement folder.
2. **Per kernel class, from the timed cases.** For each group of cases (``sdpa/flash``,
   ``kernel/flash2``...) and each model whose Cost was recorded (analytic; trace-driven,
   whose HBM bytes count L2 hits out), the factors of the units that take a real share of
   its roofline time (at most n − 1 for n cases) are fitted by least squares on log time,
   starting from step 1: the class's factor for a unit is what that unit achieves *inside
   such kernels* (FlashAttention-2 reaches a smaller share of the tensor cores than a GEMM
   does). Leave-one-out errors say whether a fit predicts a case it has not seen, or only
   fits its own data. A size trend (slope of the remaining log error against log FLOPs)
   says whether one factor per class is enough.

The fit re-times each case through :func:`memsim.roofline.roofline` (the one place time
comes from), from the Cost recorded with it (``work``), under trial efficiency factors.
Minimised: Σ (log t_pred − log t_meas)² + λ Σ (log f − log f_prior)², by coordinate descent
over log f ∈ [log 0.01, 0]; the small λ only chooses among factors the data cannot tell
apart (two compute units always summed in the same ratio). Where bytes and FLOPs grow in
the same ratio over a class (prefill shapes alone), a slow memory and a slow compute unit
explain the data equally well; cases of another bound (decoding) tell them apart.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memsim.cost import Cost
from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.roofline import roofline

FIT_UNITS = ("tensor", "fp32", "exp", "hbm_bandwidth", "l2_bandwidth", "sram_bandwidth")
MIN_FACTOR = 0.01
PRIOR_WEIGHT = 1e-6
_COST_FIELDS = tuple(Cost.__dataclass_fields__)

# ceiling bench → (efficiency factor, measured key, the peak it is a share of)
CEILING_UNITS: dict[str, tuple[str, str, Callable[[GPU], float]]] = {
    "d2d_copy": ("hbm_bandwidth", "d2d_copy_bytes_per_s",
                 lambda g: g.spec.hbm_bandwidth_bytes_per_s),
    "l2_read": ("l2_bandwidth", "l2_read_bytes_per_s", lambda g: g.spec.l2_bandwidth_bytes_per_s),
    "matmul_bf16": ("tensor", "matmul_bf16_flop_per_s",
                    lambda g: g.peak_flop_per_s("tensor", "bf16")),
    "matmul_fp32": ("fp32", "matmul_fp32_flop_per_s", lambda g: g.spec.fp32_flop_per_s),
    "exp": ("exp", "exp_per_s", lambda g: g.spec.exp_per_s),
}


# ---- samples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One timed case: the work its roofline needs and the measured time (s)."""

    id: str
    group: str
    cost: Cost
    dtype: str
    matmul_unit: str
    blocks_per_sm: int
    measured_s: float


def samples_from(cases: list[dict[str, Any]], model: str = "analytic") -> list[Sample]:
    """Samples of every ``ok`` case that recorded ``model``'s work and a measured ``time_s``.

    ``work`` is ``{"analytic": {...}, "trace": {...}}``; a flat dict is the analytic one.
    """
    out = []
    for c in cases:
        work, meas = c.get("work"), (c.get("measurement") or {}).get("time_s")
        if c.get("status") != "ok" or not work or not isinstance(meas, int | float) or meas <= 0:
            continue
        if c.get("kind") == "silicon":  # roofline terms, fitted by calibrate_silicon
            continue
        if "analytic" in work or "trace" in work:
            work = work.get(model)
        elif model != "analytic":
            work = None
        if not work:
            continue
        cost = Cost(**{f: float(work.get(f, 0.0)) for f in _COST_FIELDS})
        out.append(Sample(c["id"], c["group"], cost, work["dtype"], work["matmul_unit"],
                          int(work["blocks_per_sm"]), float(meas)))
    return out


def with_factors(gpu: GPU, factors: dict[str, float]) -> GPU:
    """``gpu`` with some efficiency factors replaced (each clipped into [MIN_FACTOR, 1])."""
    clipped = {k: float(min(1.0, max(MIN_FACTOR, v))) for k, v in factors.items()}
    return gpu.model_copy(update={"efficiency": gpu.efficiency.model_copy(update=clipped)})


def predicted_s(samples: list[Sample], gpu: GPU) -> np.ndarray:
    """Roofline time of each sample on ``gpu`` (s), in the samples' order.

    One vectorised roofline call per (dtype, matmul unit) among the samples.
    """
    out = np.empty(len(samples))
    kinds: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        kinds[(s.dtype, s.matmul_unit)].append(i)
    for (dtype, unit), index in kinds.items():
        cost = Cost(**{f: np.array([getattr(samples[i].cost, f) for i in index])
                       for f in _COST_FIELDS})
        blocks_per_sm = np.array([samples[i].blocks_per_sm for i in index])
        timing = roofline(cost, gpu, dtype, matmul_unit=unit, blocks_per_sm=blocks_per_sm)
        out[index] = np.broadcast_to(np.asarray(timing.time_s, dtype=float), (len(index),))
    return out


def _unit_of_term(term: str, matmul_unit: str) -> str:
    return {"matmul": "tensor" if matmul_unit == "tensor" else "fp32", "vector": "fp32",
            "exp": "exp", "hbm": "hbm_bandwidth", "l2": "l2_bandwidth",
            "sram": "sram_bandwidth"}[term]


def active_units(samples: list[Sample], gpu: GPU, share: float = 0.05) -> list[str]:
    """The units the data can fit, most important first: a unit qualifies when its term is
    at least ``share`` of some sample's time, and ranks by its summed share of the samples'
    times; at most n − 1 are kept (one when n ≤ 2), so a class never has as many factors
    as cases. (Units that merely *bind* under the starting factors would miss a unit that
    binds in truth: the analytic Cost of FlashAttention is HBM-bound on paper.)"""
    weight: dict[str, float] = defaultdict(float)
    for s in samples:
        t = roofline(s.cost, gpu, s.dtype, matmul_unit=s.matmul_unit,
                     blocks_per_sm=s.blocks_per_sm)
        for term, term_s in t.terms_s.items():
            fraction = float(term_s) / float(t.time_s)
            if fraction >= share:
                weight[_unit_of_term(term, s.matmul_unit)] += min(fraction, 1.0)
    ranked = sorted(weight, key=lambda u: (-weight[u], FIT_UNITS.index(u)))
    return ranked[:max(1, len(samples) - 1)]


# ---- the fit ----------------------------------------------------------------------------


def _loss(samples: list[Sample], measured_log: np.ndarray, gpu: GPU,
          prior: dict[str, float]) -> float:
    resid = np.log(predicted_s(samples, gpu)) - measured_log
    penalty = sum((math.log(getattr(gpu.efficiency, u)) - math.log(p)) ** 2
                  for u, p in prior.items())
    return float(resid @ resid) + PRIOR_WEIGHT * penalty


def fit(samples: list[Sample], gpu: GPU, units: list[str] | None = None,
        rounds: int = 12, grid: int = 25, width_log: float | None = None) -> dict[str, float]:
    """Efficiency factors of ``units`` (default: :func:`active_units`) fitted to ``samples``.

    Coordinate descent from ``gpu``'s factors: for each unit in turn, a log-spaced grid
    ``width_log`` either side of the current value (default: all of [MIN_FACTOR, 1]),
    halved every round, then a golden-section refinement; until a round changes no factor
    by more than 1e-6 (relative).
    """
    if not samples:
        raise InputError("samples", 0, "must hold at least one timed case to fit")
    units = units if units is not None else active_units(samples, gpu)
    prior = {u: getattr(gpu.efficiency, u) for u in units}
    measured_log = np.log([s.measured_s for s in samples])
    current = dict(prior)
    lo_log, hi_log = math.log(MIN_FACTOR), 0.0

    def loss_at(unit: str, log_f: float) -> float:
        return _loss(samples, measured_log, with_factors(gpu, {**current, unit: math.exp(log_f)}),
                     prior)

    # Start from the best single-unit move: when one unit explains the data (the tensor
    # share inside attention), descending from the prior can stall where another unit
    # absorbs part of the miss and the first no longer binds.
    if width_log is None:
        best_loss, best_start = loss_at(units[0], math.log(current[units[0]])) if units \
            else 0.0, dict(current)
        step = (hi_log - lo_log) / (grid - 1)
        for unit in units:
            xs = np.linspace(lo_log, hi_log, grid)
            i = int(np.argmin([loss_at(unit, float(x)) for x in xs]))
            x = _golden(lambda v, u=unit: loss_at(u, v), max(lo_log, xs[i] - step),
                        min(hi_log, xs[i] + step))
            value = loss_at(unit, x)
            if value < best_loss:
                best_loss, best_start = value, {**prior, unit: math.exp(x)}
        current = best_start

    start_width = width_log if width_log is not None else hi_log - lo_log
    for r in range(rounds):
        moved = 0.0
        width = start_width / (2 ** min(r, 6))
        for unit in units:
            here = math.log(current[unit])
            a, b = max(lo_log, here - width), min(hi_log, here + width)
            candidates = np.linspace(a, b, grid)
            losses = [loss_at(unit, x) for x in candidates]
            i = int(np.argmin(losses))
            step = (b - a) / (grid - 1)
            best = _golden(lambda x, u=unit: loss_at(u, x), max(a, candidates[i] - step),
                           min(b, candidates[i] + step))
            moved = max(moved, abs(best - here))
            current[unit] = math.exp(best)
        if moved < 1e-6:
            break
    return current


def _golden(f: Callable[[float], float], a: float, b: float, tol: float = 1e-8) -> float:
    """Minimum of a unimodal ``f`` on [a, b] by golden-section search."""
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2


def _abs_errors(samples: list[Sample], gpu: GPU) -> np.ndarray:
    return np.abs(predicted_s(samples, gpu) / np.array([s.measured_s for s in samples]) - 1)


def leave_one_out(samples: list[Sample], gpu: GPU, units: list[str],
                  start: dict[str, float]) -> np.ndarray:
    """|error| of each sample predicted by a fit to all the others (warm-started at ``start``)."""
    errors = []
    for i, left_out in enumerate(samples):
        rest = samples[:i] + samples[i + 1:]
        factors = fit(rest, with_factors(gpu, start), units, rounds=6, grid=11, width_log=0.5)
        errors.append(float(_abs_errors([left_out], with_factors(gpu, factors))[0]))
    return np.array(errors)


def _stats(errors: np.ndarray) -> dict[str, float | None]:
    if len(errors) == 0:
        return {"median_abs": None, "p90_abs": None}
    return {"median_abs": float(np.median(errors)), "p90_abs": float(np.quantile(errors, 0.9))}


def size_trend(samples: list[Sample], gpu: GPU) -> float | None:
    """Slope of log(measured / predicted) against log10 of the matmul FLOPs (None if n < 3)."""
    flops = np.array([s.cost.matmul_flops for s in samples])
    if len(samples) < 3 or np.any(flops <= 0) or np.ptp(np.log10(flops)) == 0:
        return None
    resid = np.log([s.measured_s for s in samples]) - np.log(predicted_s(samples, gpu))
    return float(np.polyfit(np.log10(flops), resid, 1)[0])


# ---- the two steps ----------------------------------------------------------------------


def unit_factors(cases: list[dict[str, Any]], gpu: GPU) -> dict[str, dict[str, Any]]:
    """Step 1: factor per unit from the ceiling cases (the newest measurement of each)."""
    out: dict[str, dict[str, Any]] = {}
    for c in cases:
        bench = (c.get("params") or {}).get("bench")
        if c.get("kind") != "ceiling" or c.get("status") != "ok" or bench not in CEILING_UNITS:
            continue
        unit, key, peak_of = CEILING_UNITS[bench]
        measured = (c.get("measurement") or {}).get(key)
        if not isinstance(measured, int | float) or measured <= 0:
            continue
        ratio = measured / peak_of(gpu)
        out[unit] = {"value": min(1.0, ratio), "ratio": ratio, "measured": measured,
                     "peak": peak_of(gpu), "bench": bench, "case": c["id"],
                     "run_file": c.get("run_file"), "clipped": ratio > 1.0}
    return out


@dataclass
class Calibration:
    """The result of :func:`calibrate`: the calibrated profile and every fit's errors."""

    datasheet: GPU
    profile: GPU
    units: dict[str, dict[str, Any]]
    classes: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"datasheet_profile": self.datasheet.name, "profile": self.profile.name,
                "calibrated_from": self.profile.calibrated_from, "units": self.units,
                "classes": self.classes}


def fit_class(samples: list[Sample], base: GPU, datasheet: GPU) -> dict[str, Any]:
    """Step 2 for one kernel class: factors, in-sample and leave-one-out errors."""
    units = active_units(samples, base)
    factors = fit(samples, base, units) if units else {}
    fitted = with_factors(base, factors)
    loo = (leave_one_out(samples, base, units, factors) if len(samples) >= 3 and units
           else np.array([]))
    return {
        "n": len(samples), "units": units, "factors": factors,
        "errors": {"datasheet": _stats(_abs_errors(samples, datasheet)),
                   "unit_calibrated": _stats(_abs_errors(samples, base)),
                   "class_fit": _stats(_abs_errors(samples, fitted)),
                   "leave_one_out": _stats(loo)},
        "size_trend_per_decade": size_trend(samples, fitted),
        "cases": [s.id for s in samples],
    }


def calibrate(cases: list[dict[str, Any]], datasheet: GPU, calibrated_from: str) -> Calibration:
    """Both steps on the records ``cases`` measured with profile ``datasheet``."""
    units = unit_factors(cases, datasheet)
    base = with_factors(datasheet, {u: f["value"] for u, f in units.items()})
    profile = base.model_copy(update={"name": f"{datasheet.name}-calibrated",
                                      "display_name": f"{datasheet.display_name} (calibrated)",
                                      "calibrated_from": calibrated_from})
    classes = {}
    for model in ("analytic", "trace"):
        by_group: dict[str, list[Sample]] = defaultdict(list)
        for s in samples_from(cases, model):
            by_group[s.group].append(s)
        for group, samples in sorted(by_group.items()):
            if len(samples) >= 2:
                classes[f"{group} ({model})"] = {"model": model,
                                                 **fit_class(samples, base, datasheet)}
    return Calibration(datasheet, profile, units, classes)


# ---- the calibrated profile -------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _sourced(key: str, value: Any, source: str, **extra: str) -> str:
    fields = [f"value = {_toml_value(value)}"] + [f"{k} = {_toml_value(v)}" for k, v in
                                                  extra.items()]
    return f"{key} = {{ {', '.join(fields)}, source = {_toml_value(source)} }}"


def profile_toml(cal: Calibration) -> str:
    """The calibrated profile as TOML: the datasheet's spec and price, measured efficiency."""
    g, ds = cal.profile, cal.datasheet
    lines = [f"# {g.name}: written by `memsim calibrate` from the measurements in "
             f"{g.calibrated_from}.",
             f"# Spec and price are the datasheet profile's ({ds.name}); efficiency factors "
             "measured by ceilings are replaced, the others kept.",
             f"name = {_toml_value(g.name)}", f"display_name = {_toml_value(g.display_name)}",
             f"vendor = {_toml_value(g.vendor)}", f"architecture = {_toml_value(g.architecture)}",
             f"compute_capability = {_toml_value(g.compute_capability)}",
             f"calibrated_from = {_toml_value(g.calibrated_from)}", "", "[spec]"]
    for key, value in g.spec.model_dump().items():
        if value is not None:
            lines.append(_sourced(key, value, g.sources[f"spec.{key}"]))
    lines += ["", "[efficiency]"]
    for key, value in g.efficiency.model_dump().items():
        unit = cal.units.get(key)
        if unit is None:
            source = "datasheet profile: " + g.sources[f"efficiency.{key}"]
        else:
            source = (f"measured {unit['bench']} {unit['measured']:.4g} / peak "
                      f"{unit['peak']:.4g} = {unit['ratio']:.3f}"
                      + (" (clipped to 1)" if unit["clipped"] else "")
                      + f", {unit['run_file']}")
        lines.append(_sourced(key, value, source))
    p = g.price
    lines += ["", "[price]", _sourced("usd_per_gpu_hour", p.usd_per_gpu_hour, p.source,
                                      date=p.date)]
    for name, fitted in sorted(cal.classes.items()):
        if fitted["model"] != "analytic" or not fitted["factors"]:
            continue
        group = name.removesuffix(" (analytic)")
        loo = fitted["errors"]["leave_one_out"]["median_abs"]
        source = (f"memsim calibrate: fitted to {fitted['n']} {group} cases in "
                  f"{g.calibrated_from} (analytic model; leave-one-out median |error| "
                  + ("n/a" if loo is None else f"{loo:.1%}") + ")")
        lines += ["", f"[class_efficiency.{_toml_value(group)}]"]
        for unit, value in sorted(fitted["factors"].items()):
            lines.append(_sourced(unit, min(float(value), 1.0), source))
    return "\n".join(lines) + "\n"


def write_profile(cal: Calibration, out: Path | str) -> Path:
    """Write the calibrated profile to ``out`` (refusing to overwrite a bundled profile)
    and check that it loads back with ``calibrated_from`` set."""
    from memsim.hardware import load_profile_file, profiles_dir

    out = Path(out)
    bundled = {p.resolve() for p in profiles_dir().glob("*.toml")}
    if out.resolve() in bundled and not load_profile_file(out).calibrated_from:
        raise InputError("out", str(out), "is a datasheet profile; a calibration never "
                         "overwrites one (choose another file)")
    out.parent.mkdir(parents=True, exist_ok=True)
    from memsim.files import write_text

    write_text(out, profile_toml(cal), "out")
    loaded = load_profile_file(out)
    assert loaded.calibrated_from == cal.profile.calibrated_from
    return out


def format_text(cal: Calibration) -> str:
    """Readable report: unit factors, then each class's factors and errors."""
    lines = [f"calibration of {cal.datasheet.name} from {cal.profile.calibrated_from}", "",
             "per unit (ceilings):"]
    for unit in FIT_UNITS + ("interconnect",):
        old = getattr(cal.datasheet.efficiency, unit)
        new = getattr(cal.profile.efficiency, unit)
        src = cal.units.get(unit, {}).get("bench", "kept from the datasheet profile")
        lines.append(f"  {unit:16} {old:6.3f} → {new:6.3f}   ({src})")
    lines += ["", "per kernel class (time_s; |error| median / p90):"]
    for group, c in cal.classes.items():
        f = ", ".join(f"{u} {v:.3f}" for u, v in c["factors"].items()) or "nothing to fit"
        e = c["errors"]
        fmt = lambda s: ("–" if s["median_abs"] is None  # noqa: E731
                         else f"{100 * s['median_abs']:.1f}% / {100 * s['p90_abs']:.1f}%")
        lines.append(f"  {group} (n={c['n']}): {f}")
        lines.append(f"    datasheet {fmt(e['datasheet'])}   ceilings "
                     f"{fmt(e['unit_calibrated'])}   class fit {fmt(e['class_fit'])}   "
                     f"leave-one-out {fmt(e['leave_one_out'])}")
        if c["size_trend_per_decade"] is not None:
            lines.append(f"    remaining log error per decade of FLOPs: "
                         f"{c['size_trend_per_decade']:+.3f}")
    return "\n".join(lines)


# ---- the roofline terms recorded with the silicon database's rows ----------------------
#
# Rows measured by others (memsim.silicon) are recorded with the roofline *terms* of
# memsim's prediction, the class's units at efficiency 1 (``matmul_s``, ``hbm_s``,
# ``link_s``) and the rest at the profile's (``vector_s``, ``other_memory_s``):
#     t = max(matmul_s / e_tensor + vector_s, hbm_s / e_hbm, other_memory_s)
#         + link_s / e_interconnect + floor_s
# The kernel classes are fitted by re-predicting the rows (memsim.silicon.fit), not from
# these terms; they say where each row's time goes.


def retime_terms(terms: dict[str, np.ndarray], factors: dict[str, float],
                 floor_s: float) -> np.ndarray:
    """Time (s) of rows with roofline ``terms`` under fitted ``factors`` and ``floor_s``."""
    z = np.zeros_like(terms["hbm_s"])
    compute = terms.get("matmul_s", z) / factors.get("tensor", 1.0) + terms.get("vector_s", z)
    memory = np.maximum(terms.get("hbm_s", z) / factors.get("hbm_bandwidth", 1.0),
                        terms.get("other_memory_s", z))
    link = terms.get("link_s", z) / factors.get("interconnect", 1.0)
    return np.maximum(compute, memory) + link + floor_s
