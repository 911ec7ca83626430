"""Background services: the replay exchange, trading sessions and the dashboards as processes of their own.

The notebooks (``60_paper_trading``), ``make demo`` (``workbench paper-demo``, ``workbench up``) and ``workbench
up|down|ps|dashboards`` start and stop the long-running parts of the workbench through these functions, so they
all do it the same way:

* :func:`start_replay` runs ``workbench replay-exchange`` and :func:`start_session` runs ``workbench trade run``
  as child processes (their own process group, so a Ctrl-C in a notebook does not reach them), with the same
  Python and the same copy of the package as the caller.
* Everything lands under ``<data>/run/``: ``<name>.log`` (stdout and stderr), ``<name>.pid`` (the pid, one
  line) and ``<name>.json`` (what :func:`services` lists: kind, pid, command, URL, session, config). Each
  process gets a config overlay ``<name>.config.yml`` holding the caller's effective settings (the data folder
  made absolute; a session's exchange pointed at the replay exchange), so it sees what the caller sees, even
  settings made by environment overrides. The overlay never holds a credential: a live session's keys come from
  the environment or the secrets store, as for ``trade run``.
* A name whose pid file names a live process is refused (one service per name); a stale pid file (the process
  died, was killed) is replaced.
* :func:`wait_ready` waits for a condition, never for a fixed time: the replay exchange's ``READY <url>`` line,
  a session's ``RUNNING`` state in its journal (for the run started by this pid). A process that exits first
  is an error quoting the end of its log.
* :func:`stop` asks politely (SIGTERM: the replay exchange saves its state, the engine stops cleanly and
  journals it), waits, and only then kills (SIGKILL); the journal is crash-safe either way. It signals a pid
  only while that pid is still the workbench process it started (``/proc/<pid>/cmdline``), never a pid reused
  by something else.
* Services started by a process are stopped when that process exits (``atexit``: a notebook kernel shut down,
  a demo that failed half-way leave nothing running), unless started with ``detach=True`` (``workbench up``).
  A SIGKILLed caller cannot clean up: a later :func:`services` / :func:`stop` finds and ends its children.
* :func:`start_dashboards` serves ``dashboards/`` with Voilà on 127.0.0.1, token authentication always on
  (:func:`dashboard_token`: ``$WORKBENCH_DASHBOARD_TOKEN``, the secrets store's ``dashboards.token``, else
  generated). The token goes into a private config file (``<data>/run/dashboards.jupyter/voila.py``, 0600),
  never onto a command line, into an environment, a log or the ``.json``; a request carrying ``?token=`` is
  redirected, once its login cookie is set, to the page without it (a page's query string reaches its kernel's
  environment). Sources stripped, tracebacks hidden, idle kernels culled, preheated kernels (a pool per
  dashboard). **For the panels:** a preheated kernel runs the notebook before anyone visits, so a live panel
  calls ``voila.utils.wait_for_request()`` (it returns at once outside a preheated kernel) before it reads
  the request (``QUERY_STRING``) or starts its update loop. The dashboards' kernels get the caller's settings
  (``WORKBENCH_CONFIG``: the overlay file, ``WORKBENCH_HOME``) and no exchange credential or master key.
* :func:`step` drives a paused replay (``speed=0``) bar by bar, waiting after each bar until the session has
  decided on it (the journal's ``decided`` meta), so a notebook or a demo gets the same trades on a slow machine
  as on a fast one.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

import workbench
from workbench.config import Settings, SettingsFile
from workbench.types import Timeframe

__all__ = [
    "DASHBOARD_TOKEN_ENV",
    "DASHBOARD_TOKEN_SECRET",
    "Service",
    "ServiceError",
    "archive_session",
    "dashboard_token",
    "dashboard_url",
    "dashboards_root",
    "replay_url",
    "service_dir",
    "services",
    "session_frames",
    "start_dashboards",
    "start_replay",
    "start_session",
    "step",
    "stop",
    "wait_exit",
    "wait_ready",
]

_CHILDREN: dict[int, subprocess.Popen] = {}
_ATTACHED: dict[int, Service] = {}  # stopped at exit unless detached


class ServiceError(RuntimeError):
    """A service could not be started, did not become ready, or is already running; the message says why."""


@dataclass(frozen=True)
class Service:
    """One background process started by this module (or found through its ``<name>.json``)."""

    name: str
    kind: str  # "replay" | "session" | "dashboards"
    pid: int
    run_dir: Path
    command: list[str] = field(default_factory=list)
    config: Path | None = None
    url: str | None = None  # replay: its base URL once ready; dashboards: the home page, without the token
    session: str | None = None  # session: the session name (its journal is under <data>/trading/sessions/)
    data_dir: Path | None = None
    timeframe: str | None = None
    started_ms: int = 0

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def log(self, tail: int | None = None) -> str:
        """The process's output so far (its last ``tail`` characters)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else text[-tail:]

    def running(self) -> bool:
        return _alive(self.pid, self.command)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run_dir", "config", "data_dir"):
            d[k] = None if d[k] is None else str(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Service:
        kw = dict(d)
        for k in ("run_dir", "config", "data_dir"):
            kw[k] = None if kw.get(k) is None else Path(kw[k])
        return cls(**kw)


# ------------------------------------------------------------------------------------------------ paths


def service_dir(settings: Settings) -> Path:
    """``<data>/run/``: logs, pid files and descriptions of the background services."""
    return settings.data_dir / "run"


def services(settings: Settings) -> list[Service]:
    """Every service described under ``<data>/run/`` that is still running."""
    root = service_dir(settings)
    found = []
    for p in sorted(root.glob("*.json")) if root.exists() else []:
        try:
            svc = Service.from_dict(json.loads(p.read_text()))
        except (ValueError, TypeError, KeyError):
            continue
        if svc.running():
            found.append(svc)
    return found


# ------------------------------------------------------------------------------------------------ start


def start_replay(
    settings: Settings,
    symbols: Sequence[str],
    timeframe: str = "5m",
    start: str | None = None,
    speed: float = 0.0,
    port: int = 0,
    *,
    name: str = "replay",
    balances: Mapping[str, float] | None = None,
    args: Sequence[str] = (),
    wait: bool = True,
    timeout_s: float = 120.0,
    detach: bool = False,
) -> Service:
    """Start ``workbench replay-exchange`` in the background; with ``wait`` (default) return once it listens.

    ``speed=0`` (default) starts it paused: move it with :func:`step`. ``port=0`` takes any free port (the
    URL is read from its ``READY`` line). ``args``: further ``replay-exchange`` options (``--faults ...``).
    """
    if not symbols:
        raise ServiceError("start_replay: no symbols")
    Timeframe.parse(timeframe)
    cmd = [
        "replay-exchange",
        "--timeframe",
        timeframe,
        "--speed",
        repr(float(speed)),
        "--port",
        str(int(port)),
    ]
    for s in symbols:
        cmd += ["--symbol", s]
    if start is not None:
        cmd += ["--start", str(start)]
    for asset, amount in (balances or {}).items():
        cmd += ["--balance", f"{asset}={float(amount)!r}"]
    cmd += list(args)
    svc = _spawn(settings, name, "replay", cmd, _effective(settings), timeframe=timeframe, detach=detach)
    return wait_ready(svc, timeout_s) if wait else svc


def start_session(
    settings: Settings,
    replay: Service | str | None,
    strategy: str,
    symbols: Sequence[str],
    timeframe: str = "5m",
    *,
    session: str | None = None,
    exchange: str = "binance",
    params: Mapping[str, Any] | None = None,
    size: float = 1.0,
    sl: float | None = None,
    tp: float | None = None,
    mode: str = "paper",
    yes: bool = False,
    max_seconds: float | None = None,
    trading: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout_s: float = 120.0,
    detach: bool = False,
) -> Service:
    """Start ``workbench trade run`` in the background; with ``wait`` (default) return once it is RUNNING.

    ``replay``: the replay exchange to trade against (a :class:`Service` or its URL; the session's
    ``exchanges.<exchange>.ccxt`` is pointed at it), or None for the configured exchange itself. ``trading``:
    keys deep-merged into the session's ``trading`` section (risk limits, fees). ``mode="live"`` sends real
    signed orders and needs ``yes=True`` (the confirmation ``trade run --yes`` gives); its keys come from the
    environment (``env``) or the secrets store, never from the overlay file. The session name defaults to
    ``trade run``'s ``<strategy>-<symbols>-<timeframe>``.
    """
    if mode not in ("paper", "live"):
        raise ServiceError(f"start_session: mode must be paper or live, not {mode!r}")
    if mode == "live" and not yes:
        raise ServiceError("start_session: live trading needs yes=True (real signed orders)")
    if not symbols:
        raise ServiceError("start_session: no symbols")
    Timeframe.parse(timeframe)
    name = session or _default_session(strategy, symbols, timeframe)
    overlay = _effective(settings)
    if replay is not None:
        from workbench.replay import ccxt_config

        url = replay_url(replay)
        ex = overlay.setdefault("exchanges", {}).setdefault(exchange, {})
        ex["ccxt"] = _merged(ex.get("ccxt") or {}, ccxt_config(url))
        ex["sandbox"] = False
    if trading:
        overlay["trading"] = _merged(overlay.get("trading") or {}, dict(trading))
    cmd = ["trade", "run", "--strategy", strategy, "--exchange", exchange, "--timeframe", timeframe,
           "--mode", mode, "--session", name, "--size", repr(float(size))]  # fmt: skip
    for s in symbols:
        cmd += ["--symbol", s]
    for k, v in (params or {}).items():
        cmd += ["--param", f"{k}={v}"]
    if sl is not None:
        cmd += ["--sl", repr(float(sl))]
    if tp is not None:
        cmd += ["--tp", repr(float(tp))]
    if max_seconds is not None:
        cmd += ["--max-seconds", repr(float(max_seconds))]
    if mode == "live":
        cmd.append("--yes")
    svc = _spawn(settings, f"session-{name}", "session", cmd, overlay, session=name, timeframe=timeframe,
                 env=env, detach=detach)  # fmt: skip
    return wait_ready(svc, timeout_s) if wait else svc


# ------------------------------------------------------------------------------------------------ dashboards

DASHBOARD_TOKEN_ENV = "WORKBENCH_DASHBOARD_TOKEN"
DASHBOARD_TOKEN_SECRET = "dashboards.token"
_MIN_TOKEN_LEN = 16
# a web-facing process holds no credential: the dashboards read the journal, the store and the registry, and
# send commands through the journal; they open no exchange connection
_DASHBOARD_DROP_ENV_SUFFIXES = tuple("_" + s for s in ("API_KEY", "SECRET", "PASSWORD", "UID", "LOGIN",
                                                      "PRIVATE_KEY", "WALLET_ADDRESS", "TOKEN", "TWOFA"))  # fmt: skip


def dashboards_root(settings: Settings) -> Path:
    """``dashboards/`` of the project (the notebooks Voilà serves), else the copy an installed wheel carries."""
    from workbench.resources import bundled

    here = (settings.root / "dashboards").resolve()
    return here if here.is_dir() else (bundled("dashboards") or here)


def dashboard_token(
    settings: Settings, env: Mapping[str, str] | None = None, *, prompt: bool = False
) -> tuple[str, str]:
    """The dashboards' token and where it came from: ``$WORKBENCH_DASHBOARD_TOKEN``, else the secrets store's
    ``dashboards.token``, else a new random one. A token shorter than 16 characters is refused (authentication
    is never off). A store that cannot be opened (no master key) is skipped, and the source says so."""
    from workbench.secrets import SecretsError, open_store, register_secret

    env = os.environ if env is None else env
    token, source = env.get(DASHBOARD_TOKEN_ENV) or "", DASHBOARD_TOKEN_ENV
    note = ""
    if not token and settings.secrets_path.exists():
        try:
            token = open_store(settings, env, prompt=prompt).get(DASHBOARD_TOKEN_SECRET) or ""
            source = f"secrets store {DASHBOARD_TOKEN_SECRET}"
        except SecretsError as e:
            note = f" (secrets store not read: {e})"
    if not token:
        return _new_token(), "generated" + note
    token = token.strip()
    if len(token) < _MIN_TOKEN_LEN or any(c.isspace() or not c.isprintable() for c in token):
        raise ServiceError(
            f"the dashboard token from {source} is unusable: it needs at least {_MIN_TOKEN_LEN} printable "
            "characters without spaces (unset it to have one generated)"
        )
    register_secret(token)
    return token, source


def _new_token() -> str:
    import secrets as _random

    from workbench.secrets import register_secret

    token = _random.token_urlsafe(32)
    register_secret(token)
    return token


PLOTLY_ESM_ENV = "WORKBENCH_PLOTLY_ESM"
"""The environment variable naming, to the dashboards' kernels, where the server serves plotly's widget bundle
(read by ``workbench.panels.common.figure_widget``, which a test keeps equal to this name)."""


def _plotly_assets(folder: Path) -> str:
    """Put plotly's widget bundle where the Voilà server serves it (a lab-extensions folder of its own, under
    ``folder``), named by plotly's version; the URL path relative to the server's base URL.

    The dashboards' figures import it from there once per page (``workbench.panels.common.figure_widget``)
    instead of carrying the 5 MB bundle in every figure's widget state."""
    import plotly

    src = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
    if not src.is_file():
        raise ServiceError(f"plotly {plotly.__version__} has no widget bundle at {src}")
    name = f"plotly-widget-{plotly.__version__}.js"
    dest = folder / "workbench-assets" / "static" / name
    if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    return f"voila/labextensions/workbench-assets/static/{name}"


_TEMPLATE = "workbench"
# Voilà's "lab" template links Font Awesome from a CDN (cdn.jsdelivr.net); the dashboards must work offline, and
# the icons they use come with the lab theme already. This template is "lab" without those two links.
_FONT_AWESOME_CDN = (
    '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/all.min.css"'
    ' type="text/css" />',
    '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/v4-shims.min.css"'
    ' type="text/css" />',
)


def _voila_template(folder: Path) -> None:
    """Write the ``workbench`` Voilà template under ``folder`` (a Jupyter data folder: the server gets it on
    ``JUPYTER_PATH``): the lab template with no request leaving the machine."""
    d = folder / "voila" / "templates" / _TEMPLATE
    d.mkdir(parents=True, exist_ok=True)
    (d / "conf.json").write_text(json.dumps({"base_template": "lab"}) + "\n")
    drops = "".join(f" | replace({json.dumps(link)}, '')" for link in _FONT_AWESOME_CDN)
    (d / "index.html.j2").write_text(
        "{%- extends 'lab/index.html.j2' -%}\n"
        "{# workbench: the lab template without its CDN links (written by workbench.services) #}\n"
        "{%- block notebook_css -%}\n"
        f"{{{{ super(){drops} }}}}\n"
        "{%- endblock notebook_css -%}\n"
    )


def _voila_config(token: str, port: int, pool_size: int, cull_idle_s: float, cull_interval_s: float,
                  conf_dir: Path, assets: Path) -> str:  # fmt: skip
    return f"""# Written by workbench.services.start_dashboards for one Voila server (mode 0600: it holds the token).
import functools

from jupyter_server.log import log_request

c = get_config()  # noqa: F821
c.Voila.token = {token!r}
c.Voila.ip = "127.0.0.1"
c.Voila.port = {int(port)}
c.Voila.port_retries = 0
c.Voila.open_browser = False
c.Voila.connection_dir_root = {str(conf_dir)!r}
# plotly's widget bundle, served once per page to every figure (see workbench.panels.common.figure_widget)
c.VoilaConfiguration.extra_labextensions_path = [{str(assets)!r}]
# request lines with their query strings (?token=...) scrubbed, as jupyter_server logs them
c.Voila.tornado_settings = {{"log_function": functools.partial(log_request, record_prometheus_metrics=False)}}
# A dashboard's query string reaches its kernel (QUERY_STRING, VOILA_REQUEST_URL): a request that carries the
# token is answered, once authenticated (the login cookie is set), with a redirect to the same page without it.
import voila.handler as _voila_handler
from urllib.parse import urlencode as _urlencode

_voila_prepare = _voila_handler.VoilaHandler.prepare


async def _prepare_without_token(self, *args, **kwargs):
    got = _voila_prepare(self, *args, **kwargs)
    if got is not None and hasattr(got, "__await__"):
        await got
    if self._finished or "token" not in self.request.query_arguments or not self.current_user:
        return
    rest = [(k, v.decode()) for k, vs in self.request.query_arguments.items() if k != "token" for v in vs]
    self.redirect(self.request.path + ("?" + _urlencode(rest) if rest else ""))


_voila_handler.VoilaHandler.prepare = _prepare_without_token

c.VoilaConfiguration.template = {_TEMPLATE!r}
c.VoilaConfiguration.strip_sources = True
c.VoilaConfiguration.show_tracebacks = False
c.VoilaConfiguration.preheat_kernel = {pool_size > 0}
c.VoilaConfiguration.default_pool_size = {max(int(pool_size), 0)}
c.VoilaKernelManager.preheat_denylist = ["index.ipynb"]
c.MappingKernelManager.cull_idle_timeout = {int(cull_idle_s)}
c.MappingKernelManager.cull_interval = {int(cull_interval_s)}
c.MappingKernelManager.cull_connected = False
c.MappingKernelManager.cull_busy = False
"""


def start_dashboards(
    settings: Settings,
    port: int = 8866,
    *,
    root: str | Path | None = None,
    token: str | None = None,
    pool_size: int = 1,
    cull_idle_s: float = 120.0,
    cull_interval_s: float = 30.0,
    name: str = "dashboards",
    wait: bool = True,
    timeout_s: float = 120.0,
    detach: bool = False,
) -> Service:
    """Serve ``root`` (default ``dashboards/``) with Voilà on 127.0.0.1:``port``, token authentication on.

    The token (``token``, else :func:`dashboard_token`) goes into a private Voilà config file
    ``<data>/run/<name>.jupyter/voila.py`` (folder 0700, file 0600), never onto the command line (``ps``) nor
    into a log or the service's ``.json``; the child's environment holds no token and no exchange credential.
    Sources stripped, tracebacks hidden, idle kernels culled (``cull_idle_s``; a kernel with a connected tab
    is kept), and ``pool_size`` preheated kernels per dashboard (0: none). A preheated kernel runs its
    notebook up to ``voila.utils.wait_for_request()`` before anyone visits: a live panel must call it (it
    returns at once outside a preheated kernel) before it starts its update loop. ``wait``: return once the
    server answers. The returned Service's ``url`` is the server's base URL without the token: use
    :func:`dashboard_url` to print the address with it.
    """
    import importlib.util

    if importlib.util.find_spec("voila") is None:
        raise ServiceError(
            "Voilà is not installed here: pip install -e '.[dashboards]' (voila, ipywidgets, anywidget)"
        )
    folder = Path(root).resolve() if root is not None else dashboards_root(settings)
    if not folder.is_dir():
        raise ServiceError(f"no dashboards folder at {folder}")
    if token is None:
        token, _ = dashboard_token(settings)
    elif len(token) < _MIN_TOKEN_LEN:
        raise ServiceError(f"the dashboard token needs at least {_MIN_TOKEN_LEN} characters")
    if not 0 < int(port) < 65536:
        raise ServiceError(f"bad port {port!r}")
    run_dir = service_dir(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    old = _read_service(run_dir / f"{name}.json")
    if old is not None and old.running():
        raise ServiceError(
            f"dashboards {name!r} are already served (pid {old.pid}, {old.url}); stop them first"
        )
    conf_dir = run_dir / f"{name}.jupyter"
    conf_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(conf_dir, 0o700)
    conf = conf_dir / "voila.py"
    assets = run_dir / f"{name}.assets"
    esm_path = _plotly_assets(assets)
    _voila_template(assets)
    fd = os.open(conf_dir / ".voila.py.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(_voila_config(token, port, pool_size, cull_idle_s, cull_interval_s, conf_dir, assets))
    os.replace(conf_dir / ".voila.py.tmp", conf)
    master = settings.security.master_key_env
    prefix = settings.security.api_key_env_prefix + "_"
    drop = [
        master,
        *(k for k in os.environ if k.startswith(prefix) and k.endswith(_DASHBOARD_DROP_ENV_SUFFIXES)),
    ]
    command = [sys.executable, "-m", "voila", str(folder), f"--Voila.config_file_paths={conf_dir}"]
    svc = _spawn(settings, name, "dashboards", [], _effective(settings), detach=detach, command=command,
                 cwd=run_dir, drop_env=drop, url=f"http://127.0.0.1:{int(port)}/",
                 env={PLOTLY_ESM_ENV: esm_path, "JUPYTER_PATH": os.pathsep.join(
                     p for p in (str(assets), os.environ.get("JUPYTER_PATH", "")) if p)})  # fmt: skip
    return wait_ready(svc, timeout_s) if wait else svc


def dashboard_url(svc: Service, token: str | None = None, page: str | None = "index.ipynb") -> str:
    """The address to open: the home notebook ``page`` (if the served folder has it, else the file list),
    with ``?token=`` when ``token`` is given (print it once to the terminal; never log it)."""
    base = svc.url or ""
    folder = Path(svc.command[3]) if svc.kind == "dashboards" and len(svc.command) > 3 else None
    if page and folder is not None and (folder / page).is_file():
        base += f"voila/render/{page}"
    return f"{base}?token={token}" if token else base


def _dashboards_ready(svc: Service) -> Service | None:
    try:
        with urllib.request.urlopen(f"{svc.url}login", timeout=5) as r:  # the login page needs no token
            return svc if r.status == 200 else None
    except (OSError, ValueError):
        return None


def _default_session(strategy: str, symbols: Sequence[str], timeframe: str) -> str:
    strat = Path(
        strategy.split(":")[-1] if ":" in strategy and not strategy.endswith(".py") else strategy
    ).stem
    return f"{strat}-{'+'.join(s.replace('/', '').replace(':', '') for s in symbols)}-{timeframe}"


def replay_url(replay: Service | str) -> str:
    url = replay.url if isinstance(replay, Service) else replay
    if not url:
        raise ServiceError("the replay exchange has no URL yet: wait_ready() it first")
    return url.rstrip("/")


def _effective(settings: Settings) -> dict[str, Any]:
    """The caller's settings as an overlay file's content, paths absolute (the overlay lives under <data>)."""
    d = settings.model_dump(mode="json", include=set(SettingsFile.model_fields))
    d["paths"]["data"] = str(settings.data_dir)
    d["paths"]["sample"] = str(settings.sample_dir)
    d["strategies"]["paths"] = [str(p) for p in settings.strategy_paths]
    return d


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _spawn(
    settings: Settings,
    name: str,
    kind: str,
    args: list[str],
    overlay: dict[str, Any],
    *,
    session: str | None = None,
    timeframe: str | None = None,
    env: Mapping[str, str] | None = None,
    detach: bool = False,
    command: list[str] | None = None,
    cwd: Path | None = None,
    drop_env: Sequence[str] = (),
    url: str | None = None,
) -> Service:
    if not name or "/" in name or name.startswith("."):
        raise ServiceError(f"bad service name {name!r}")
    run_dir = service_dir(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    old = _read_service(run_dir / f"{name}.json")
    if old is not None and old.running():
        raise ServiceError(
            f"{kind} {name!r} is already running (pid {old.pid}, log {old.log_path}); stop it first"
        )
    cfg = run_dir / f"{name}.config.yml"
    tmp = cfg.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(overlay, sort_keys=False))
    os.replace(tmp, cfg)
    if command is None:
        command = [sys.executable, "-m", "workbench.cli", "--config", str(cfg), *args]
    child_env = {
        **os.environ,
        **(env or {}),
        "WORKBENCH_HOME": str(settings.data_dir),
        "PYTHONUNBUFFERED": "1",
    }
    child_env.pop("WORKBENCH_CONFIG", None)
    child_env.pop(DASHBOARD_TOKEN_ENV, None)  # only the dashboards' private config file holds it
    for var in drop_env:
        child_env.pop(var, None)
    if kind == "dashboards":  # the kernels load the caller's effective settings, as the other services do
        child_env["WORKBENCH_CONFIG"] = str(cfg)
    # the child imports the caller's copy of the package (a worktree, an editable install)
    pkg_root = str(Path(workbench.__file__).resolve().parents[1])
    child_env["PYTHONPATH"] = os.pathsep.join([pkg_root, *filter(None, [child_env.get("PYTHONPATH")])])
    log_path = run_dir / f"{name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            cwd=str(cwd or settings.root),
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    svc = Service(name, kind, proc.pid, run_dir, command, cfg, url, session, settings.data_dir, timeframe,
                  int(time.time() * 1000))  # fmt: skip
    _write_service(svc)
    if not detach:
        _ATTACHED[proc.pid] = svc
    return svc


def _write_service(svc: Service) -> None:
    tmp = svc.run_dir / f".{svc.name}.json.tmp"
    tmp.write_text(json.dumps(svc.to_dict(), indent=1))
    os.replace(tmp, svc.run_dir / f"{svc.name}.json")
    svc.pid_path.write_text(f"{svc.pid}\n")


def _read_service(path: Path) -> Service | None:
    try:
        return Service.from_dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


# ------------------------------------------------------------------------------------------------ process


def _alive(pid: int, command: Sequence[str] = ()) -> bool:
    """Whether ``pid`` is still the process that ran ``command`` (not exited, not a zombie, not reused)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    want = [c.encode() for c in command]
    return not want or cmdline[: len(want)] == want


def _exit_code(svc: Service) -> int | None:
    child = _CHILDREN.get(svc.pid)
    return None if child is None else child.poll()


def wait_exit(svc: Service, timeout_s: float = 60.0) -> int | None:
    """Wait until the process has exited; its exit code (None: not our child, or still running at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while svc.running():
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
    return _exit_code(svc)


def _ended(svc: Service, what: str) -> ServiceError:
    return ServiceError(
        f"{svc.kind} {svc.name!r} exited (code {_exit_code(svc)}) {what}; log {svc.log_path}:\n{svc.log(3000)}"
    )


def wait_ready(svc: Service, timeout_s: float = 120.0, *, poll_s: float = 0.05) -> Service:
    """Wait until the service can be used: the replay exchange printed ``READY <url>`` (the returned Service
    carries the URL), a session journalled RUNNING for this process. Raises :class:`ServiceError` if the process
    exits first or the timeout passes (generous: a loaded machine takes seconds to import the stack)."""
    deadline = time.monotonic() + timeout_s
    check: Callable[[], Service | None] = {
        "replay": lambda: _replay_ready(svc),
        "dashboards": lambda: _dashboards_ready(svc),
    }.get(svc.kind, lambda: _session_ready(svc))
    while True:
        got = check()
        if got is not None:
            return got
        if not svc.running():
            got = check()  # it may have become ready and exited (a short --max-seconds)
            if got is not None:
                return got
            raise _ended(svc, "before it was ready")
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{svc.kind} {svc.name!r} not ready after {timeout_s:.0f} s; log {svc.log_path}:\n{svc.log(3000)}"
            )
        time.sleep(poll_s)


def _replay_ready(svc: Service) -> Service | None:
    for line in svc.log().splitlines():
        if line.startswith("READY "):
            ready = replace(svc, url=line.split(None, 1)[1].strip())
            _write_service(ready)
            return ready
    return None


def _journal(svc: Service):
    """The session's journal, or None while the engine has not created it yet (no file, or a file whose
    schema is still being written: a reader racing the engine's first transaction)."""
    from workbench.trading.journal import Journal, JournalError, journal_path

    if svc.session is None or svc.data_dir is None:
        raise ServiceError(f"{svc.name!r} is not a trading session")
    path = journal_path(svc.data_dir, svc.session)
    if not path.exists():
        return None
    try:
        return Journal(path, readonly=True)
    except JournalError:
        if svc.running():
            return None
        raise


def _session_ready(svc: Service) -> Service | None:
    j = _journal(svc)
    if j is None:
        return None
    try:
        started = False
        for r in j.read(kinds="state"):
            if r.data.get("state") == "STARTING":
                started = r.data.get("reason") == f"pid {svc.pid}"
            elif started and r.data.get("state") == "RUNNING":
                return svc
        return None
    finally:
        j.close()


def stop(svc: Service, timeout_s: float = 30.0) -> int | None:
    """Stop the service: SIGTERM (a clean stop: the engine journals it, the replay saves its state), then SIGKILL
    after ``timeout_s``. Its ``.pid`` and ``.json`` files are removed; the log and the journal stay. Returns the
    exit code where known (the caller started it), else None."""
    if svc.running():
        with contextlib.suppress(ProcessLookupError):
            os.kill(svc.pid, signal.SIGTERM)
        if wait_exit(svc, timeout_s) is None and svc.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(svc.pid, signal.SIGKILL)  # its own process group (start_new_session)
            wait_exit(svc, 30.0)
    code = _exit_code(svc)
    _CHILDREN.pop(svc.pid, None)
    _ATTACHED.pop(svc.pid, None)
    current = _read_service(svc.run_dir / f"{svc.name}.json")
    if current is None or current.pid == svc.pid:
        for p in (svc.pid_path, svc.run_dir / f"{svc.name}.json"):
            p.unlink(missing_ok=True)
    return code


@atexit.register
def _stop_attached() -> None:
    for svc in list(_ATTACHED.values())[::-1]:  # sessions (started last) before the replay they trade on
        with contextlib.suppress(Exception):
            stop(svc, timeout_s=15.0)


# ------------------------------------------------------------------------------------------------ driving


def _post(url: str, body: Mapping[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as r:  # the loopback admin API
        return json.loads(r.read())


def step(
    replay: Service,
    session: Service | None = None,
    bars: int = 1,
    *,
    timeout_s: float = 60.0,
    on_bar: Callable[[int, int], None] | None = None,
) -> int:
    """Advance a paused replay exchange ``bars`` bars, one at a time; after each, wait until ``session`` has
    decided on the bar just closed (meta ``decided`` in its journal). Returns the replay clock (ms). Stops early
    at the end of the data. ``on_bar(i, now_ms)`` is called after each bar (progress)."""
    if replay.timeframe is None:
        raise ServiceError("step: the replay service does not say its timeframe")
    tf_ms = Timeframe.parse(replay.timeframe).ms
    url = replay_url(replay) + "/_replay/clock"
    st = _post(url, {"advance_ms": 0})
    now = int(st["now_ms"])
    for i in range(bars):
        if st.get("finished"):
            break
        st = _post(url, {"advance_ms": tf_ms})
        now = int(st["now_ms"])
        if session is not None:
            _wait_decided(session, now - tf_ms, timeout_s)
        if on_bar is not None:
            on_bar(i, now)
    return now


def _wait_decided(session: Service, bar_ms: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        j = _journal(session)
        if j is not None:
            try:
                if int((j.meta_get("decided") or {}).get("bar", 0)) >= bar_ms:
                    return
            finally:
                j.close()
        if not session.running():
            raise _ended(session, "while the replay was stepped")
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"session {session.session!r} did not decide on bar {bar_ms} within {timeout_s:.0f} s; "
                f"log {session.log_path}:\n{session.log(3000)}"
            )
        time.sleep(0.02)


def archive_session(settings: Settings, session: str) -> Path | None:
    """Move a stopped session's folder aside (``<name>.archived-<UTC stamp>``, nothing deleted) so the name
    starts afresh; None if there is none. A running session is refused."""
    from workbench.trading.journal import session_dir
    from workbench.trading.session import SessionLock

    folder = session_dir(settings.data_dir, session)
    if not folder.exists():
        return None
    lock = settings.data_dir / "trading" / "locks" / f"session-{session}.lock"
    if SessionLock.holder(lock) is not None:
        raise ServiceError(f"session {session!r} is running: stop it before archiving it")
    target = folder.with_name(f"{folder.name}.archived-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{target.name.split('~')[0]}~{n}")
    folder.rename(target)
    return target


def session_frames(data_dir: Path, session: str) -> dict[str, Any]:
    """A session's journal as frames for plots and tables: ``candles`` (the closed candles it saw, one frame
    per symbol, UTC index), ``fills``, ``equity`` (UTC ``time`` column added), ``orders``, ``risk_events``,
    ``positions`` (the :meth:`Journal.export` lists as DataFrames)."""
    import pandas as pd

    from workbench.trading.journal import Journal, journal_path

    path = journal_path(Path(data_dir), session)
    if not path.exists():
        raise ServiceError(f"no journal for session {session!r} at {path}")
    j = Journal(path, readonly=True)
    try:
        export = j.export()
        rows = j.read(kinds="candle")
    finally:
        j.close()
    by_symbol: dict[str, list[list[float]]] = {}
    for r in rows:
        by_symbol.setdefault(r.data["symbol"], []).append(r.data["candle"])
    candles = {}
    for sym, cs in by_symbol.items():
        df = pd.DataFrame(cs, columns=["ts", "open", "high", "low", "close", "volume"])
        df = df.drop_duplicates("ts", keep="last").sort_values("ts")
        df.index = pd.to_datetime(df.pop("ts"), unit="ms", utc=True)
        df.index.name = "time"
        candles[sym] = df
    out: dict[str, Any] = {"candles": candles, "positions": export["positions"]}
    for k in ("fills", "equity", "orders", "risk_events"):
        df = pd.DataFrame(export[k])
        if "timestamp" in df:
            df["time"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
        out[k] = df
    return out
