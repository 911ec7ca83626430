"""An installed (non-editable) workbench works from any folder: a wheel built from the checkout carries the
stage notebooks, the default pipeline file and the bundled sample (workbench/_bundle/, see
workbench/resources.py), and `init --sample` and the pipeline's notebook resolution use them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from workbench.resources import BUNDLED

pytestmark = pytest.mark.slow


def _shipped_files() -> list[str]:
    out = []
    for rel in BUNDLED:
        p = ROOT / rel
        files = (
            [p]
            if p.is_file()
            else [f for f in p.rglob("*") if f.is_file() and ".ipynb_checkpoints" not in f.parts]
        )
        out += [f.relative_to(ROOT).as_posix() for f in files]
    return sorted(out)


def test_the_build_hook_ships_what_the_resources_module_expects() -> None:
    setup = (ROOT / "setup.py").read_text().replace('"', "'")
    assert f"BUNDLED = {BUNDLED!r}" in setup
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert all(rel in manifest for rel in BUNDLED)  # an sdist carries them too


def test_a_wheel_carries_the_notebooks_and_sample_and_works_outside_the_checkout(tmp_path) -> None:
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for rel in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "workbench", *BUNDLED):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_dir():
            shutil.copytree(ROOT / rel, src / rel, ignore=skip)
        else:
            shutil.copy2(ROOT / rel, src / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("workbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in _shipped_files() if f"workbench/_bundle/{f}" not in names]
    assert not missing and "workbench/_bundle/notebooks/10_collect.ipynb" in names, missing
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG", "PYTHONPATH")
    }
    env["PYTHONPATH"] = str(site)  # the installed copy only, not the checkout
    probe = (
        "import json, workbench\n"
        "from workbench.config import load_settings\n"
        "from workbench.data.sample import sample_dir\n"
        "from workbench.pipeline import PipelineSpec, default_pipeline_file\n"
        "s = load_settings()\n"
        "spec = PipelineSpec.load(default_pipeline_file(s))\n"
        "print(json.dumps({'package': workbench.__file__, 'pipeline': str(spec.path),\n"
        "  'notebooks': [st.notebook for st in spec.stages], 'sample': str(sample_dir(s))}))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    bundle = site / "workbench" / "_bundle"
    assert (
        Path(got["package"]).is_relative_to(site) and Path(got["pipeline"]) == bundle / "config/pipeline.yml"
    )
    assert [Path(n).parent for n in got["notebooks"]] == [bundle / "notebooks"] * 5
    assert Path(got["sample"]) == bundle / "data/sample"

    p = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "--home", str(tmp_path / "home"), "init", "--sample"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "candles binance BTC/USDT 1h: 5980 new rows" in p.stdout and "sample loaded" in p.stdout
    assert not any(elsewhere.iterdir())
