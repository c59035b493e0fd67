"""Rows of one measured table as numpy columns, with the provenance of each row.

:func:`read` opens one parquet file with pyarrow (imported here, never at start-up) and
reads only the columns asked for; :func:`read_extract` reads the small committed extract
(``tests/data/aiconfigurator/extract.json``) into the same :class:`Rows`, so the mapping,
outlier and summary code runs the same way with or without the package installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memsim.silicon.source import TableFile


@dataclass
class Rows:
    """Columns of ``n`` rows of one table file.

    ``row``: each row's index in its parquet file (provenance); ``columns``: name → array
    (strings as object arrays); ``file``: the path below the package's data folder;
    ``package_version``: the aiconfigurator-core version the rows were read from.
    """

    system: str
    family: str
    backend: str
    version: str
    table: str
    file: str
    package_version: str
    row: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row)

    def col(self, name: str, default: object = None) -> np.ndarray:
        """Column ``name``; a missing one is ``default`` repeated (or a KeyError)."""
        if name in self.columns:
            return self.columns[name]
        if default is None:
            raise KeyError(f"{self.file} has no column {name!r}")
        return np.full(len(self), default)

    def take(self, index: np.ndarray) -> Rows:
        """The rows at ``index`` (an int or bool array)."""
        return Rows(self.system, self.family, self.backend, self.version, self.table,
                    self.file, self.package_version, self.row[index],
                    {k: v[index] for k, v in self.columns.items()})


def concat(parts: list[Rows]) -> Rows:
    """The rows of ``parts`` (table files of one system, backend and table: several
    versions or families) one after another. ``file``, ``family`` and ``version`` name
    every part (joined with ``+``); ``row`` keeps each row's index in its own file. A
    column only some parts have is a ValueError (no row may silently lose a column)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for p in parts[1:]:
        if (p.system, p.backend, p.table) != (first.system, first.backend, first.table):
            raise ValueError(f"cannot pool {p.file} with {first.file}: another system, "
                             "backend or table")
        if set(p.columns) != set(first.columns):
            raise ValueError(f"cannot pool {p.file} with {first.file}: columns "
                             f"{sorted(set(p.columns) ^ set(first.columns))} differ")
    join = lambda name: "+".join(dict.fromkeys(getattr(p, name) for p in parts))  # noqa: E731
    return Rows(first.system, join("family"), first.backend, join("version"), first.table,
                join("file"), join("package_version"),
                np.concatenate([p.row for p in parts]),
                {k: np.concatenate([p.columns[k] for p in parts]) for k in first.columns})


# Per-table facts of how the rows were measured, from the table's entry in the
# ``collection_meta.yaml`` beside it, read as columns when asked for: ``norm_dispatch``
# (aiconfigurator's vLLM module collectors: absent = vLLM's native RMSNorm and RoPE
# chains; B200's MLA module tables were re-collected with aiconfigurator#1423's fused ops,
# ``vllm_c_eager_surrogate``: memsim.inference.mla_module.eager_ops_of).
META_COLUMNS = ("norm_dispatch",)


def table_meta(table: TableFile) -> dict[str, str]:
    """The ``collection_meta.yaml`` entry of ``table`` (its ``tables.<name>`` mapping,
    values as strings); empty where the file or the entry is missing."""
    import yaml

    path = table.path.parent / "collection_meta.yaml"
    if not path.exists():
        return {}
    entry = ((yaml.safe_load(path.read_text()) or {}).get("tables") or {}).get(table.table)
    return {str(k): str(v) for k, v in (entry or {}).items()}


def read(table: TableFile, columns: list[str], package_version: str) -> Rows:
    """The ``columns`` of every row of ``table`` (those the file lacks are left out; the
    :data:`META_COLUMNS` its collection metadata states are repeated on every row)."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(table.path).names)
    data = pq.read_table(table.path, columns=[c for c in columns if c in present])
    cols = {}
    for name in data.column_names:
        arr = data.column(name).to_numpy(zero_copy_only=False)
        cols[name] = arr if arr.dtype != object else arr.astype(object)
    meta = table_meta(table) if any(c in META_COLUMNS for c in columns) else {}
    for name in META_COLUMNS:
        if name in columns and name not in cols and name in meta:
            cols[name] = np.full(data.num_rows, meta[name], dtype=object)
    return Rows(table.system, table.family, table.backend, table.version, table.table,
                table.relative, package_version, np.arange(data.num_rows), cols)


def read_extract(path: Path | str) -> list[Rows]:
    """The committed extract: ``{"package_version", "files": [{"file", "rows": [...],
    "columns": {...}}]}``, one :class:`Rows` per file."""
    doc = json.loads(Path(path).read_text())
    out = []
    for f in doc["files"]:
        system, family, backend, version, name = f["file"].removesuffix(".parquet").split("/")
        cols = {k: np.asarray(v, dtype=object if v and isinstance(v[0], str) else None)
                for k, v in f["columns"].items()}
        out.append(Rows(system, family, backend, version, name, f["file"],
                        doc["package_version"], np.asarray(f["rows"], dtype=np.int64), cols))
    return out
