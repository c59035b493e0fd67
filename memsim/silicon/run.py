"""``memsim validate --source aiconfigurator``: every chosen row predicted, scored, recorded.

For each op class and each of its table files (per GPU system and backend, the version with
the most rows: :func:`memsim.silicon.source.table_files`):

1. read the columns the class needs; flag outlier rows on the whole file (their neighbours
   are needed), :mod:`memsim.silicon.outliers`;
2. choose the rows: a fixed, seeded sample of ``sample`` rows per file (default), or all of
   them (``full``);
3. predict them, vectorised (:mod:`memsim.silicon.classes`);
4. score: per op class, backend and GPU, the error statistics of
   :func:`memsim.validation.summary.stats_of` (median, p90, bias, by size bucket);
5. refit the kernel classes on the H100 and H200 rows only, with the fit that writes them
   (:func:`memsim.silicon.fit.fit_run`), and check it leaving one GPU out and on every
   other GPU (never fitted);
6. write the JSONL records (``OUT/<profile>/aiconfigurator-<stamp>.jsonl``, one line per
   row; with ``full``, a seeded sample of ``sample`` rows per file, so a run is megabytes,
   not gigabytes) and ``OUT/summary.json|txt`` (every scored row counted).

A record's ``measurement`` holds only the database's latency and its provenance (package,
version, file, row); memsim's numbers are in ``prediction``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memsim.ops.classes import FIT_GPUS
from memsim.silicon import source
from memsim.silicon.classes import CLASSES, MODELS, OpClass
from memsim.silicon.tables import Rows

DEFAULT_SAMPLE = 200
DEFAULT_SEED = 0
OP_ALIASES = {
    "attention": ("context_attention", "generation_attention"),
    "mla": ("context_mla", "generation_mla", "mla_bmm", "mla_context_module",
            "mla_generation_module"),
    "dsa": ("dsa_context_module", "dsa_generation_module"),
    "encoder": ("encoder_attention",),
    "nccl": ("nccl_all_reduce", "nccl_all_gather", "nccl_reduce_scatter", "nccl_alltoall"),
    "comm": ("allreduce", "nccl_all_reduce", "nccl_all_gather", "nccl_reduce_scatter",
             "nccl_alltoall", "moe_a2a"),
}


def resolve_ops(text: str | None) -> list[str]:
    """``"attention,mla"`` → class names; None → every class."""
    from memsim.errors import InputError

    if not text:
        return list(CLASSES)
    out: list[str] = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        names = OP_ALIASES.get(name, (name,))
        for n in names:
            if n not in CLASSES:
                known = sorted(set(CLASSES) | set(OP_ALIASES))
                raise InputError("ops", name, f"must be among {', '.join(known)}")
            if n not in out:
                out.append(n)
    return out


def resolve_gpus(text: str | None) -> set[str] | None:
    """``"h100-sxm,b200"`` (profiles or database systems) → database system names."""
    from memsim.errors import InputError

    if not text:
        return None
    by_profile = {p: s for s, p in source.SYSTEM_PROFILES.items() if p}
    out = set()
    for name in (t.strip().lower() for t in text.split(",") if t.strip()):
        system = name if name in source.SYSTEM_PROFILES else by_profile.get(name)
        if system is None:
            raise InputError("gpu", name, "is not a system of the database (known: "
                             + ", ".join(sorted(set(by_profile) | set(source.SYSTEM_PROFILES)))
                             + ")")
        out.add(system)
    return out


@dataclass
class Chunk:
    """The chosen rows of one table file, predicted and flagged."""

    op_class: str
    rows: Rows
    profile: str
    measured_s: np.ndarray
    predicted_s: dict[str, np.ndarray]
    bound: np.ndarray
    terms: dict[str, dict[str, np.ndarray]]
    outlier: np.ndarray
    mapped: np.ndarray
    params: list[dict]
    reasons: dict[int, str]
    record: np.ndarray            # which rows get a JSONL record
    start: dict[str, float] = field(default_factory=dict)
    outlier_reasons: dict[int, str] = field(default_factory=dict)   # the outliers' rules

    @property
    def group(self) -> str:
        return f"{self.op_class}/{self.rows.backend}/{self.profile}"

    def ids(self, index: np.ndarray | None = None) -> list[str]:
        rows = self.rows.row if index is None else self.rows.row[index]
        return [f"aic:{self.rows.file}#{int(r)}" for r in rows]


@dataclass
class SiliconRun:
    chunks: list[Chunk] = field(default_factory=list)
    no_profile: dict[str, int] = field(default_factory=dict)   # system → rows not predicted
    elapsed_s: float = 0.0


def _choose(n: int, sample: int | None, seed: int, file: str,
            case: np.ndarray | None = None) -> np.ndarray:
    """A fixed, seeded sample of ``sample`` row positions of a file (sorted), or all.

    With ``case`` (an id per row naming its model shape), whole shapes are drawn in a seeded
    order until ``sample`` rows are reached (the last shape's rows drawn at random): memsim
    times one shape's rows in one vectorised call, so a sample of 20 shapes is as fast as
    one of 20 rows, and still spans every size of each shape."""
    if sample is None or sample >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, zlib.crc32(file.encode())])
    if case is None:
        return np.sort(rng.choice(n, size=sample, replace=False))
    chosen: list[np.ndarray] = []
    left = sample
    for c in rng.permutation(np.unique(case)):
        members = np.nonzero(case == c)[0]
        if len(members) > left:
            members = rng.choice(members, size=left, replace=False)
        chosen.append(members)
        left -= len(members)
        if left == 0:
            break
    return np.sort(np.concatenate(chosen))


def _profile_of(system: str) -> str | None:
    from memsim.hardware import gpu_names

    name = source.SYSTEM_PROFILES.get(system)
    return name if name in gpu_names() else None


def chunk_of(op: OpClass, rows: Rows, profile: str, chosen: np.ndarray,
             rule_all: np.ndarray, record: np.ndarray) -> Chunk:
    """Predict the ``chosen`` rows of a file (positions), outliers flagged on the file
    (``rule_all``: each row's :func:`memsim.silicon.outliers.flag` rule, "" if none); an
    outlier's reason is its rule's."""
    from memsim.hardware import load_gpu
    from memsim.silicon.outliers import REASONS

    part = rows.take(chosen)
    mapped = op.mapper(part, load_gpu(profile))
    measured = np.asarray(part.col("latency"), dtype=float) * op.latency_to_s   # → s
    ok = np.isfinite(mapped.time_s["analytic"]) & (measured > 0)
    rule = rule_all[chosen]
    return Chunk(op.name, part, profile, measured, mapped.time_s, mapped.bound, mapped.terms,
                 rule != "", ok, mapped.params, mapped.reasons, record, mapped.start,
                 {i: REASONS[r] for i, r in enumerate(rule.tolist()) if r})


def collect(ops: list[str], gpus: set[str] | None = None, backends: set[str] | None = None,
            sample: int | None = DEFAULT_SAMPLE, full: bool = False, seed: int = DEFAULT_SEED,
            echo: Callable[[str], None] = print,
            extract: list[Rows] | None = None,
            where: Callable[[Rows], np.ndarray] | None = None) -> SiliconRun:
    """Read, flag, choose and predict (steps 1-3). ``extract``: rows already read (the
    committed test extract) instead of the installed package. ``where``: a file's rows →
    which of them may be chosen (a kernel class fit's rows,
    :meth:`memsim.silicon.fit.FitSpec.select`), so that the sample is drawn among those
    alone; outliers are still flagged on the whole file."""
    from memsim.silicon import outliers, tables

    run = SiliconRun()
    t0 = time.perf_counter()
    version = None if extract is not None else source.package_version()
    for name in ops:
        op = CLASSES[name]
        if extract is not None:
            files: list[Any] = [r for r in extract if r.table == op.table]
        else:
            files = source.table_files(op.table)
        for f in files:
            if (gpus and f.system not in gpus) or (backends and f.backend not in backends):
                continue
            profile = _profile_of(f.system)
            if profile is None:
                if extract is None:
                    import pyarrow.parquet as pq

                    n = pq.read_metadata(f.path).num_rows
                else:
                    n = len(f)
                run.no_profile[f.system] = run.no_profile.get(f.system, 0) + n
                continue
            rows = f if extract is not None else tables.read(f, list(op.columns), version)
            if op.select is not None:
                rows = rows.take(op.select(rows))
            if len(rows) == 0:
                continue
            allowed = (np.arange(len(rows)) if where is None
                       else np.nonzero(where(rows))[0])
            if len(allowed) == 0:
                continue
            rule = outliers.flag(rows, op.curve, op.axis, siblings=op.siblings,
                                 split=op.split)
            case = outliers.curve_ids(rows, op.case)[allowed] if op.case else None
            sampled = allowed[_choose(len(allowed), sample, seed, rows.file, case)]
            chosen = allowed if full else sampled
            record = np.isin(chosen, sampled)
            chunk = chunk_of(op, rows, profile, chosen, rule, record)
            run.chunks.append(chunk)
            echo(f"{chunk.group:48} {len(chosen):>7} rows, {int(chunk.outlier.sum()):>4} "
                 f"outliers, {int((~chunk.mapped).sum()):>4} not mapped")
    run.elapsed_s = time.perf_counter() - t0
    return run


# ---- scoring ------------------------------------------------------------------------------


def _scored(c: Chunk) -> np.ndarray:
    return c.mapped & ~c.outlier


def statistics(run: SiliconRun, worst: int = 3) -> list[dict[str, Any]]:
    """Per (op class, backend, GPU) and model: the summary's statistics of ``time_s``."""
    from dataclasses import asdict

    from memsim.validation.summary import stats_of

    by_group: dict[str, list[Chunk]] = {}
    for c in run.chunks:
        by_group.setdefault(c.group, []).append(c)
    out = []
    for group, chunks in sorted(by_group.items()):
        for model in MODELS:
            pred = np.concatenate([c.predicted_s[model][_scored(c)] for c in chunks])
            meas = np.concatenate([c.measured_s[_scored(c)] for c in chunks])
            if len(meas) == 0:
                continue
            ids = [i for c in chunks for i in c.ids(np.nonzero(_scored(c))[0])]
            out.append(asdict(stats_of(group, model, "time_s", ids, pred, meas, worst)))
    return out


CASE_FOLDS = 5


def case_folds(c: Chunk) -> np.ndarray:
    """Fold (0..4) of each row, by a stable hash of its case (model shape) columns."""
    cols = [c.rows.columns[k] for k in CLASSES[c.op_class].case if k in c.rows.columns]
    keys = ["|".join(str(v) for v in vals) for vals in zip(*cols, strict=True)] if cols \
        else [str(r) for r in c.rows.row]
    return np.array([zlib.crc32(k.encode()) % CASE_FOLDS for k in keys], dtype=np.int64)


def calibration(run: SiliconRun, sample: int = DEFAULT_SAMPLE, seed: int = DEFAULT_SEED,
                echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Step 5: :func:`memsim.silicon.fit.fit_run` on the run's rows (at most ``sample``
    rows per GPU and class; nothing written)."""
    from memsim.silicon.fit import fit_run

    return fit_run(run.chunks, sample, seed, echo)


def chunks_from_records(cases: list[dict[str, Any]]) -> list[Chunk]:
    """The scored rows of ``memsim validate --source aiconfigurator`` records (kind
    ``silicon``, status ``ok``) as chunks :func:`memsim.silicon.fit.fit_run` can refit:
    each record keeps its row's columns and provenance."""
    from memsim.silicon.tables import Rows

    by_file: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cases:
        if c.get("kind") == "silicon" and c.get("status") == "ok":
            prov = c["measurement"]["provenance"]
            by_file.setdefault((prov["file"], c["prediction"]["profile"]), []).append(c)
    out = []
    for (file, profile), recs in sorted(by_file.items()):
        system, family, backend, version, table = file.removesuffix(".parquet").split("/")
        names = [k for k in recs[0]["params"] if k != "memsim"]
        cols = {k: np.array([r["params"].get(k) for r in recs],
                            dtype=object if isinstance(recs[0]["params"][k], str) else None)
                for k in names}
        rows = Rows(system, family, backend, version, table, file,
                    recs[0]["measurement"]["provenance"]["version"],
                    np.array([r["measurement"]["provenance"]["row"] for r in recs]), cols)
        n = len(recs)
        ones = np.ones(n, dtype=bool)
        out.append(Chunk(recs[0]["op_class"], rows, profile,
                         np.array([r["measurement"]["time_s"] for r in recs]), {},
                         np.full(n, "", dtype=object), {}, ~ones, ones, [{}] * n, {}, ones))
    return out


def counts(run: SiliconRun) -> dict[str, dict[str, Any]]:
    """Per group: rows chosen, scored, outliers, not mapped (with the first reasons)."""
    out: dict[str, dict[str, Any]] = {}
    for c in run.chunks:
        g = out.setdefault(c.group, {"rows": 0, "scored": 0, "outliers": 0, "not_mapped": 0,
                                     "reasons": []})
        g["rows"] += len(c.measured_s)
        g["scored"] += int(_scored(c).sum())
        g["outliers"] += int(c.outlier.sum())
        g["not_mapped"] += int((~c.mapped).sum())
        for r in sorted(set(c.reasons.values()))[:3]:
            if r not in g["reasons"]:
                g["reasons"].append(r)
    return out


# ---- records ------------------------------------------------------------------------------


def records(c: Chunk) -> list[dict[str, Any]]:
    """The JSONL case records of a chunk's recorded rows (the GPU runs' format)."""
    out = []
    cols = {k: v.tolist() for k, v in c.rows.columns.items() if k != "latency"}
    folds = case_folds(c).tolist()
    rows, bound = c.rows.row.tolist(), c.bound.tolist()
    measured = c.measured_s.tolist()
    predicted = {m: c.predicted_s[m].tolist() for m in MODELS}
    terms = {m: {k: v.tolist() for k, v in c.terms[m].items()} for m in MODELS}
    for i in np.nonzero(c.record)[0].tolist():
        meas = measured[i]
        rec: dict[str, Any] = {
            "type": "case", "id": f"aic:{c.rows.file}#{rows[i]}", "kind": "silicon",
            "group": c.group, "op_class": c.op_class, "backend": c.rows.backend,
            "params": {**{k: v[i] for k, v in cols.items()}, "memsim": c.params[i]},
            "measurement": {"time_s": meas, "provenance": {
                "package": source.PACKAGE, "version": c.rows.package_version,
                "file": c.rows.file, "row": rows[i]}},
        }
        if c.outlier[i]:
            rec.update(status="outlier", reason=f"{c.outlier_reasons[i]}; not scored")
        elif not c.mapped[i]:
            rec.update(status="skipped", reason=c.reasons.get(i, "not mapped"))
        else:
            pred = {m: {"time_s": predicted[m][i]} for m in MODELS}
            rec.update(status="ok",
                       prediction={**pred, "bound": str(bound[i]), "profile": c.profile,
                                   "profile_kind": "datasheet"},
                       errors={m: {"time_s": pred[m]["time_s"] / meas - 1.0} for m in MODELS},
                       work={"terms": {m: {k: v[i] for k, v in terms[m].items()}
                                       for m in MODELS},
                             "start": c.start, "case_fold": folds[i]})
        out.append(rec)
    return out


def write(run: SiliconRun, out: Path, header: dict[str, Any], stamp: str) -> list[Path]:
    """One run file per GPU profile under ``out``; returns their paths."""
    from memsim.validation.records import RunFile

    paths = []
    for profile in sorted({c.profile for c in run.chunks}):
        run_file = RunFile.create(out, profile, f"aiconfigurator-{stamp}", header)
        for c in run.chunks:
            if c.profile == profile:
                run_file.extend(records(c), already_plain=True)
        paths.append(run_file.path)
    return paths


def summary(run: SiliconRun, out: Path, header: dict[str, Any], paths: list[Path],
            calibrations: dict[str, Any]) -> dict[str, Any]:
    """The summary (the GPU runs' schema, plus row counts, size buckets and calibration)."""
    status: dict[str, int] = {}
    problems = []
    for c in run.chunks:
        status["ok"] = status.get("ok", 0) + int(_scored(c).sum())
        status["outlier"] = status.get("outlier", 0) + int(c.outlier.sum())
        status["skipped"] = status.get("skipped", 0) + int((~c.mapped & ~c.outlier).sum())
        for i in np.nonzero(c.outlier)[0].tolist():
            problems.append({"id": c.ids(np.array([i]))[0], "status": "outlier",
                             "reason": f"{c.measured_s[i] * 1e3:.4g} ms: {c.outlier_reasons[i]}"})
    return {"path": str(out), "runs": [str(p) for p in paths], "cases": status,
            "stats": statistics(run), "not_measured": problems, "source": header["source"],
            "rows": counts(run), "no_profile": run.no_profile, "calibration": calibrations,
            "fitted_gpus": list(FIT_GPUS)}


POINTS_PER_GROUP = 60


def points(run: SiliconRun, calibrations: dict[str, Any], per_group: int = POINTS_PER_GROUP,
           seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """A seeded sample of scored rows per group for the report's scatter plots:
    ``{group: {"gpu", "backend", "op_class", "fitted": bool, "measured_s": [...],
    "analytic_s": [...], "no_reuse_s": [...], "calibrated_s": [...]}}``; ``calibrated_s`` is
    memsim with the numbers the run's refit (H100/H200 rows only, :func:`calibration`) gave
    the row's class, null where no fit covers it."""
    from memsim.silicon.fit import refit_times

    out: dict[str, Any] = {}
    by_group: dict[str, list[Chunk]] = {}
    for c in run.chunks:
        by_group.setdefault(c.group, []).append(c)
    for group, chunks in sorted(by_group.items()):
        c0 = chunks[0]
        cols: dict[str, list] = {"measured_s": [], "analytic_s": [], "no_reuse_s": [],
                                 "calibrated_s": []}
        for c in chunks:
            idx = np.nonzero(_scored(c))[0]
            take = _choose(len(idx), per_group, seed, group)
            idx = idx[take]
            cols["measured_s"] += c.measured_s[idx].tolist()
            cols["analytic_s"] += c.predicted_s["analytic"][idx].tolist()
            cols["no_reuse_s"] += c.predicted_s["no_reuse"][idx].tolist()
            cols["calibrated_s"] += refit_times(c, idx, calibrations.get("analytic", {}))
        out[group] = {"op_class": c0.op_class, "backend": c0.rows.backend, "gpu": c0.profile,
                      "fitted": c0.profile in FIT_GPUS, **cols}
    return out
