"""`make test` needs Debian's chromium for the browser tests: without it, make stops before anything else with a
message naming the package (it does not skip the browser tests); `.ci/run` installs it with apt-get."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest
from conftest import ROOT

MAKE = shutil.which("make")


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_test_stops_without_chromium_naming_the_package(tmp_path) -> None:
    missing = tmp_path / "no-chromium"
    p = subprocess.run([str(MAKE), "check-chromium", f"CHROMIUM={missing}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert p.returncode != 0
    assert str(missing) in p.stderr and "apt-get install -y chromium" in p.stderr
    # it is the first prerequisite of `make test`: a dry run lists it before lint and the tests
    dry = subprocess.run([str(MAKE), "-n", "test", f"CHROMIUM={missing}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert dry.stdout.index("test -x") < dry.stdout.index("ruff check")


def test_ci_installs_chromium_and_the_test_extra_has_playwright() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install -y chromium" in ci and ci.index("apt-get install") < ci.index("make test")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(r.startswith("playwright") for r in extra)
    lines = (ci + (ROOT / "Makefile").read_text()).splitlines()
    assert not [ln for ln in lines if "playwright install" in ln and not ln.lstrip().startswith("#")]
