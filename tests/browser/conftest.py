"""Fixtures for the tests in a real browser: a Voilà server on 127.0.0.1 (token on, tracebacks hidden, short
kernel culling), Debian's chromium driven by Playwright (never ``playwright install``), console-error capture,
screenshots as test artifacts, and, for the real dashboards, a replay exchange and a paper session as real
processes (``workbench.services``).

The real dashboards are served by ``workbench.services.start_dashboards`` (what ``workbench dashboards`` runs)
where it exists; the harness's own server (``voila_server``) starts Voilà with the same options. The kernels a
server started are found through ``/proc`` (its ipykernel children; a page's own kernel by the id in its page
config), so "no kernel started" and "the kernel was culled" are checked on real processes.

For the harness's own server the token reaches Voilà through the environment only: a private ``JUPYTER_CONFIG_DIR`` holds a ``voila.py`` that
reads ``WORKBENCH_DASHBOARD_TOKEN``, so neither the command line (``ps``) nor a file holds it.

Screenshots go to ``<pytest tmp>/screenshots/``; with ``WORKBENCH_SCREENSHOTS=docs/img`` (relative to the repo
root, or absolute) they are copied there too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
START = "2024-03-04"

if not CHROMIUM.exists():  # make test stops before this; a direct pytest run says it plainly
    raise pytest.UsageError(
        f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install -y chromium)"
    )

from playwright.sync_api import ConsoleMessage, Page, sync_playwright  # noqa: E402

VOILA_CONFIG = """\
import os
c.Voila.token = os.environ["WORKBENCH_DASHBOARD_TOKEN"]
c.VoilaConfiguration.show_tracebacks = False
c.VoilaConfiguration.strip_sources = True
c.MappingKernelManager.cull_idle_timeout = {cull_idle}
c.MappingKernelManager.cull_interval = {cull_interval}
c.MappingKernelManager.cull_connected = False
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running Voilà server on 127.0.0.1 (``pid``, ``port``, ``token``, its log): URLs, plain HTTP GETs, and the
    kernel processes it started (its ipykernel children, found through ``/proc``)."""

    pid: int
    port: int
    token: str
    log_path: Path

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str = "", token: bool = True, **query: str) -> str:
        q = {**query, **({"token": self.token} if token else {})}
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}" + (
            f"?{urllib.parse.urlencode(q)}" if q else ""
        )

    def render_url(self, notebook: str, token: bool = True, **query: str) -> str:
        return self.url(f"voila/render/{notebook}", token=token, **query)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        """A plain HTTP GET (redirects not followed): status, headers, body."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
        finally:
            c.close()

    def kernel_processes(self) -> dict[int, str]:
        """Live kernel processes this server started: pid -> kernel id (from its ``kernel-<id>.json``)."""
        found = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if int(stat[1]) != self.pid or stat[0] == "Z" or not any("ipykernel" in a for a in cmdline):
                continue
            ids = [
                Path(a).stem.removeprefix("kernel-") for a in cmdline if Path(a).name.startswith("kernel-")
            ]
            found[int(d.name)] = ids[0] if ids else ""
        return found

    def kernels(self) -> list[int]:
        return sorted(self.kernel_processes())

    def wait_kernels(self, pred, timeout_s: float = 90) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            ks = self.kernels()
            if pred(ks):
                return ks
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"kernels {ks} never satisfied the condition; voila log:\n{self.text()[-3000:]}"
                )
            time.sleep(0.1)


def page_kernel_id(page: Page) -> str:
    """The id of the kernel Voilà gave this page (its page config)."""
    return page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId"
    )


class VoilaServer(Served):
    """A ``voila ROOT`` process of the test's own, started with the options ``workbench dashboards`` uses."""

    def __init__(
        self,
        root: Path,
        work: Path,
        env: dict[str, str] | None = None,
        *,
        cull_idle: int = 6,
        cull_interval: int = 1,
    ) -> None:
        self.root, self.port, self.token = root, free_port(), secrets.token_urlsafe(24)
        cfg = work / "jupyter-config"
        cfg.mkdir(parents=True, exist_ok=True)
        (cfg / "voila.py").write_text(VOILA_CONFIG.format(cull_idle=cull_idle, cull_interval=cull_interval))
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "JUPYTER_CONFIG_DIR": str(cfg),
            "JUPYTER_RUNTIME_DIR": str(work / "jupyter-runtime"),
            "WORKBENCH_DASHBOARD_TOKEN": self.token,
            **(env or {}),
        }
        self.log_path = work / "voila.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "voila", str(root), "--no-browser", "--Voila.ip=127.0.0.1",
               f"--port={self.port}", "--show_tracebacks=False"]  # fmt: skip
        self.p = subprocess.Popen(cmd, cwd=root, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.p.pid
        self._wait_listening()

    def _wait_listening(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"voila exited ({self.p.returncode}):\n{self.text()}")
            if "is running at" in self.text():
                return
            time.sleep(0.05)
        raise AssertionError(f"voila did not start within {timeout_s} s:\n{self.text()}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.log.close()


class ServiceServer(Served):
    """The dashboards as ``workbench.services.start_dashboards`` serves them (the production path)."""

    def __init__(self, settings, svc, token: str) -> None:
        from workbench import services as sv

        self.svc, self.token, self.pid, self.log_path = svc, token, svc.pid, svc.log_path
        self.port = int(urllib.parse.urlsplit(svc.url).port)
        self._stop = lambda: sv.stop(svc)

    def stop(self) -> None:
        self._stop()


@contextlib.contextmanager
def voila_server(root: Path, work: Path, env: dict[str, str] | None = None, **kw) -> Iterator[VoilaServer]:
    server = VoilaServer(root, work, env, **kw)
    try:
        yield server
    finally:
        _stop(server)


@contextlib.contextmanager
def dashboards_service(settings, **kw) -> Iterator[Served]:
    """``start_dashboards`` (t11-serve) on a free port with a fresh token; the kernels it leaves are ended."""
    from workbench import services as sv

    token = secrets.token_urlsafe(24)
    svc = sv.start_dashboards(settings, free_port(), token=token, **kw)
    server = ServiceServer(settings, svc, token)
    try:
        yield server
    finally:
        _stop(server)


def _stop(server: Served) -> None:
    kernels = server.kernels()
    server.stop()
    for pid in kernels:  # voila shuts its kernels down; a stray one (still a kernel) is ended by its pid
        with contextlib.suppress(OSError):
            if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 9)


# ------------------------------------------------------------------------------------------------ browser


@pytest.fixture(
    scope="module"
)  # not session: Playwright's sync API keeps an event loop running in this thread, which would break every later asyncio.run() in the suite
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class PageErrors:
    """Console errors and uncaught page errors of one page, and the requests that tried to leave loopback."""

    # Voilà's own page template asks a CDN for Font Awesome (icons only); offline that request fails.
    ALLOWED_EXTERNAL = ("font-awesome", "fontawesome")

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.external: list[str] = []

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.console.append(f"{msg.text} @ {msg.location.get('url', '')}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.console.append(f"uncaught: {e}"))

        def route(r) -> None:
            host = urllib.parse.urlsplit(r.request.url).hostname
            if host in ("127.0.0.1", "localhost") or r.request.url.startswith(("data:", "blob:", "file:")):
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()

        page.route("**/*", route)

    def unexpected(self) -> list[str]:
        """Errors other than a blocked request for an allowed external asset."""
        blocked_ok = [u for u in self.external if any(a in u.lower() for a in self.ALLOWED_EXTERNAL)]
        return [
            e
            for e in self.console
            if not (e.startswith("Failed to load resource") and any(u in e for u in blocked_ok))
        ]

    def disallowed_external(self) -> list[str]:
        return [u for u in self.external if not any(a in u.lower() for a in self.ALLOWED_EXTERNAL)]


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = ctx.new_page()
    p.set_default_timeout(60_000)
    p.errors = PageErrors(p)  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _docs_copy(src: Path, dest: Path, width: int = 1100) -> None:
    """A copy of a screenshot small enough for git: at most ``width`` pixels wide, 256 colours (PNG)."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
        tmp = dest.with_name(f".{dest.name}.tmp")
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
        os.replace(tmp, dest)


@pytest.fixture
def shoot(screenshots):
    """``shoot(page, name)``: a full-page PNG under the pytest tmp dir (and ``$WORKBENCH_SCREENSHOTS``)."""

    def _shoot(p: Page, name: str) -> Path:
        out = screenshots / f"{name}.png"
        # Voilà's page scrolls inside its own container, so a "full page" is the viewport: grow the viewport to
        # the content (at most 3,000 px), let plotly redraw, shoot, and put the viewport back
        size = p.viewport_size or {"width": 1400, "height": 1000}
        tall = p.evaluate(
            "() => Math.max(...Array.from(document.querySelectorAll('*')).map(e => e.scrollHeight))"
        )
        if tall > size["height"]:
            p.set_viewport_size({"width": size["width"], "height": min(int(tall) + 40, 3000)})
            p.wait_for_timeout(800)
        bottom = p.evaluate(
            "() => Math.max(0, ...Array.from(document.querySelectorAll('.jp-Cell, .jp-OutputArea, .jp-RenderedHTML'))"
            ".map(e => e.getBoundingClientRect().bottom))"
        )
        vp = p.viewport_size or size
        if 0 < bottom < vp["height"]:  # crop the empty space below the last cell
            clip = {"x": 0, "y": 0, "width": vp["width"], "height": int(bottom) + 24}
            p.screenshot(path=str(out), clip=clip)
        else:
            p.screenshot(path=str(out), full_page=True)
        if tall > size["height"]:
            p.set_viewport_size(size)
        publish_screenshot(out)
        return out

    return _shoot


def publish_screenshot(out: Path) -> None:
    """With ``$WORKBENCH_SCREENSHOTS`` (e.g. ``docs/img``), a small copy of the screenshot ``out`` goes there too."""
    extra = os.environ.get("WORKBENCH_SCREENSHOTS")
    if extra:
        dest = Path(extra) if Path(extra).is_absolute() else ROOT / extra
        dest.mkdir(parents=True, exist_ok=True)
        _docs_copy(out, dest / out.name)


# ------------------------------------------------------------------------------------------------ smoke server


@pytest.fixture(scope="module")
def smoke_server(tmp_path_factory) -> Iterator[VoilaServer]:
    """Voilà serving tests/browser/ (smoke.ipynb) with culling after 4 s idle."""
    with voila_server(HERE, tmp_path_factory.mktemp("voila-smoke"), cull_idle=4) as s:
        yield s
