"""memsim against silicon: the kernel latencies NVIDIA measured and published with
``aiconfigurator-core`` (Apache-2.0), read as measurements and set beside memsim's predictions.

One job per module:

- :mod:`.source`: where the installed tables are, which GPU profile each system is, and the
  package version (the provenance of every measured number);
- :mod:`.tables`: reads one table lazily (pyarrow, only the columns asked for), or the small
  committed extract the tests use; rows come out as numpy columns with their row index;
- :mod:`.classes`: the op classes: which table each reads and how a row maps to a memsim
  prediction (column semantics with the source lines they were read from: ``docs/silicon.md``);
- :mod:`.outliers`: rows far slower than their neighbours (fallback kernels), excluded from
  scoring and fitting, and counted;
- :mod:`.score`: error statistics by op class, GPU, backend and size bucket;
- :mod:`.run`: ``memsim validate --source aiconfigurator``: the sample (or every row), the
  JSONL records and the summary.

Nothing here imports pyarrow or pandas at import time; the package is an optional extra
(``pip install 'memsim[silicon]'``).
"""
