"""``workbench paper-demo``: a short paper session against the replay exchange, start to finish (``make demo``).

It starts ``workbench replay-exchange`` (paused) and ``workbench trade run --mode paper`` as background
processes through :mod:`workbench.services`, steps the replay ``--bars`` bars (waiting for the session's decision
on each one), stops both and prints what the session did. The journal stays: ``workbench trade status --session
demo``, ``workbench journal export --session demo``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.app import _errors, _params, _store, err, out, settings


def paper_demo(
    symbol: Annotated[list[str] | None, typer.Option("--symbol", "-s")] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "5m",
    start: Annotated[str, typer.Option("--start", help="Replay start (ISO date UTC).")] = "2024-03-04",
    strategy: Annotated[str, typer.Option("--strategy")] = "sma_cross",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (default fast=3, slow=8).")
    ] = None,
    size: Annotated[float, typer.Option(help="Fraction of equity traded (within the risk limits).")] = 0.2,
    bars: Annotated[int, typer.Option("--bars", help="Bars to replay.")] = 120,
    session: Annotated[str, typer.Option("--session")] = "demo",
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Archive an earlier session of this name first (nothing deleted).")
    ] = False,
) -> None:
    """Run a short paper session against the replay exchange, stepped bar by bar, then stop it."""
    from workbench import services as sv

    with _errors():
        s = settings()
        symbols = symbol or ["BTC/USDT"]
        params = _params(param) if param else {"fast": 3, "slow": 8}
        store = _store()
        if not store.series("candles"):
            raise ValueError(f"no candles in the store at {s.data_dir}: run `workbench init --sample` first")
        try:
            if fresh:
                old = sv.archive_session(s, session)
                if old is not None:
                    out.print(f"earlier session {session!r} archived to {old}", highlight=False)
            replay = sv.start_replay(s, symbols, timeframe, start=start, speed=0)
            out.print(f"replay exchange {replay.url} (log {replay.log_path})", highlight=False)
            trader = sv.start_session(s, replay, strategy, symbols, timeframe, session=session, params=params,
                                      size=size)  # fmt: skip
            out.print(f"paper session {session!r} running (log {trader.log_path})", highlight=False)
            try:
                sv.step(replay, trader, bars)
            finally:
                codes = [sv.stop(trader), sv.stop(replay)]
        except sv.ServiceError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        frames = sv.session_frames(s.data_dir, session)
        eq = frames["equity"]["equity"]
        out.print(
            f"{bars} bars of {', '.join(symbols)} {timeframe} from {start}: {len(frames['fills'])} fills, "
            f"equity {eq.iloc[0]:,.2f} -> {eq.iloc[-1]:,.2f}; stopped (exit codes {codes})"
            if len(eq)
            else f"{bars} bars replayed, no equity marked",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("paper-demo")(paper_demo)
