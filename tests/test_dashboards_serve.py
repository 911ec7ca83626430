"""Serving the dashboards: a real Voilà server on 127.0.0.1 (a free port) with a preheated kernel pool.

Without the token a request gets neither a page nor a kernel (the server's kernel processes are counted before
and after); the token is on no command line, in no environment, log or service file; `workbench up` / `ps` /
`down` through the real CLI (subprocesses) on a fresh WORKBENCH_HOME start and stop the replay exchange, a
paper session and the dashboards. Everything started here is stopped at the end.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from workbench import services as sv
from workbench.config import load_settings
from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.secrets import SecretsStore

pytest.importorskip("voila", reason="the dashboards extra: pip install -e '.[dashboards]'")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-" + "7f3a9c" * 4
MARKER = "probe-page-rendered-after-the-visitor-came"
PAGES = ["overview", "trading", "portfolio", "analytics", "backtests", "models", "risk", "settings"]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Live direct children of ``pid`` (Voilà's kernels), from /proc."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]) not in ("Z", "X")
    except FileNotFoundError:
        return False


def _wait(cond, what: str, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(url: str, *, opener=None, headers=None) -> tuple[int, str, str]:
    """(status, Location header, body) of a GET that follows no redirect."""
    opener = opener or urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.headers.get("Location", ""), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", ""), e.read().decode(errors="replace")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    data = tmp_path / "home"
    data.mkdir()
    return data


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The real home page and a probe dashboard that waits for its visitor like a live panel does."""
    root = tmp_path / "dashboards"
    root.mkdir()
    shutil.copy(ROOT / "dashboards" / "index.ipynb", root / "index.ipynb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import voila.utils\n\nvoila.utils.wait_for_request()"),
        nbformat.v4.new_code_cell(f"print({MARKER!r})"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "probe.ipynb")
    return root


def test_token_required_and_no_kernel_without_it(home: Path, folder: Path) -> None:
    settings = load_settings(ROOT / "config", env={"WORKBENCH_HOME": str(home)})
    port = _free_port()
    svc = sv.start_dashboards(settings, port, root=folder, token=TOKEN, pool_size=1)
    kernels: list[int] = []
    try:
        base = f"http://127.0.0.1:{port}/"
        assert (
            svc.url == base
            and sv.dashboard_url(svc, TOKEN) == f"{base}voila/render/index.ipynb?token={TOKEN}"
        )
        # the preheated pool: one kernel for probe.ipynb (index.ipynb is not preheated)
        _wait(lambda: "Kernel pool of probe.ipynb is filled" in svc.log(), "the kernel pool")
        kernels = _children(svc.pid)
        assert len(kernels) == 1, svc.log()

        # without the token (or with a wrong one): a redirect to the login page, no dashboard, no kernel
        for path in ["voila/render/probe.ipynb", "voila/render/index.ipynb", "", "voila/tree",
                     f"voila/render/probe.ipynb?token={TOKEN[:-1]}x"]:  # fmt: skip
            status, location, body = _get(base + path)
            assert status in (302, 403), (path, status)
            assert status == 403 or "/login" in location, (path, location)
            assert MARKER not in body and "overview.ipynb" not in body
        status, _, body = _get(
            base + "voila/render/probe.ipynb", headers={"Authorization": "token nope-nope-nope"}
        )
        assert status in (302, 403) and MARKER not in body
        assert _children(svc.pid) == kernels  # no kernel started, the preheated one not handed out
        assert "Using pre-heated kernel" not in svc.log() and svc.log().count("Kernel started") == 1

        # with the token: the home page links every dashboard; the cookie it sets opens the others
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, location, _ = _get(sv.dashboard_url(svc, TOKEN) + "&session=demo")
        assert status == 302 and location == "/voila/render/index.ipynb?session=demo"  # the token dropped
        status, _, body = _get(sv.dashboard_url(svc, TOKEN), opener=opener)
        assert status == 200
        for page in PAGES:
            assert f'<a href="{page}.ipynb">' in body, page
        assert "no parameters" not in body  # sources stripped
        status, _, body = _get(base + f"voila/render/probe.ipynb?token={TOKEN}", opener=opener)
        assert status == 200 and MARKER in body  # the preheated kernel ran on past wait_for_request()
        assert "Using pre-heated kernel" in svc.log()

        # plotly's widget bundle is served once for every figure of a page, and the kernels know where
        import plotly

        kernel_env = Path(f"/proc/{_children(svc.pid)[0]}/environ").read_bytes().split(b"\0")
        esm = next(v.split(b"=", 1)[1].decode() for v in kernel_env if v.startswith(b"WORKBENCH_PLOTLY_ESM="))
        assert esm == f"voila/labextensions/workbench-assets/static/plotly-widget-{plotly.__version__}.js"
        with opener.open(base + esm, timeout=30) as r:
            bundle = r.read()
        shipped = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
        assert bundle == shipped.read_bytes()

        # the token is on no command line, in no environment, log or service file
        procs = [svc.pid, *_children(svc.pid)]
        assert len(procs) >= 2
        for pid in procs:
            assert TOKEN.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
            assert TOKEN.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), pid
        assert "?token=[secret]" in svc.log() or "token=" not in svc.log()
        for p in (home / "run").iterdir():
            if p.is_file():
                assert TOKEN not in p.read_text(errors="replace"), p
        conf = home / "run" / "dashboards.jupyter"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o700
        assert stat.S_IMODE((conf / "voila.py").stat().st_mode) == 0o600
        assert TOKEN in (conf / "voila.py").read_text()
        kernels = _children(svc.pid)
    finally:
        code = sv.stop(svc)
    assert code == 0, svc.log()
    assert TOKEN not in svc.log()
    _wait(lambda: not any(_alive(k) for k in kernels), "the kernels to exit", 30)
    assert sv.services(settings) == []


def test_token_sources(home: Path) -> None:
    settings = load_settings(ROOT / "config", env={"WORKBENCH_HOME": str(home)})
    master = "master-key-for-the-dashboards-test"
    # nothing set: a fresh random token each time
    a, src = sv.dashboard_token(settings, env={})
    b, _ = sv.dashboard_token(settings, env={})
    assert src == "generated" and a != b and len(a) >= 32
    # the secrets store's dashboards.token
    SecretsStore(settings.secrets_path, master).set(sv.DASHBOARD_TOKEN_SECRET, TOKEN)
    env = {settings.security.master_key_env: master}
    assert sv.dashboard_token(settings, env=env) == (TOKEN, f"secrets store {sv.DASHBOARD_TOKEN_SECRET}")
    # a store that cannot be opened: a generated token, and the reason (which names no secret)
    tok, src = sv.dashboard_token(settings, env={})
    assert tok != TOKEN and src.startswith("generated (secrets store not read") and master not in src
    # the environment wins; a weak token is refused, never served
    assert sv.dashboard_token(settings, env={**env, sv.DASHBOARD_TOKEN_ENV: "x" * 20})[0] == "x" * 20
    with pytest.raises(sv.ServiceError, match="at least 16"):
        sv.dashboard_token(settings, env={sv.DASHBOARD_TOKEN_ENV: "short"})
    with pytest.raises(sv.ServiceError, match="at least 16"):
        sv.start_dashboards(settings, _free_port(), root=home, token="short")


def _cli(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_CONFIG", sv.DASHBOARD_TOKEN_ENV)}
    env.update(WORKBENCH_HOME=str(home), PYTHONPATH=str(ROOT), COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_up_ps_down_through_the_cli(home: Path) -> None:
    load_sample(Store(home), ROOT / "data" / "sample", kinds=("candles",))
    settings = load_settings(ROOT / "config", env={"WORKBENCH_HOME": str(home)})
    port = _free_port()
    try:
        r = _cli(home, "up", "--port", str(port), "--pool-size", "0", "--speed", "30")
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(rf"http://127\.0\.0\.1:{port}/voila/render/index\.ipynb\?token=(\S+)", r.stdout)
        assert m, r.stdout
        token = m.group(1)
        assert r.stdout.count(token) == 1  # printed once, with the URL
        running = {s.name: s for s in sv.services(settings)}
        assert set(running) == {"replay", "session-paper", "dashboards"}
        assert all(s.running() for s in running.values())

        # the server answers with the token only
        assert _get(f"http://127.0.0.1:{port}/voila/render/index.ipynb")[0] in (302, 403)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, _, body = _get(
            f"http://127.0.0.1:{port}/voila/render/index.ipynb?token={token}", opener=opener
        )
        assert status == 200 and '<a href="trading.ipynb">' in body
        # the token is in no process's command line, no log, no service file
        for s in running.values():
            assert token.encode() not in Path(f"/proc/{s.pid}/cmdline").read_bytes(), s.name
            assert token.encode() not in Path(f"/proc/{s.pid}/environ").read_bytes(), s.name
        for p in (home / "run").iterdir():
            if p.is_file():
                assert token not in p.read_text(errors="replace"), p

        r = _cli(home, "ps")
        assert r.returncode == 0, r.stderr
        for name in running:
            assert name in r.stdout
        assert f"http://127.0.0.1:{port}/" in r.stdout and token not in r.stdout + r.stderr

        r = _cli(home, "up", "--port", str(port), "--pool-size", "0")
        assert r.returncode == 1 and "already running" in r.stderr and token not in r.stdout + r.stderr

        r = _cli(home, "down")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("stopped") == 3, r.stdout
        assert sv.services(settings) == []
        assert not any(_alive(s.pid) for s in running.values())
        assert not list((home / "run").glob("*.pid")) and not list((home / "run").glob("*.json"))
        assert "nothing running" in _cli(home, "ps").stdout
    finally:
        for s in sv.services(settings):
            sv.stop(s)


def test_an_idle_kernel_is_culled(home: Path, folder: Path) -> None:
    settings = load_settings(ROOT / "config", env={"WORKBENCH_HOME": str(home)})
    port = _free_port()
    svc = sv.start_dashboards(settings, port, root=folder, token=TOKEN, pool_size=0, cull_idle_s=2,
                              cull_interval_s=1)  # fmt: skip
    try:
        assert _children(svc.pid) == []  # no pool: no kernel before a visit
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, _, body = _get(
            f"http://127.0.0.1:{port}/voila/render/probe.ipynb?token={TOKEN}", opener=opener
        )
        assert status == 200 and MARKER in body
        assert svc.log().count("Kernel started") == 1
        # the page was left (no browser holds its kernel): the kernel is culled once idle
        _wait(
            lambda: "Culling 'idle' kernel" in svc.log() and not _children(svc.pid), "the idle kernel culled"
        )
    finally:
        assert sv.stop(svc) == 0, svc.log()


def test_workbench_dashboards_in_the_foreground_until_ctrl_c(home: Path) -> None:
    settings = load_settings(ROOT / "config", env={"WORKBENCH_HOME": str(home)})
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_CONFIG"}
    env.update(
        WORKBENCH_HOME=str(home), PYTHONPATH=str(ROOT), COLUMNS="250", **{sv.DASHBOARD_TOKEN_ENV: TOKEN}
    )
    cmd = [sys.executable, "-m", "workbench.cli", "dashboards", "--port", str(port), "--pool-size", "0"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/voila/render/index.ipynb?token={TOKEN}" in text, text
        assert f"token from {sv.DASHBOARD_TOKEN_ENV}" in text
        (server,) = sv.services(settings)
        assert server.kind == "dashboards" and server.running()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, text + rest
        assert not _alive(server.pid) and sv.services(settings) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for s in sv.services(settings):
            sv.stop(s)
