"""``workbench dashboards``, ``workbench up``, ``workbench down``, ``workbench ps``: the dashboards served by
Voilà, and the whole demo stack in the background.

* ``dashboards [--port 8866]`` serves ``dashboards/`` with Voilà on 127.0.0.1 in the foreground (Ctrl-C stops
  it and its kernels), through :func:`workbench.services.start_dashboards`: token authentication always on,
  sources stripped, tracebacks hidden, idle kernels culled, preheated kernels.
* ``up [--port 8866]`` starts the replay exchange (advancing at ``--speed`` replay seconds per second), a paper
  session on it and the dashboards as detached background processes (logs and pid files under
  ``<data>/run/``), prints the URL with its token and returns. ``down`` stops all of them (dashboards, then
  sessions, then the replay exchange); ``ps`` lists them.

The token (``$WORKBENCH_DASHBOARD_TOKEN``, else the secrets store's ``dashboards.token``, else generated) is
printed once here, with the URL; it is written only to the server's private config file (mode 0600), never to
a command line, a log or ``<data>/run/*.json``.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from workbench.cli.app import _errors, _params, _store, err, out, settings

_PORT_HELP = "Port on 127.0.0.1 (a reverse proxy with TLS serves it further: docs/dashboards.md)."
_POOL_HELP = "Preheated kernels per dashboard (0: none; each is a Python process)."


def _service_error(e: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _print_url(svc, token: str, source: str) -> None:
    from workbench import services as sv

    out.print(f"dashboards: {sv.dashboard_url(svc, token)}", highlight=False, soft_wrap=True)
    keep = f" (set ${sv.DASHBOARD_TOKEN_ENV} or the secret {sv.DASHBOARD_TOKEN_SECRET} to keep one)"
    out.print(
        f"  token from {source}; log {svc.log_path}" + (keep if source.startswith("generated") else ""),
        highlight=False,
        soft_wrap=True,
    )


def dashboards(
    port: Annotated[int, typer.Option("--port", help=_PORT_HELP)] = 8866,
    pool_size: Annotated[int, typer.Option("--pool-size", help=_POOL_HELP)] = 1,
) -> None:
    """Serve the dashboards (dashboards/) with Voilà on 127.0.0.1 until Ctrl-C; token required."""
    from workbench import services as sv

    with _errors():
        s = settings()
        token, source = sv.dashboard_token(s, prompt=True)
        try:
            svc = sv.start_dashboards(s, port, token=token, pool_size=pool_size)
        except sv.ServiceError as e:
            raise _service_error(e) from None
        try:  # from here a Ctrl-C stops the server
            _print_url(svc, token, source)
            out.print("Ctrl-C stops the server and its kernels", highlight=False)
            while svc.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            code = sv.stop(svc)
        if code not in (0, None, -15):
            raise _service_error(sv.ServiceError(f"Voilà exited with code {code}; log {svc.log_path}"))


def up(
    port: Annotated[int, typer.Option("--port", help=_PORT_HELP)] = 8866,
    symbol: Annotated[list[str] | None, typer.Option("--symbol", "-s")] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "5m",
    start: Annotated[str, typer.Option("--start", help="Replay start (ISO date UTC).")] = "2024-03-04",
    speed: Annotated[
        float, typer.Option("--speed", help="Replay seconds per wall second (60: a 5m bar every 5 s).")
    ] = 60.0,
    strategy: Annotated[str, typer.Option("--strategy")] = "sma_cross",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (default fast=3, slow=8).")
    ] = None,
    size: Annotated[float, typer.Option(help="Fraction of equity traded (within the risk limits).")] = 0.2,
    session: Annotated[str, typer.Option("--session")] = "paper",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an earlier session of this name (default: archive it first)."
        ),
    ] = False,
    pool_size: Annotated[int, typer.Option("--pool-size", help=_POOL_HELP)] = 1,
) -> None:
    """Start the replay exchange, a paper session and the dashboards in the background; print the URL."""
    from workbench import services as sv

    with _errors():
        s = settings()
        symbols = symbol or ["BTC/USDT"]
        params = _params(param) if param else {"fast": 3, "slow": 8}
        if not _store().series("candles"):
            raise ValueError(f"no candles in the store at {s.data_dir}: run `workbench init --sample` first")
        running = sv.services(s)
        if running:
            names = ", ".join(f"{x.name} (pid {x.pid})" for x in running)
            raise _service_error(sv.ServiceError(f"already running: {names}; run `workbench down` first"))
        token, source = sv.dashboard_token(s, prompt=True)
        started: list[sv.Service] = []
        try:
            if not resume:
                old = sv.archive_session(s, session)
                if old is not None:
                    out.print(f"earlier session {session!r} archived to {old}", highlight=False)
            replay = sv.start_replay(s, symbols, timeframe, start=start, speed=speed, detach=True)
            started.append(replay)
            out.print(f"replay exchange {replay.url} (log {replay.log_path})", highlight=False)
            trader = sv.start_session(s, replay, strategy, symbols, timeframe, session=session, params=params,
                                      size=size, detach=True)  # fmt: skip
            started.append(trader)
            out.print(f"paper session {session!r} running (log {trader.log_path})", highlight=False)
            dash = sv.start_dashboards(s, port, token=token, pool_size=pool_size, detach=True)
            started.append(dash)
        except sv.ServiceError as e:
            for svc in reversed(started):  # nothing half-started stays behind
                sv.stop(svc)
            raise _service_error(e) from None
        _print_url(dash, token, source)
        out.print("`workbench ps` lists them, `workbench down` stops them", highlight=False)


_ORDER = {"dashboards": 0, "session": 1, "replay": 2}


def down() -> None:
    """Stop every background service (dashboards, sessions, replay exchange) under <data>/run/."""
    from workbench import services as sv

    with _errors():
        found = sorted(sv.services(settings()), key=lambda x: _ORDER.get(x.kind, 1))
        if not found:
            out.print("nothing running", highlight=False)
        for svc in found:
            code = sv.stop(svc)
            out.print(f"stopped {svc.kind} {svc.name!r} (pid {svc.pid}, exit code {code})", highlight=False)


def ps() -> None:
    """List the background services still running (name, kind, pid, address or session, log)."""
    from workbench import services as sv

    with _errors():
        found = sorted(sv.services(settings()), key=lambda x: _ORDER.get(x.kind, 1))
        if not found:
            out.print("nothing running", highlight=False)
            return
        from rich.table import Table

        table = Table("name", "kind", "pid", "url / session", "since (UTC)", "log")
        for svc in found:
            where = svc.url or "" if svc.kind != "session" else svc.session or ""
            if svc.kind == "dashboards":
                where = f"{sv.dashboard_url(svc)} (token required)"
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(svc.started_ms / 1000))
            table.add_row(svc.name, svc.kind, str(svc.pid), where, since, str(svc.log_path))
        out.print(table)


def register(app: typer.Typer) -> None:
    app.command("dashboards")(dashboards)
    app.command("up")(up)
    app.command("down")(down)
    app.command("ps")(ps)
