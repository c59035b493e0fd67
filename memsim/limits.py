"""The input ceilings and the checks memsim applies at its edge.

Every size memsim accepts (CLI option, config.json key, Python API argument) is a positive
integer at most its ceiling below; every float is finite. Zero is an error, never "use the
default": a default is spelled by leaving the option out (``None``).

How the ceilings were chosen
----------------------------
memsim's cost arithmetic runs on numpy arrays (:mod:`memsim.algorithms`). Every count there
is a product that starts with the batch B (or the block groups B·H/hpb), and
:class:`memsim.algorithms._arrays.Arrays` holds B in float64, so those products are float64:
they cannot wrap around (the largest, B·H·N·S·D·c at every ceiling, is ~2^110 ≪ 1.8e308) and
are exact below 2^53. What stays int64 are the products without B (tile counts, N·S key
pairs), at most tokens² = 2^60 < 2^63 with the token ceiling below.
``tests/test_hardening_limits.py`` checks at the ceilings that the closed-form FLOP law still
holds exactly (it would not if anything wrapped) and every field is finite and ≥ 0.

The per-field ceilings are well above every released model or GPU: tokens (N, S, context,
window, chunk, top-k, tiles) ≤ 2^30 (10⁹-token problems are tested), batch ≤ 2^20, heads
≤ 2^12, head dimension ≤ 2^12 (MLA's absorbed 576 fits), layers ≤ 2^12 (largest released:
126; the config is read layer by layer). Model parameter counts are Python ints (no
overflow); KV-cache and VRAM arithmetic is float64.
"""

from __future__ import annotations

import math
from typing import Any

from memsim.errors import InputError

# ---- per-field ceilings -----------------------------------------------------------------

MAX_BATCH = 2**20  # sequences in one call
MAX_TOKENS = 2**30  # N, S, context, window, chunk, top-k, prefill chunk, tiles
MAX_CONTEXT = MAX_TOKENS - 1024  # context of a whole model: room for the decoded and draft
#                                  tokens after it (decode at position L reads L + 1 keys)
MAX_HEADS = 2**12  # H, K, H_I, heads per block
MAX_HEAD_DIM = 2**12  # D, Dv, D_I
MAX_KV_SPLITS = 2**16  # split-KV blocks per head group
MAX_THREADS = 2**12  # threads per block; the GPU's own limit is checked too (1024 on NVIDIA)
MAX_SRAM_BYTES = 2**30  # SRAM per block; the GPU's own limit is checked too
MAX_LAYERS = 2**12  # num_hidden_layers (largest released: 126); configs are read layer by
#                    layer (4096 layers: ~0.1 s; 10^7 is refused, not looped over)
MAX_WIDTH = 2**20  # hidden_size, intermediate sizes, LoRA ranks
MAX_VOCAB = 2**24  # vocab_size
MAX_EXPERTS = 2**16  # routed experts per layer
MAX_TP = 2**12  # tensor-parallel GPUs (and GPUs in any group)
MAX_MESSAGE_BYTES = 2**40  # one collective's bytes per GPU (1 TiB)
MAX_WORKERS = 256  # sweep worker processes
MAX_DRAFT_TOKENS = 64  # --mtp draft tokens per decode step
MAX_POINTS = 10_000  # cost-curve positions (each is a vectorised element; output is a table)
MAX_SWEEP_VALUES = 10_000  # values of one sweep axis (contexts, batches)
MAX_ENUMERATED_TILES = 2**23  # query tiles walked one by one (a chunk that is not a multiple
#                               of the key tile, memsim/geometry.py): ~7 s at the ceiling
MAX_EVENT_BUDGET = 10**10  # trace tile events: ~200 s at the engine's ~50 M events/s
#                             (memsim/trace/simulate.py); Ctrl-C stops a trace at once

INT_RULE = "must be a positive integer"


def check_size(field: str, value: Any, ceiling: int) -> int:
    """``value`` as an int in 1..ceiling, else :class:`InputError` naming ``field``.

    Accepts Python and numpy integers; rejects bools, floats (even 3.0), strings and None.
    """
    if isinstance(value, bool) or not _is_int(value):
        raise InputError(field, value, f"{INT_RULE} (got {type(value).__name__})")
    value = int(value)
    if value <= 0:
        raise InputError(field, value, f"{INT_RULE} (1..{ceiling})")
    if value > ceiling:
        raise InputError(field, value, f"must be at most {ceiling} (memsim's ceiling)")
    return value


def check_optional_size(field: str, value: Any, ceiling: int) -> int | None:
    """:func:`check_size`, with ``None`` meaning "not given" (use the default)."""
    return None if value is None else check_size(field, value, ceiling)


def check_finite(field: str, value: Any, *, positive: bool = False,
                 nonnegative: bool = False) -> float:
    """``value`` as a finite float (optionally > 0 or ≥ 0), else :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) and not _is_number(value):
        raise InputError(field, value, f"must be a number (got {type(value).__name__})")
    try:
        x = float(value)
    except OverflowError:
        raise InputError(field, value, "must be a finite number") from None
    if not math.isfinite(x):
        raise InputError(field, value, "must be a finite number")
    if positive and x <= 0:
        raise InputError(field, value, "must be > 0")
    if nonnegative and x < 0:
        raise InputError(field, value, "must be ≥ 0")
    return x


def _is_int(value: Any) -> bool:
    if isinstance(value, int):
        return True
    import numpy as np

    return isinstance(value, np.integer)


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.integer | np.floating)


# ---- CLI option types -------------------------------------------------------------------
#
# typer calls ``parser(text)`` for each option value; these parsers raise
# :class:`OptionValueError` (a click ``BadParameter`` carrying the value and the rule), which
# :func:`memsim.cli.run` prints as ``error: <option>=<value> <rule>``.


def _option_error(value: Any, rule: str) -> Exception:
    import typer

    class OptionValueError(typer.BadParameter):
        pass

    exc = OptionValueError(rule)
    exc.raw_value = value  # type: ignore[attr-defined]
    exc.rule = rule  # type: ignore[attr-defined]
    return exc


class SizeParser:
    """typer ``parser=`` for a positive integer option with a ceiling."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.__name__ = "INTEGER"  # typer shows it as the metavar

    def __call__(self, text: Any) -> int:
        if isinstance(text, int) and not isinstance(text, bool):
            value = text
        else:
            try:
                value = int(str(text).strip())
            except ValueError:
                raise _option_error(text, f"{INT_RULE} (1..{self.ceiling})") from None
        if value <= 0:
            raise _option_error(text, f"{INT_RULE} (1..{self.ceiling}); zero is not a default")
        if value > self.ceiling:
            raise _option_error(text, f"must be at most {self.ceiling} (memsim's ceiling)")
        return value


class CountParser(SizeParser):
    """A count that may be zero (``--workers 0``: run in this process)."""

    def __call__(self, text: Any) -> int:
        if str(text).strip() in ("0", "+0"):
            return 0
        try:
            return super().__call__(text)
        except Exception as exc:
            exc.rule = f"must be an integer in 0..{self.ceiling}"  # type: ignore[attr-defined]
            raise


class FloatParser:
    """typer ``parser=`` for a finite float option (optionally > 0)."""

    def __init__(self, positive: bool = True) -> None:
        self.positive = positive
        self.__name__ = "FLOAT"

    def __call__(self, text: Any) -> float:
        try:
            value = float(text) if not isinstance(text, bool) else math.nan
        except (TypeError, ValueError):
            raise _option_error(text, "must be a number") from None
        if not math.isfinite(value):
            raise _option_error(text, "must be a finite number")
        if self.positive and value <= 0:
            raise _option_error(text, "must be > 0")
        return value


def size_option(default: Any, *names: str, ceiling: int, help: str) -> Any:  # noqa: A002
    """A ``typer.Option`` for a positive integer ≤ ``ceiling`` (``None`` default = unset)."""
    import typer

    return typer.Option(default, *names, parser=SizeParser(ceiling), help=help)


def float_option(default: Any, *names: str, help: str, positive: bool = True) -> Any:  # noqa: A002
    """A ``typer.Option`` for a finite float (> 0 unless ``positive=False``)."""
    import typer

    return typer.Option(default, *names, parser=FloatParser(positive), help=help)


def check_tiling_limits(gpu: Any, *, block_q: Any = None, block_kv: Any = None,
                        heads_per_block: Any = None, kv_splits: Any = None, threads: Any = None,
                        sram_limit_bytes: Any = None) -> None:
    """Explicit tiling options: positive, below the ceilings, and within the GPU's limits
    (threads per block, shared memory per block). ``None`` means "memsim's default"."""
    check_optional_size("block_q", block_q, MAX_TOKENS)
    check_optional_size("block_kv", block_kv, MAX_TOKENS)
    check_optional_size("heads_per_block", heads_per_block, MAX_HEADS)
    check_optional_size("kv_splits", kv_splits, MAX_KV_SPLITS)
    spec = gpu.spec
    checked = check_optional_size("threads", threads, MAX_THREADS)
    if checked is not None and checked > spec.max_threads_per_block:
        raise InputError("threads", threads, f"must be at most {spec.max_threads_per_block}"
                             f" (threads per block on {gpu.name})")
    if check_optional_size("sram_limit", sram_limit_bytes, MAX_SRAM_BYTES) is not None:
        most = spec.shared_memory_per_block_max_bytes
        if sram_limit_bytes > most:
            raise InputError("sram_limit", sram_limit_bytes, f"must be at most {most} "
                             f"(shared memory per block on {gpu.name})")


def size_array(field: str, value: Any, ceiling: int) -> Any:
    """``value`` (scalar or array-like) as int64 with every element an integer in
    1..ceiling; floats must be whole numbers (3.0 is 3, 2.5 and NaN are errors)."""
    import numpy as np

    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(field, value, f"must be an array of integers ({exc})") from None
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise InputError(field, _short(arr), f"{INT_RULE} (got dtype {arr.dtype})")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if np.any(bad):
            raise InputError(field, _short(arr[bad]), f"{INT_RULE} (finite, whole)")
    if np.any(arr <= 0):
        raise InputError(field, _short(arr[arr <= 0]), f"{INT_RULE} (1..{ceiling})")
    if np.any(arr > ceiling):
        raise InputError(field, _short(arr[arr > ceiling]),
                         f"must be at most {ceiling} (memsim's ceiling)")
    return arr.astype(np.int64)


def finite_array(field: str, value: Any, *, positive: bool = True) -> Any:
    """``value`` as float64 with every element finite (and > 0 unless told otherwise)."""
    import numpy as np

    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(field, value, f"must be numbers ({exc})") from None
    if not np.all(np.isfinite(arr)):
        raise InputError(field, _short(arr[~np.isfinite(arr)]), "must be finite numbers")
    if positive and np.any(arr <= 0):
        raise InputError(field, _short(arr[arr <= 0]), "must be > 0")
    return arr


def check_broadcast(**arrays: Any) -> tuple[int, ...]:
    """The common shape of named arrays, or :class:`InputError` naming their shapes."""
    import numpy as np

    try:
        return np.broadcast_shapes(*(np.shape(a) for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k}{np.shape(a)}" for k, a in arrays.items() if np.ndim(a))
        raise InputError("shapes", shapes, "do not broadcast together") from None


def _short(arr: Any) -> Any:
    """The first offending element(s), for a message."""
    flat = arr.ravel()
    first = flat[:3].tolist()
    return first[0] if len(first) == 1 else first
