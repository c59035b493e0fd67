"""memsim/limits.py: the ceilings keep every product exact (B is float64 in the cost
arrays, the rest below int64), the checks refuse what they should, and the option parsers
speak one line."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim import limits
from memsim.attention import costs
from memsim.errors import InputError

ALGORITHMS = ("standard", "flash1", "flash2")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(B=st.integers(1, limits.MAX_BATCH), N=st.integers(1, limits.MAX_TOKENS),
       H=st.sampled_from([1, 8, 128, limits.MAX_HEADS]), D=st.sampled_from([16, 64, 256]))
def test_the_flop_law_holds_up_to_the_ceilings(algorithm: str, B: int, N: int, H: int,
                                               D: int) -> None:
    """Full mask, forward: matmul FLOPs = 2·B·H·N·S·(D + Dv) exactly as in FA-2 §4.1. If any
    product wrapped around int64 the law (and the sign) would break."""
    c = costs(algorithm, B=B, N=N, S=N, H=H, D=D, mask="full", block_q=64, block_kv=64)
    want = 2.0 * B * H * N * N * (2 * D)
    assert float(c.matmul_flops) == pytest.approx(want, rel=1e-9)
    for name, value in vars(c).items():
        assert np.isfinite(value) and value >= 0, name


@given(B=st.integers(1, limits.MAX_BATCH), S=st.integers(1, limits.MAX_TOKENS),
       H=st.sampled_from([1, 32, limits.MAX_HEADS]))
def test_decode_law_holds_up_to_the_ceilings(B: int, S: int, H: int) -> None:
    """flash_decode, one token against S keys: 2·(D + Dv)·S·H·B (the case that printed
    negative FLOPs before B was held in float64)."""
    c = costs("flash_decode", B=B, N=1, S=S, H=H, D=128, mask="full", block_q=1,
              block_kv=64)
    assert float(c.matmul_flops) == pytest.approx(2.0 * 256 * S * H * B, rel=1e-9)


@pytest.mark.parametrize(("value", "ok"), [
    (1, True), (limits.MAX_TOKENS, True), (np.int64(5), True), (0, False), (-1, False),
    (limits.MAX_TOKENS + 1, False), (2**63, False), (1.0, False), (True, False),
    ("3", False), (None, False), (float("nan"), False),
])
def test_check_size(value: object, ok: bool) -> None:
    if ok:
        assert limits.check_size("n", value, limits.MAX_TOKENS) == value
    else:
        with pytest.raises(InputError, match="^n="):
            limits.check_size("n", value, limits.MAX_TOKENS)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "1", True, 10**400])
def test_check_finite_refuses(value: object) -> None:
    with pytest.raises(InputError):
        limits.check_finite("x", value)


@pytest.mark.parametrize(("text", "rule"), [
    ("0", "zero is not a default"), ("nan", "positive integer"), ("1e3", "positive integer"),
    ("99999999999", "at most"), ("", "positive integer"), ("-4", "positive integer"),
])
def test_size_parser_rules(text: str, rule: str) -> None:
    with pytest.raises(Exception) as info:
        limits.SizeParser(limits.MAX_BATCH)(text)
    assert rule in info.value.rule and info.value.raw_value == text


def test_input_error_crosses_processes() -> None:
    """sweep --workers: the error is pickled in the worker and re-raised in the parent."""
    err = pickle.loads(pickle.dumps(InputError("tp", 3, "must divide 32")))
    assert (err.field, err.value, err.rule, str(err)) == ("tp", 3, "must divide 32",
                                                          "tp=3 must divide 32")


def test_error_values_stay_on_one_line() -> None:
    assert "\n" not in str(InputError("model", "a\nb", "is odd"))
    assert len(str(InputError("model", "x" * 10_000, "is long"))) < 300
