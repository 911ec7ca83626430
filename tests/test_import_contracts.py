"""The layer contract in pyproject.toml bites: ccxt, vectorbt and torch are protected modules (only the named
importers may import them), and strategies, ml and features never import workbench.data. A copy of the
package with one new offending module per contract must break exactly those contracts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")

PROBES = {
    "workbench/strategies/_probe_torch.py": ("import torch\n", "torch is imported only by workbench.ml"),
    "workbench/backtest/_probe_vbt.py": (
        "import vectorbt\n",
        "vectorbt is imported only by the backtest engine",
    ),
    "workbench/cli/_probe_ccxt.py": ("import ccxt\n", "ccxt is imported only by the exchange layer"),
    "workbench/ml/_probe_data.py": (
        "from workbench.data import store\n",
        "strategies, ml and features never import workbench.data",
    ),
}


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    if not LINT.exists():
        pytest.fail(f"{LINT}: import-linter is not installed (the [test] extra)")
    t = tmp_path_factory.mktemp("contracts")
    shutil.copytree(ROOT / "workbench", t / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", t / "pyproject.toml")
    return t


def test_the_package_keeps_every_contract(tree) -> None:
    p = _lint(tree)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout


def test_a_new_importer_of_a_protected_module_or_of_data_breaks_its_contract(tree) -> None:
    for rel, (code, _) in PROBES.items():
        (tree / rel).write_text(code)
    try:
        p = _lint(tree)
    finally:
        for rel in PROBES:
            (tree / rel).unlink()
    out = " ".join(p.stdout.split())  # the report wraps long contract names
    assert p.returncode == 1, out
    for rel, (_, contract) in PROBES.items():
        module = rel.removesuffix(".py").replace("/", ".")
        assert f"{contract}" in out and module in out, (module, out)
    assert f"{len(PROBES)} broken" in out, out  # each probe breaks its own contract, nothing else
