"""Write the small committed extract the tests read (``tests/data/aiconfigurator/``).

``python -m memsim.silicon.extract OUT.json`` picks, from the installed package, a seeded
sample of :data:`PER_FILE` rows of each op class on a few (system, backend) files, plus the
whole curve of the first outlier row of each file (so the outlier test has its
neighbours). Every row keeps its index in its parquet file: ``{"package_version",
"files": [{"file", "rows", "columns"}]}`` (see :func:`memsim.silicon.tables.read_extract`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PER_FILE = 10
FILES = (("h100_sxm", "trtllm"), ("h200_sxm", "vllm"), ("h200_sxm", "trtllm"),
         ("b200_sxm", "sglang"), ("h100_sxm", "sglang"), ("gb300", "trtllm"),
         ("h100_sxm", "nccl"))


def build(per_file: int = PER_FILE, seed: int = 0) -> dict:
    from memsim.silicon import outliers, source, tables
    from memsim.silicon.classes import CLASSES
    from memsim.silicon.outliers import curve_ids

    version = source.package_version()
    files = []
    for op in CLASSES.values():
        for f in source.table_files(op.table):
            if (f.system, f.backend) not in FILES:
                continue
            rows = tables.read(f, list(op.columns), version)
            if op.select is not None:
                rows = rows.take(op.select(rows))
            rng = np.random.default_rng(seed)
            pick = set(rng.choice(len(rows), min(per_file, len(rows)), replace=False).tolist())
            flagged = np.nonzero(outliers.flag(rows, op.curve, op.axis))[0]
            if len(flagged):
                ids = curve_ids(rows, op.curve)
                pick |= set(np.nonzero(ids == ids[flagged[0]])[0].tolist())
            part = rows.take(np.array(sorted(pick)))
            files.append({"file": f.relative, "rows": part.row.tolist(),
                          "columns": {k: v.tolist() for k, v in part.columns.items()}})
    return {"package": source.PACKAGE, "package_version": version,
            "note": "rows of aiconfigurator-core's measured tables (Apache-2.0), with each "
                    "row's index in its parquet file; written by python -m "
                    "memsim.silicon.extract", "files": files}


def main(argv: list[str]) -> None:
    out = Path(argv[0] if argv else "tests/data/aiconfigurator/extract.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = build()
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{out}: {sum(len(f['rows']) for f in doc['files'])} rows of {len(doc['files'])} files")


if __name__ == "__main__":
    main(sys.argv[1:])
