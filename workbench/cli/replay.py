"""``workbench replay-exchange``: serve recorded candles from the store as a live Binance spot exchange on
127.0.0.1 (see :mod:`workbench.replay`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import _errors, _store, err, out, settings


def _balances(items: list[str]) -> dict[str, float]:
    balances: dict[str, float] = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        try:
            if not sep or not asset.strip():
                raise ValueError
            balances[asset.strip().upper()] = float(amount)
        except ValueError:
            raise ValueError(f"--balance {item!r}: expected ASSET=AMOUNT, e.g. USDT=10000") from None
    return balances


def replay_exchange(
    symbol: Annotated[
        list[str], typer.Option("--symbol", "-s", help="Spot symbol to replay, e.g. BTC/USDT; repeatable.")
    ],
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help="Stored candle timeframe to replay.")
    ] = "5m",
    start: Annotated[
        str | None,
        typer.Option("--start", help="Replay start (ISO date/time UTC or epoch ms); default: 200 bars in."),
    ] = None,
    speed: Annotated[
        float,
        typer.Option("--speed", help="Replay seconds per wall second (0: paused; step via /_replay/clock)."),
    ] = 1.0,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    source_exchange: Annotated[
        str, typer.Option("--source-exchange", help="Exchange whose stored candles are replayed.")
    ] = "binance",
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Test API key (default: generated).")
    ] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="Test API secret (default: generated).")
    ] = None,
    balance: Annotated[
        list[str] | None,
        typer.Option(
            "--balance", help="Starting balance ASSET=AMOUNT; repeatable (default: trading.yml cash)."
        ),
    ] = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="Persist orders, balances and clock to this JSON file.")
    ] = None,
    fault_rate: Annotated[
        float, typer.Option("--fault-rate", help="Share of REST requests given a fault.")
    ] = 0.0,
    faults: Annotated[
        str,
        typer.Option(
            "--faults",
            help="Comma-separated faults to draw from: 5xx, 429, drop, timeout, timeout-after-accept, "
            "drop-after-accept, 1007.",
        ),
    ] = "",
    fault_seed: Annotated[int, typer.Option("--fault-seed", help="Seed of the random faults.")] = 0,
    timeout_fault_s: Annotated[
        float, typer.Option("--timeout-fault-s", help="How long a timeout fault holds the answer (s).")
    ] = 12.0,
    maker_fee: Annotated[
        float | None, typer.Option("--maker-fee", help="Default: trading.yml fees.maker.")
    ] = None,
    taker_fee: Annotated[
        float | None, typer.Option("--taker-fee", help="Default: trading.yml fees.taker.")
    ] = None,
    slippage_bps: Annotated[
        float | None, typer.Option("--slippage-bps", help="Market-order slippage (default: trading.yml).")
    ] = None,
    spread_ticks: Annotated[
        int, typer.Option("--spread-ticks", help="Synthetic book: ask - bid in ticks.")
    ] = 1,
    book_levels: Annotated[int, typer.Option("--book-levels", help="Synthetic book: levels per side.")] = 20,
    book_qty: Annotated[
        float, typer.Option("--book-qty", help="Synthetic book: base amount at the best level.")
    ] = 0.5,
) -> None:
    """Serve stored candles as a live Binance spot exchange on 127.0.0.1 (REST + websocket, signed orders)."""
    import asyncio
    import signal

    from workbench.replay import BookParams, ReplayExchange

    with _errors():
        fault_list = tuple(f.strip() for f in faults.split(",") if f.strip())
        ex = ReplayExchange(
            _store(),
            symbol,
            timeframe,
            start,
            speed,
            exchange=source_exchange,
            port=port,
            api_key=api_key,
            secret=secret,
            balances=_balances(balance) if balance else None,
            trading=settings().trading,
            maker_fee=maker_fee,
            taker_fee=taker_fee,
            slippage_bps=slippage_bps,
            book=BookParams(spread_ticks=spread_ticks, levels=book_levels, qty=book_qty),
            state_path=state,
            fault_rate=fault_rate,
            faults=fault_list,
            fault_seed=fault_seed,
            timeout_fault_s=timeout_fault_s,
        )

        async def serve() -> None:
            await ex.start()
            st = ex.status()
            out.print(f"replay exchange listening on {ex.base_url}  (websocket {ex.ws_url})", highlight=False)
            out.print(
                f"  {', '.join(ex.symbols)} {ex.timeframe} from {st['now']} at speed {ex.clock.speed:g}"
                + ("  (state restored)" if ex.restored else ""),
                highlight=False,
            )
            # test keys for this local replay only: printing them is the point
            out.print(f"  api key: {ex.api_key}", highlight=False, soft_wrap=True)
            out.print(f"  secret:  {ex.secret}", highlight=False, soft_wrap=True)
            out.print(f"  admin:   {ex.base_url}/_replay/status", highlight=False)
            if fault_list:
                out.print(f"  faults:  {', '.join(fault_list)} at rate {fault_rate:g}", highlight=False)
            out.print(f"READY {ex.base_url}", highlight=False)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await ex.stop()
            err.print("replay exchange stopped")

        asyncio.run(serve())


def register(app: typer.Typer) -> None:
    app.command("replay-exchange")(replay_exchange)
