"""The wheel: memsim with kernels/ and reports/ as memsim.kernels and memsim.reports, the GPU
profiles and model presets as package data, and no top-level `kernels` or `reports`.

The wheel is built from a copy of the package sources (so the shared working tree's build/
folder is never touched), unpacked, and imported in a fresh interpreter run from an empty
directory with only the unpacked wheel on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "memsim", "kernels", "reports", "hardware_profiles",
           "measurements")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(root / "dist"), str(src)], check=True, cwd=root)
    (built,) = (root / "dist").glob("memsim-*.whl")
    return built


def test_wheel_holds_the_subpackages_and_the_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "memsim/kernels/__init__.py" in names
    assert "memsim/reports/__init__.py" in names
    for init in sorted(REPO.glob("memsim/**/__init__.py")):  # every subpackage ships
        assert init.relative_to(REPO).as_posix() in names, init
    profiles = [n for n in names if n.startswith("memsim/hardware_profiles/")]
    assert {Path(n).name for n in profiles} >= {"h100-sxm.toml", "a100-sxm4-80gb.toml",
                                                 "mi300x.toml"}
    assert len(profiles) == len(list((REPO / "hardware_profiles").glob("*.toml")))
    presets = [n for n in names if n.startswith("memsim/presets/") and n.endswith(".json")]
    assert "memsim/presets/deepseek-ai/DeepSeek-V3.2-Exp/config.json" in presets
    # the committed GPU measurements ship too: the report's validation page and the
    # calibrated profile work from an installed wheel
    assert "memsim/measurements/h100-sxm/summary.json" in names
    assert "memsim/ops/kernel_classes.toml" in names  # the fitted kernel classes
    assert "memsim/measurements/h100-sxm/h100-sxm-calibrated.toml" in names
    assert any(n.startswith("memsim/measurements/aiconfigurator/")
               and n.endswith("/summary.json") for n in names)
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"kernels", "reports", "hardware_profiles"}, tops


def test_unpacked_wheel_imports_and_finds_its_profiles(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    code = """
import importlib.util, json
import memsim, memsim.kernels, memsim.reports
from memsim.hardware import load_gpu, profiles_dir
print(json.dumps({
    "memsim": memsim.__file__, "kernels": memsim.kernels.__file__,
    "reports": memsim.reports.__file__, "profiles": str(profiles_dir()),
    "sm_count": load_gpu("h100-sxm").spec.sm_count,
    "top_level": [m for m in ("kernels", "reports") if importlib.util.find_spec(m)],
}))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=run_dir, env=env,
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    for key in ("memsim", "kernels", "reports", "profiles"):
        assert Path(got[key]).resolve().is_relative_to(site.resolve()), (key, got[key])
    assert got["sm_count"] == 132
    assert got["top_level"] == []
