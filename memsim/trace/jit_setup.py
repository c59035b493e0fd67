"""numba's CPU target set up for a ``memsim trace`` process, without SciPy's BLAS probe.

The first call of a numba function — compiled or loaded from the on-disk cache
(``cache=True``: ``numba.core.caching.Cache.load_overload`` calls
``target_context.refresh()`` "to ensure it is initialized") — runs
``numba.core.cpu.CPUContext.load_additional_registries``, which imports
``numba.np.arraymath``; that module's top level calls ``_check_blas()`` →
``numba.np.linalg.ensure_blas()`` → ``import scipy.linalg.cython_blas`` (numba 0.68.1,
numba/np/arraymath.py and numba/np/linalg.py). Where SciPy is installed (memsim's
``silicon`` extra installs it), that import runs all of ``scipy/linalg/__init__.py``
(~0.12 s on an idle core, ~10 % of the 128K trace end to end: ``python -X importtime``),
only to set ``arraymath._HAVE_BLAS``, which numba 0.68.1 reads in one place,
``arraymath._get_inner_prod``: whether a jitted ``np.correlate``/``np.convolve`` of float
arrays takes its inner products from BLAS or from numba's own loop (jitted ``np.dot``/
``np.vdot`` and ``np.linalg`` check BLAS themselves, ``numba.np.linalg.ensure_blas``, when
they are compiled). No memsim kernel calls either.

numba has no setting for the probe (numba/core/config.py), so :func:`init_cpu_target`
runs the target's set-up once with ``scipy.linalg.cython_blas`` unimportable for its
duration (a ``None`` entry in ``sys.modules`` makes that import raise ImportError without
importing ``scipy.linalg``), then removes the entry: the probe answers "no BLAS", and
nothing else changes — SciPy stays importable, and numba's ``np.dot``, ``np.vdot`` and
``np.linalg`` functions call ``ensure_blas``/``ensure_lapack`` themselves when they are
compiled. It changes numba's answer for the whole process (a jitted ``np.correlate`` or
``np.convolve`` runs numba's loop afterwards), so only the console script and
``python -m memsim`` call it, for a ``trace`` command (:func:`memsim.cli.main`: a process
of its own); :func:`memsim.cli.run`, a test's runner, a notebook and
:func:`memsim.trace.simulate` called from a library leave numba as it is.
"""

from __future__ import annotations

import sys

_BLAS_MODULE = "scipy.linalg.cython_blas"


def init_cpu_target() -> bool:
    """Set up numba's CPU target now, skipping the SciPy BLAS probe when nothing has set
    the target up yet; returns whether the probe was skipped."""
    from numba.core.registry import cpu_target

    if "numba.np.arraymath" in sys.modules or _BLAS_MODULE in sys.modules:
        cpu_target.target_context.refresh()  # already probed, or SciPy already loaded
        return False
    sys.modules[_BLAS_MODULE] = None       # type: ignore[assignment]
    try:
        cpu_target.target_context.refresh()
    finally:
        del sys.modules[_BLAS_MODULE]
    return True
