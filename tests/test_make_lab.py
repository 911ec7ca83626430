"""`make demo` installs JupyterLab (the ``[notebook]`` extra) and `make lab` opens the notebooks in it on the
loopback interface with the workbench kernel. Dry runs of make show the commands; the extra resolves against
the package index; where JupyterLab is installed (``make test`` installs it), the exact command of
``make lab`` starts a server that offers the workbench kernel by default, and the test stops it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _make_n(*args: str) -> str:
    p = subprocess.run([str(MAKE), "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout.replace("\\\n", " ")  # join continued lines


def _lab_command(venv: Path, port: int, flags: str = "") -> str:
    out = _make_n("lab", f"VENV={venv}", f"LAB_PORT={port}", f"LAB_FLAGS={flags}")
    (line,) = [x for x in out.splitlines() if "jupyter lab" in x]
    return line


def test_make_lab_starts_jupyterlab_on_loopback_in_the_notebooks_with_the_workbench_kernel() -> None:
    line = _lab_command(ROOT / ".venv", 8899)
    assert line.startswith("cd notebooks && ")
    assert f"{ROOT / '.venv'}/bin/jupyter lab --ip=127.0.0.1 --no-browser --port=8899" in line
    assert "--MappingKernelManager.default_kernel_name=workbench" in line
    assert "0.0.0.0" not in line


def test_make_demo_installs_the_notebook_extra_and_the_kernel() -> None:
    out = _make_n("-B", "demo")
    assert "pip install -q -e '.[notebook]'" in out
    assert "ipykernel install --sys-prefix --name workbench" in out
    assert out.index("'.[notebook]'") < out.index("init --sample")  # installed before the demo runs
    assert "'.[notebook]'" in _make_n("-B", "install-test")  # make test checks what make lab runs


def test_the_notebook_extra_installs() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "notebook"
    ]
    assert any(r.startswith("jupyterlab") for r in extra)
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert p.returncode == 0, f"pip cannot install the [notebook] extra {extra}:\n{p.stderr[-3000:]}"
    report = json.loads(p.stdout)
    would_install = {i["metadata"]["name"].lower() for i in report["install"]}
    try:
        from importlib.metadata import version

        version("jupyterlab")
        installed = True
    except Exception:
        installed = False
    assert installed or "jupyterlab" in would_install


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, proc: subprocess.Popen) -> dict:
    """GET ``url`` once the server accepts connections (it may print its URL a moment before)."""
    for _ in range(600):
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return json.load(r)
        except urllib.error.URLError as e:
            if not isinstance(e.reason, ConnectionRefusedError) or proc.poll() is not None:
                raise
            time.sleep(0.1)
    raise AssertionError(f"{url}: the server never accepted a connection")


def test_the_make_lab_command_serves_the_workbench_kernel_and_stops(tmp_path) -> None:
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed here (make test installs it)")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "jupyter").exists():
        pytest.skip(f"{venv}/bin/jupyter missing")
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        # jupyter refuses to run as root unless told (a container): the Makefile's LAB_FLAGS is for that
        ["bash", "-c", _lab_command(venv, port, "--allow-root" if os.geteuid() == 0 else "")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:  # the server prints its URL (with the token) once it listens
            m = re.search(rf"(http://127\.0\.0\.1:{port}/lab\?token=\w+)", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "jupyter lab exited without serving"
        token = url.split("token=")[1]
        specs = _get_json(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", proc)
        assert specs["default"] == "workbench" and "workbench" in specs["kernelspecs"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.poll() is not None  # no server left running
