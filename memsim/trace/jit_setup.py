"""numba's ``njit`` for the trace's hot loops, loading its on-disk cache without setting
numba's whole CPU target up.

numba loads a cached function in ``numba.core.caching.Cache.load_overload``, which first
calls ``target_context.refresh()`` "to ensure it is initialized" (numba 0.68.1,
numba/core/caching.py:743-751). ``refresh`` (numba/core/base.py:261-277,
numba/core/cpu.py:102-130) initialises numba's reference-counting runtime, imports and
installs every lowering registry (``numba.np.arraymath``, ``npyimpl``, ``linalg``,
``numba.cpython.*``, … — and through ``arraymath``'s BLAS probe, ``scipy.linalg`` where
SciPy is installed) and refreshes the typing context: what *compiling* a function needs.
Rebuilding a cached one needs none of it: ``CompileResult._rebuild`` (numba/core/
compiler.py) links the cached object code with the target's codegen, which exists from
the context's construction, and wraps its entry point. Measured for the 128K causal GQA
trace (``python -m benchmarks trace``; CPU time of a fresh ``memsim trace`` process, 2
cores): the refresh and the teardown of what it loads at exit are ~0.15–0.25 s of
~1.26 s.

:func:`jit` is ``njit(cache=True, _nrt=False, ...)`` whose cache loads skip that refresh.
Nothing else changes: a signature not in the cache is compiled by numba's own pipeline,
which refreshes the contexts itself (``CompilerBase.__init__``, numba/core/compiler.py:
395-396), as does a later lowering that misses an implementation
(``BaseContext.get_function``, numba/core/base.py:563). Only functions compiled without
numba's reference counting (``_nrt=False``) load this way: they never call the runtime
that the refresh would have initialised. Where numba lacks the private methods used here
(``_load_overload``, ``_guard_against_spurious_io_errors``), numba's own cache is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit
from numba.core.caching import FunctionCache


class CacheWithoutRefresh(FunctionCache):
    """numba's per-function disk cache, minus the target refresh before a load."""

    def load_overload(self, sig, target_context):  # type: ignore[no-untyped-def]
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed an I/O error: numba compiles instead


_SUPPORTED = all(hasattr(FunctionCache, name)
                 for name in ("_load_overload", "_guard_against_spurious_io_errors"))


def jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, _nrt=False, **options)``, its cache loaded without the
    target refresh (module docstring); the decorator returns numba's dispatcher."""
    decorate = njit(cache=True, _nrt=False, **options)

    def wrap(function: Callable[..., Any]) -> Any:
        dispatcher = decorate(function)
        if _SUPPORTED:
            dispatcher._cache = CacheWithoutRefresh(dispatcher.py_func)
        return dispatcher

    return wrap
