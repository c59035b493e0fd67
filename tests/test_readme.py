"""Every ``console`` block of the README runs as written (they need no GPU; GPU commands sit
in ``sh`` blocks): each ``$ memsim ...`` command exits 0 and prints every number its shown
output holds. Numbers are compared as text tokens ("4.46", "131,072", "5.541e+11"), so a
re-drawn table, a unit moved into a header or a re-wrapped line passes and a changed
number fails.
Lines the README elides ("...") are checked up to the ellipsis."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: A number: "131,072", "4.46", "5.541e+11", "97.69" (its unit may sit in a header).
NUMBER = re.compile(r"(?<![\w.-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![\w-])")


def console_commands(text: str) -> list[tuple[str, str]]:
    """(command, shown output) of every ``$ `` line in the ``console`` blocks of ``text``."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command = lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            shown = []
            i += 1
            while i < len(lines) and not lines[i].startswith("$ "):
                shown.append(lines[i].split("...")[0].split("…")[0])
                i += 1
            out.append((command, "\n".join(shown)))
    return out


def numbers(text: str) -> Counter:
    return Counter(m.group(0) for m in NUMBER.finditer(text))


COMMANDS = console_commands(README.read_text())


def test_the_readme_has_console_examples() -> None:
    assert len(COMMANDS) >= 4
    assert all(cmd.split()[0] == "memsim" for cmd, _ in COMMANDS)


def test_numbers_are_tokens() -> None:
    """The comparison is not vacuous: a changed digit is a new token."""
    got = numbers("│ 4.4 GB / 68.2 MB │ 97.69% │ 5.541e+11 │ 131,072, batch 1, B=1 │")
    assert got == Counter({"4.4": 1, "68.2": 1, "97.69": 1, "5.541e+11": 1, "131,072": 1,
                           "1": 2})
    assert numbers("4.47 GB") - numbers("4.46 GB") != Counter()


def test_redraw_moves_numbers_in_order_and_never_copies_a_row() -> None:
    """Two rows of one shape whose numbers both changed each take their own new row
    (the old matcher copied the better-scoring row into both)."""
    shown = ("```console\n$ memsim plan\n│ prefill │ 2 GPUs │ 13.0 ms │\n"
             "│ decode │ 2 GPUs │ 49.4 ms │\n```")
    actual = "│ prefill │ 2 GPUs │ 12.5 ms │\n│ decode │ 4 GPUs │ 48.4 ms │\nfooter 1"
    assert redraw(shown, run=lambda command: actual).splitlines()[2:4] == actual.splitlines()[:2]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "shown"), COMMANDS, ids=[c[:40] for c, _ in COMMANDS])
def test_readme_command_runs_and_prints_its_numbers(command: str, shown: str) -> None:
    argv = [sys.executable, "-m", "memsim", *shlex.split(command)[1:]]
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    missing = numbers(shown) - numbers(result.stdout + result.stderr)
    assert not missing, f"README shows numbers the command no longer prints: {dict(missing)}"


# ---- redrawing the shown outputs: python tests/test_readme.py --redraw -------------------


def _run(command: str) -> str:
    argv = [sys.executable, "-m", "memsim", *shlex.split(command)[1:]]
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    return result.stderr + result.stdout


def _skeleton(line: str) -> str:
    return NUMBER.sub("#", line)


def _closest(shown: str, actual: list[str]) -> int | None:
    """The index of the line of ``actual`` most like ``shown``: the same shape with numbers
    masked (difflib ratio ≥ 0.6), ties broken by the numbers they share; None if none is
    alike."""
    import difflib

    want = numbers(shown)

    def score(line: str) -> float:
        shape = difflib.SequenceMatcher(None, _skeleton(shown), _skeleton(line)).ratio()
        shared = sum((want & numbers(line)).values()) / max(sum(want.values()), 1)
        return shape + 0.5 * shared if shape >= 0.6 else 0.0

    scores = [score(line) for line in actual]
    best = max(range(len(actual)), key=scores.__getitem__, default=None)
    return best if best is not None and scores[best] > 0 else None


def redraw(text: str, run=_run) -> str:
    """``text`` with every shown output line of its console blocks replaced by the line of
    the command's current output whose shape (numbers masked) is closest, so the README's
    choice of lines and elisions stays and only the numbers move; a line with no close
    counterpart is kept as it is (and the test then names its numbers). Lines are matched in
    order: each shown line looks only past the output line the previous one took, so two
    shown lines never take the same output line (a changed row is not replaced by its
    neighbour's copy)."""
    out_lines = text.split("\n")
    i = 0
    in_block = False
    while i < len(out_lines):
        line = out_lines[i]
        if line.startswith("```console"):
            in_block, actual = True, []
        elif line.startswith("```"):
            in_block = False
        elif in_block and line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + out_lines[i].strip()
            actual = [a.rstrip() for a in run(command).splitlines()]
            taken = 0                            # output lines before this are used up
        elif in_block and actual and NUMBER.search(line):
            shown, rest = (line.split("...", 1) + [None])[:2]
            best = _closest(shown, actual[taken:])
            if best is not None:
                new = actual[taken + best]
                taken += best + 1
                if rest is not None:
                    new = new[:len(shown)].rstrip() + " ..." + rest.split("...")[-1]
                out_lines[i] = new
        i += 1
    return "\n".join(out_lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--redraw"]:
        sys.exit("usage: python tests/test_readme.py --redraw   (rewrites README.md's shown "
                 "outputs with the commands' current numbers)")
    README.write_text(redraw(README.read_text()))
