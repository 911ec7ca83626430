"""``workbench trade ...`` and ``workbench reconcile``: run a trading session and act on a running one.

``trade run`` runs the engine in the foreground (Ctrl-C stops it cleanly; a restarted session resumes from its
journal). The other commands never talk to the engine directly: they write a command into the session's
journal and wait for the engine's acknowledgement there (``status`` reads the journal alone when the engine is
not running), which is the same channel the dashboards use.
"""

from __future__ import annotations

import asyncio
import json
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli.app import _errors, _params, _strategy, err, out, settings

trade_app = typer.Typer(help="Paper and live trading sessions: run, inspect, command.", no_args_is_help=True)

SessionOpt = Annotated[
    str | None,
    typer.Option("--session", help="Session name (default: the only session, or the running one)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(trade_app, name="trade")
    app.command("reconcile")(reconcile_cmd)


def _data_dir() -> Path:
    return settings().data_dir


def default_session_name(strategy: str, symbols: list[str], timeframe: str) -> str:
    """``<strategy>-<symbol>-<timeframe>``: ``sma_cross-BTCUSDT-5m`` (a file strategy: its file's stem)."""
    strat = Path(
        strategy.split(":")[-1] if ":" in strategy and not strategy.endswith(".py") else strategy
    ).stem
    syms = "+".join(s.replace("/", "").replace(":", "") for s in symbols)
    return f"{strat}-{syms}-{timeframe}"


def _resolve_session(name: str | None) -> str:
    from workbench.trading.session import EngineError, SessionLock

    if name:
        return name
    root = _data_dir() / "trading" / "sessions"
    names = sorted(p.name for p in root.iterdir() if (p / "journal.sqlite").exists()) if root.exists() else []
    if not names:
        raise EngineError(f"no trading session under {root}: start one with `workbench trade run`")
    if len(names) == 1:
        return names[0]
    running = [
        n for n in names if SessionLock.holder(_data_dir() / "trading" / "locks" / f"session-{n}.lock")
    ]
    if len(running) == 1:
        return running[0]
    raise EngineError(f"several sessions ({', '.join(names)}): name one with --session")


def _engine_errors():
    from workbench.trading.session import EngineError

    return EngineError


@contextmanager
def _trade_errors():
    """The CLI's clean errors, the engine's refusals (lock held, not running, no ack) included."""
    with _errors():
        try:
            yield
        except _engine_errors() as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


def _command(session: str | None, name: str, args: dict[str, Any] | None = None) -> None:
    """Send a command to the running session and print its acknowledgement."""
    with _trade_errors():
        _print_ack(_send(session, name, args))


@trade_app.command("run")
def trade_run(
    strategy: Annotated[
        str, typer.Option("--strategy", help="Built-in name, path.py:Class, or a name from strategies.paths.")
    ],
    exchange: Annotated[str, typer.Option("--exchange", "-e")],
    symbol: Annotated[list[str], typer.Option("--symbol", "-s")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "5m",
    mode: Annotated[
        str | None, typer.Option("--mode", help="paper or live (default: trading.mode; live only from here).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Strategy parameter name=value.")
    ] = None,
    size: Annotated[
        float, typer.Option(help="Fraction of equity the strategy trades (split over symbols).")
    ] = 1.0,
    sl: Annotated[float | None, typer.Option(help="Stop-loss, fraction of the entry price.")] = None,
    tp: Annotated[float | None, typer.Option(help="Take-profit, fraction of the entry price.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Session name (default <strategy>-<symbol>-<timeframe>).")
    ] = None,
    direction: Annotated[
        str, typer.Option(help="long (spot), or short / both (refused on spot markets).")
    ] = "long",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm live trading.")] = False,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", help="Stop after this long (demos, tests).")
    ] = None,
) -> None:
    """Run a trading session in the foreground (Ctrl-C stops it; a restart resumes from the journal)."""
    with _trade_errors():
        asyncio.run(
            _run(
                strategy,
                exchange,
                symbol,
                timeframe,
                mode,
                param,
                size,
                sl,
                tp,
                session,
                yes,
                max_seconds,
                direction,
            )
        )


async def _run(
    strategy,
    exchange,
    symbols,
    timeframe,
    mode,
    param,
    size,
    sl,
    tp,
    session,
    yes,
    max_seconds,
    direction="long",
) -> None:
    import time

    from workbench.data.exchanges import make_exchange
    from workbench.secrets import describe_exchange
    from workbench.trading.brokers.ccxt import CcxtBroker
    from workbench.trading.brokers.paper import PaperBroker
    from workbench.trading.engine import EngineError, EngineOptions, SessionSpec, TradingEngine
    from workbench.trading.risk import RiskManager

    s = settings()
    tcfg = s.trading
    mode = mode or tcfg.mode
    if mode not in ("paper", "live"):
        raise EngineError(f"--mode must be paper or live, not {mode!r}")
    if mode == "live" and not _live_from_cli():
        raise EngineError(
            "live trading needs --mode live on the command line (trading.mode alone is not enough)"
        )
    cls = _strategy(strategy)
    strat = cls(**_params(param))
    name = session or default_session_name(strategy, symbols, timeframe)
    client = make_exchange(s, exchange, with_credentials=(mode == "live"), flavour="pro")
    info = describe_exchange(client)
    account = info.get("account") or "paper"
    out.print(
        f"[bold]session[/bold] {name}  [bold]mode[/bold] {mode.upper()}  [bold]exchange[/bold] {exchange}  "
        f"[bold]account[/bold] {account if mode == 'live' else 'paper (virtual)'}",
        highlight=False,
    )
    for k, v in (info.get("urls") or {}).items():
        out.print(f"  {k}: {v}", highlight=False)
    if (
        mode == "live"
        and not yes
        and not typer.confirm(f"Trade LIVE with real orders on {exchange} account {account}?")
    ):
        raise EngineError("live trading not confirmed")
    try:
        await client.load_markets()
        exch_now = await client.fetch_time()
    except Exception as e:
        await client.close()
        raise EngineError(
            f"{exchange}: cannot reach the exchange: {type(e).__name__}: {str(e)[:200]}"
        ) from None
    offset = int(exch_now - time.time() * 1000)
    for sym in symbols:
        if sym not in client.markets:
            await client.close()
            raise EngineError(f"{exchange} has no market {sym!r}")
        if direction != "long" and client.markets[sym].get("spot", True):
            await client.close()
            raise EngineError(
                f"--direction {direction}: {sym} on {exchange} is a spot market, where a session cannot sell what it "
                "does not hold; spot sessions trade long only (short and both need a margin or futures market)"
            )
    quote = tcfg.quote_currency
    opts = EngineOptions(
        fee_taker=tcfg.fees.taker,
        fee_maker=tcfg.fees.maker,
        slippage=tcfg.slippage_bps / 10_000,
        initial_cash=tcfg.initial_cash,
        quote=quote,
        stale_s=float("inf") if tcfg.risk.stale_feed_s is None else tcfg.risk.stale_feed_s,
        flatten_on_halt=tcfg.risk.flatten_on_halt,
        book=bool(client.has.get("watchOrderBook")),  # the order book journalled about once a second
        journal_synchronous=tcfg.journal_synchronous,
        outcome_window_s=tcfg.order_outcome_window_s,
        buy_cash_fraction=tcfg.tradable_balance_ratio if mode == "live" else 1.0,
        log=lambda m: err.print(m, highlight=False, soft_wrap=True),
    )
    spec = SessionSpec(name, strategy, _params(param), exchange, tuple(symbols), timeframe, mode, size, sl, tp,
                       direction, account if mode == "live" else f"paper-{name}")  # fmt: skip
    if mode == "paper":
        from workbench.trading.brokers.base import MarketRules

        rules = {
            sym: MarketRules.from_ccxt(
                client.market(sym), tick_size=client.precisionMode == 4
            )  # ccxt.TICK_SIZE
            for sym in symbols
        }
        broker: Any = PaperBroker(rules, {quote: tcfg.initial_cash}, taker_fee=opts.fee_taker,
                                  maker_fee=opts.fee_maker, slippage=opts.slippage,
                                  clock=lambda: int(time.time() * 1000) + offset)  # fmt: skip
    else:
        live_client = make_exchange(s, exchange, with_credentials=True, flavour="async")
        if not (live_client.apiKey and live_client.secret):
            await live_client.close()
            await client.close()
            prefix = f"{s.security.api_key_env_prefix}_{exchange.upper()}"
            raise EngineError(
                f"live mode needs {exchange} credentials: set {prefix}_API_KEY and {prefix}_SECRET, or store them "
                f"with `workbench secrets set {exchange}.apiKey` and `workbench secrets set {exchange}.secret`"
            )
        broker = CcxtBroker(live_client)
    engine = TradingEngine(spec, strat, data_dir=s.data_dir, client=client, broker=broker,
                           risk=RiskManager(_engine_limits(tcfg.risk)), options=opts, clock_offset_ms=offset)  # fmt: skip
    if mode == "paper":
        broker.on_fill = engine.on_paper_fill
        broker.clock = engine.now_ms  # fills stamped with the exchange's (or the replay's) clock
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, engine.stopping.set)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        await engine.start()
        out.print(
            f"running: risk {engine.risk.state.value}; journal {engine.journal.path if engine.journal else ''}"
        )
        await engine.run(until=(lambda: time.monotonic() >= deadline) if deadline else None)
    finally:
        await engine.stop("stopped")
        await client.close()
    out.print(f"session {name} stopped")


def _engine_limits(limits: Any) -> Any:
    """The risk limits as the engine applies them: ``stale_feed_s`` is watched by the engine's feed watchdog on
    the local clock (an exchange's clock, or a paused replay's, may stand still or jump a bar at once), which moves
    the risk state to REDUCING and back; the risk manager's own exchange-clock check is left off so that the two
    never disagree."""
    return limits.model_copy(update={"stale_feed_s": None})


def _live_from_cli() -> bool:
    import sys

    argv = sys.argv
    return any(a == "--mode=live" for a in argv) or any(
        a == "--mode" and i + 1 < len(argv) and argv[i + 1] == "live" for i, a in enumerate(argv)
    )


def _send(session: str | None, name: str, args: dict[str, Any] | None = None, timeout: float = 15.0) -> dict:
    from workbench.trading.journal import Journal, journal_path
    from workbench.trading.session import EngineError, SessionLock

    sess = _resolve_session(session)
    path = journal_path(_data_dir(), sess)
    if not path.exists():
        raise EngineError(f"no session {sess!r}")
    if SessionLock.holder(_data_dir() / "trading" / "locks" / f"session-{sess}.lock") is None:
        raise EngineError(f"session {sess!r} is not running (start it with `workbench trade run`)")
    j = Journal(path)
    try:
        cid = j.send_command(name, args or {}, source="cli")
        ack = j.wait_ack(cid, timeout)
    finally:
        j.close()
    if ack is None:
        raise EngineError(f"session {sess!r} did not acknowledge {name!r} within {timeout:.0f} s")
    return ack


def _print_ack(ack: dict, as_json: bool = False) -> None:
    if as_json:
        out.print_json(json.dumps(ack, default=str))
        return
    (out if ack.get("ok") else err).print(
        ("ok: " if ack.get("ok") else "refused: ") + str(ack.get("message")), highlight=False
    )
    if not ack.get("ok"):
        raise typer.Exit(1)


@trade_app.command("status")
def trade_status(
    session: SessionOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """The session's state: running or not, risk state, equity, positions, open orders."""
    from workbench.trading.session import session_status

    with _trade_errors():
        st = session_status(_data_dir(), _resolve_session(session))
        if st["running"]:
            try:
                ack = _send(st["session"], "status", timeout=5.0)
                st.update(ack.get("status") or {})
            except _engine_errors():
                pass
        if as_json:
            out.print_json(json.dumps(st, default=str))
            return
        eq = st.get("equity")
        out.print(
            f"session {st['session']}: {'RUNNING pid ' + str(st['pid']) if st['running'] else 'not running'}, "
            f"risk {st.get('risk_state')}, equity {eq:,.2f}" if isinstance(eq, int | float) else
            f"session {st['session']}: {'RUNNING' if st['running'] else 'not running'}, risk {st.get('risk_state')}",
            highlight=False,
        )  # fmt: skip
        for sym, amt in (st.get("positions") or {}).items():
            out.print(f"  position {sym}: {amt:.8g}", highlight=False)
        out.print(
            f"  open orders: {len(st.get('open_orders') or [])}; fills: {st.get('fills')}", highlight=False
        )


def _simple(name: str, help_: str):
    def cmd(session: SessionOpt = None) -> None:
        _command(session, name)

    cmd.__doc__ = help_
    return cmd


trade_app.command("pause")(_simple("pause", "Stop sending the strategy's orders (positions stay)."))
trade_app.command("flatten")(_simple("flatten", "Cancel open orders and close every position at market."))
trade_app.command("cancel-all")(_simple("cancel-all", "Cancel every open order of the session."))
trade_app.command("stop")(_simple("stop", "Stop the session cleanly (positions and orders stay)."))


@trade_app.command("resume")
def trade_resume(
    session: SessionOpt = None,
    clear_halt: Annotated[
        bool, typer.Option("--clear-halt", help="Clear a HALT (a person's decision).")
    ] = False,
) -> None:
    """Resume a paused session; with --clear-halt, also clear a HALT."""
    _command(session, "resume", {"clear_halt": clear_halt})


@trade_app.command("halt")
def trade_halt(
    session: SessionOpt = None,
    flatten: Annotated[bool, typer.Option("--flatten", help="Also close every position.")] = False,
) -> None:
    """The kill switch: HALTED (open orders canceled; only flattening orders pass) until --clear-halt."""
    _command(session, "halt", {"flatten": flatten})


@trade_app.command("order")
def trade_order(
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    side: Annotated[str, typer.Option("--side", help="buy or sell")],
    amount: Annotated[float, typer.Option("--amount", help="Base units.")],
    type_: Annotated[str, typer.Option("--type", help="market or limit")] = "market",
    price: Annotated[float | None, typer.Option("--price", help="Limit price.")] = None,
    stop: Annotated[
        float | None, typer.Option("--stop", help="Stop-loss price (a buy only; below the price).")
    ] = None,
    take_profit: Annotated[
        float | None, typer.Option("--take-profit", help="Take-profit price (a buy only; above the price).")
    ] = None,
    session: SessionOpt = None,
) -> None:
    """A manual order (its own sub-position; the risk manager checks it like any other). A buy may carry a
    stop-loss and a take-profit (absolute prices): once it fills, the engine sells the manual position at
    market when the price reaches either."""
    with _errors():
        if side not in ("buy", "sell") or type_ not in ("market", "limit"):
            raise ValueError("--side is buy or sell, --type market or limit")
        if type_ == "limit" and price is None:
            raise ValueError("a limit order needs --price")
    args: dict[str, Any] = {"symbol": symbol, "side": side, "amount": amount, "type": type_, "price": price}
    if stop is not None:
        args["stop"] = stop
    if take_profit is not None:
        args["take_profit"] = take_profit
    _command(session, "order", args)


@trade_app.command("cancel")
def trade_cancel(order_id: str, session: SessionOpt = None) -> None:
    """Cancel one order by its client order id."""
    _command(session, "cancel", {"client_order_id": order_id})


@trade_app.command("close")
def trade_close(symbol: str, session: SessionOpt = None) -> None:
    """Close the position in SYMBOL at market."""
    _command(session, "close", {"symbol": symbol})


def reconcile_cmd(
    backtest: Annotated[Path, typer.Option("--backtest", help="A `workbench backtest --json` file.")],
    session: SessionOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare a backtest with a session trade by trade, and explain each difference by a fill-model rule."""
    from workbench.trading.journal import Journal, journal_path
    from workbench.trading.reconcile import compare
    from workbench.types import Timeframe

    with _trade_errors():
        sess = _resolve_session(session)
        bt = json.loads(Path(backtest).read_text())
        j = Journal(journal_path(_data_dir(), sess), readonly=True)
        try:
            spec = j.meta_get("spec") or {}
            tf_ms = Timeframe.parse(spec["timeframe"]).ms if spec.get("timeframe") else None
            report = compare(bt, j.export(), lot_steps=j.meta_get("markets"), timeframe_ms=tf_ms)
        finally:
            j.close()
        if as_json:
            out.print_json(json.dumps(report, default=str))
            return
        from rich.table import Table

        t = Table(title=f"backtest {backtest.name} vs session {sess}")
        for c in ("#", "time", "side", "bt amount", "session amount", "bt price", "session price", "verdict"):
            t.add_column(c)
        for i, r in enumerate(report["rows"], 1):
            t.add_row(str(i), str(r["time"]), str(r["side"]), _f(r.get("bt_amount")), _f(r.get("amount")),
                      _f(r.get("bt_price")), _f(r.get("price")), r["verdict"])  # fmt: skip
        out.print(t)
        out.print(report["summary"], highlight=False)
        if not report["ok"]:
            raise typer.Exit(1)


def _f(v: Any) -> str:
    return "" if v is None else f"{v:.8g}"
