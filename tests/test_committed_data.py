"""Commands that read committed data leave it as it is: `memsim validate --summary` on a
copy of measurements/h100-sxm writes summary files identical, byte for byte, to the
committed ones (no float noise, no reordering), and touches no other file."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from typer.testing import CliRunner

from memsim.cli import _register, app

REPO = Path(__file__).resolve().parents[1]
_register()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_summary_of_the_committed_runs_rewrites_nothing(tmp_path: Path,
                                                       monkeypatch) -> None:  # noqa: ANN001
    """Run as the README does, from a checkout's root (the summary records that path)."""
    copy = tmp_path / "measurements" / "h100-sxm"
    shutil.copytree(REPO / "measurements" / "h100-sxm", copy)
    monkeypatch.chdir(tmp_path)
    before = _digests(copy)
    result = CliRunner().invoke(app, ["validate", "--summary", "measurements/h100-sxm"])
    assert result.exit_code == 0, result.output
    assert _digests(copy) == before
