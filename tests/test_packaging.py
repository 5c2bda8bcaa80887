"""``pip install .`` gives a working library and a ``cue-lens`` command, with its data files.

The wheel is built from this checkout and installed into a folder outside it; the checks then
run from another directory, so nothing can be found through the source tree by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout installed (without dependencies) into a fresh folder."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    root = tmp_path_factory.mktemp("install")
    # Build from a copy: setuptools writes build/ and *.egg-info/ beside the sources.
    source = root / "source"
    for name in ("detector", "concepts", "assets"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "requirements.txt", "requirements-scale.txt", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = root / "wheels"
    site = root / "site"
    pip = [sys.executable, "-m", "pip"]
    build = subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("cue_lens-*.whl")
    install = subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    return site


def _run(site: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_installed_package_finds_its_data_files(installed, tmp_path):
    code = (
        "import detector, concepts\n"
        "from detector.paths import assets_dir\n"
        "from detector.backbone import MODEL_CONFIG_DIR\n"
        "from concepts.vocabulary import VOCABULARY_DIR\n"
        "print(detector.__file__)\n"
        "print(assets_dir())\n"
        "print(sorted(p.name for p in MODEL_CONFIG_DIR.iterdir()))\n"
        "print(sorted(p.name for p in VOCABULARY_DIR.iterdir()))\n"
    )
    done = _run(installed, [sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    module_file, assets, models, vocabularies = done.stdout.strip().splitlines()
    assert Path(module_file).is_relative_to(installed)
    assert Path(assets) == installed / "detector" / "assets"
    assert "tiny-clip.json" in models
    assert "photography.csv" in vocabularies


def test_console_command_is_the_cli(installed, tmp_path):
    script = installed / "bin" / "cue-lens"
    assert script.is_file(), "the wheel declares no cue-lens console command"
    done = _run(installed, [str(script), "--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: cue-lens")
    for command in ("embed", "train", "eval", "predict"):
        assert command in done.stdout
