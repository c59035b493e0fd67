"""Write the small committed extract the tests read (``tests/data/aiconfigurator/``).

``python -m memsim.silicon.extract OUT.json`` picks, from the installed package, a seeded
sample of :data:`PER_FILE` rows (:data:`PER_CLASS` for some classes) of each op class on a
few (system, backend) files, plus the whole curve of the first outlier row of each file (so
the outlier test has its neighbours). ``--only a,b`` rebuilds the files of classes a, b and
keeps every other file of OUT as it is. Every row keeps its index in its parquet file:
``{"package_version", "files": [{"file", "rows", "columns"}]}`` (see
:func:`memsim.silicon.tables.read_extract`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PER_FILE = 10
# classes with many files (the module tables have trtllm and vllm files per GPU): fewer rows
PER_CLASS = {"mla_bmm": 6, "mla_context_module": 4, "mla_generation_module": 4,
             "dsa_context_module": 4, "dsa_generation_module": 4}
MAX_CURVE = 30  # those classes' outlier curves join the extract only when this short
# B200's vLLM files carry the collection metadata the mapper reads (their MLA module
# tables' norm_dispatch: memsim.silicon.tables.META_COLUMNS)
FILES = (("h100_sxm", "trtllm"), ("h200_sxm", "vllm"), ("h200_sxm", "trtllm"),
         ("b200_sxm", "sglang"), ("b200_sxm", "vllm"), ("h100_sxm", "sglang"),
         ("gb300", "trtllm"), ("h100_sxm", "nccl"))


def build(per_file: int = PER_FILE, seed: int = 0, only: set[str] | None = None,
          keep: list[dict] | None = None) -> dict:
    """The extract document; with ``only``, just those classes' files are read and the
    files of ``keep`` (a previous extract's) that belong to no class in ``only`` kept."""
    from memsim.silicon import outliers, source, tables
    from memsim.silicon.classes import CLASSES
    from memsim.silicon.outliers import curve_ids

    version = source.package_version()
    files = []
    if only is not None:
        tables_of = {CLASSES[name].table for name in only}
        files = [f for f in keep or [] if f["file"].rsplit("/", 1)[-1].removesuffix(".parquet")
                 not in tables_of]
    for op in CLASSES.values():
        if only is not None and op.name not in only:
            continue
        for f in source.table_files(op.table):
            if (f.system, f.backend) not in FILES:
                continue
            rows = tables.read(f, list(op.columns), version)
            if op.select is not None:
                rows = rows.take(op.select(rows))
            rng = np.random.default_rng(seed)
            k = PER_CLASS.get(op.name, per_file)
            pick = set(rng.choice(len(rows), min(k, len(rows)), replace=False).tolist())
            flagged = np.nonzero(outliers.flag(rows, op.curve, op.axis, siblings=op.siblings,
                                               split=op.split) != "")[0]
            if len(flagged):
                ids = curve_ids(rows, op.curve)
                curve = set(np.nonzero(ids == ids[flagged[0]])[0].tolist())
                if op.name not in PER_CLASS or len(curve) <= MAX_CURVE:
                    pick |= curve
            part = rows.take(np.array(sorted(pick)))
            files.append({"file": f.relative, "rows": part.row.tolist(),
                          "columns": {k: v.tolist() for k, v in part.columns.items()}})
    return {"package": source.PACKAGE, "package_version": version,
            "note": "rows of aiconfigurator-core's measured tables (Apache-2.0), with each "
                    "row's index in its parquet file; written by python -m "
                    "memsim.silicon.extract", "files": files}


def main(argv: list[str]) -> None:
    only = None
    if "--only" in argv:
        i = argv.index("--only")
        only = {n for n in argv[i + 1].split(",") if n}
        argv = argv[:i] + argv[i + 2:]
    out = Path(argv[0] if argv else "tests/data/aiconfigurator/extract.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = json.loads(out.read_text())["files"] if only and out.exists() else None
    doc = build(only=only, keep=keep)
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{out}: {sum(len(f['rows']) for f in doc['files'])} rows of {len(doc['files'])} files")


if __name__ == "__main__":
    main(sys.argv[1:])
