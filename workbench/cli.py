"""The ``workbench`` command line: the composition root that wires config, store and exchanges together."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from workbench import __version__
from workbench.config import ConfigError, Settings, load_settings

app = typer.Typer(
    name="workbench",
    help="Research and trading workbench for crypto markets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
collect_app = typer.Typer(
    help="Collect market data from a ccxt exchange into the store.", no_args_is_help=True
)
data_app = typer.Typer(help="Inspect, audit, import and export stored data.", no_args_is_help=True)
config_app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)
app.add_typer(collect_app, name="collect")
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")

# wide tables when piped or captured (rich would otherwise wrap at 80 columns)
out = Console(width=None if sys.stdout.isatty() else 220)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 220)


class _State:
    config: Path | None = None
    settings: Settings | None = None


state = _State()


def settings() -> Settings:
    if state.settings is None:
        state.settings = load_settings(state.config)
        logging.basicConfig(
            level=state.settings.general.log_level,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    return state.settings


def _version(value: bool) -> None:
    if value:
        out.print(f"workbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config folder or file (default: nearest config/workbench.yml).",
            envvar="WORKBENCH_CONFIG",
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Data folder (overrides paths.data; same as WORKBENCH_HOME)."),
    ] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    state.config = config
    state.settings = None
    if home is not None:
        os.environ["WORKBENCH_HOME"] = str(home.expanduser().resolve())


@contextmanager
def _errors():
    """Turn the workbench's own errors into one clear line on stderr and a non-zero exit, never a traceback."""
    from workbench.data.collect import CollectError
    from workbench.data.exchanges import redact
    from workbench.data.files import FileFormatError
    from workbench.data.sample import SampleError
    from workbench.data.store import StoreError
    from workbench.types import CandleValidationError

    try:
        yield
    except ConfigError as e:
        err.print(f"[red]config error:[/red] {redact(str(e))}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    except (CollectError, StoreError, FileFormatError, SampleError, CandleValidationError, ValueError) as e:
        err.print(f"[red]error:[/red] {redact(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _store():
    from workbench.data.store import Store

    return Store.from_settings(settings())


def _print_frame(df: Any, title: str | None = None, max_rows: int = 200) -> None:
    if df.empty:
        out.print(f"{title + ': ' if title else ''}(none)")
        return
    table = Table(title=title, show_lines=False)
    for c in df.columns:
        table.add_column(str(c))
    for row in df.head(max_rows).itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    out.print(table)
    if len(df) > max_rows:
        out.print(f"... {len(df) - max_rows} more rows")


def _fmt(v: Any) -> str:
    import pandas as pd

    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


# ------------------------------------------------------------------------------------------------ init


@app.command()
def init(
    sample: Annotated[
        bool, typer.Option("--sample/--no-sample", help="Load the bundled Binance sample.")
    ] = False,
) -> None:
    """Create the data folder (and load the bundled sample with --sample)."""
    with _errors():
        s = settings()
        store = _store()
        out.print(f"data folder: {store.root}")
        if sample:
            from workbench.data.sample import load_sample

            for r in load_sample(store, s.sample_dir):
                out.print(f"  {r.key}: {r.rows_added} new rows ({r.rows_in} in file)")
            out.print("sample loaded (market data: Binance, see data/sample/README.md)")


# ------------------------------------------------------------------------------------------------ collect

ExchangeOpt = Annotated[str, typer.Option("--exchange", "-e", help="ccxt exchange id, e.g. binance.")]
SymbolsOpt = Annotated[list[str], typer.Option("--symbol", "-s", help="ccxt unified symbol; repeatable.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Start (ISO date/time UTC or epoch ms); default: continue.")
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="End, exclusive (default: now).")]


@contextmanager
def _collector(exchange: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from workbench.data.collect import Collector
    from workbench.data.exchanges import make_exchange

    s = settings()
    client = make_exchange(s, exchange)
    store = _store()
    show = s.collect.progress and err.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not show,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=max(total, 1))
            bar.update(tasks[what], completed=done, total=max(total, 1))

        yield Collector(client, store, s.collect, progress=progress)


@collect_app.command("ohlcv")
def collect_ohlcv(
    exchange: ExchangeOpt,
    symbol: SymbolsOpt,
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help="ccxt timeframe, e.g. 1m, 1h, 1d.")
    ] = "1h",
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Collect closed candles: paginated, incremental and resumable."""
    with _errors(), _collector(exchange) as col:
        for sym in symbol:
            report = col.ohlcv(sym, timeframe, since=since, until=until)
            out.print(report.summary())


@collect_app.command("trades")
def collect_trades(
    exchange: ExchangeOpt, symbol: SymbolsOpt, since: SinceOpt = None, until: UntilOpt = None
) -> None:
    """Collect public trades (incremental from the last stored trade)."""
    with _errors(), _collector(exchange) as col:
        for sym in symbol:
            out.print(col.trades(sym, since=since, until=until).summary())


@collect_app.command("orderbook")
def collect_orderbook(
    exchange: ExchangeOpt,
    symbol: SymbolsOpt,
    depth: Annotated[int, typer.Option(help="Levels per side.")] = 100,
    count: Annotated[int, typer.Option(help="Number of snapshots.")] = 1,
    interval: Annotated[float, typer.Option(help="Seconds between snapshots.")] = 1.0,
) -> None:
    """Store order-book snapshots."""
    with _errors(), _collector(exchange) as col:
        for sym in symbol:
            out.print(col.orderbook(sym, depth=depth, count=count, interval_s=interval).summary())


@collect_app.command("tickers")
def collect_tickers(exchange: ExchangeOpt, symbol: SymbolsOpt) -> None:
    """Store one ticker snapshot per symbol."""
    with _errors(), _collector(exchange) as col:
        for r in col.tickers(symbol):
            out.print(r.summary())


@collect_app.command("funding")
def collect_funding(
    exchange: ExchangeOpt, symbol: SymbolsOpt, since: SinceOpt = None, until: UntilOpt = None
) -> None:
    """Collect funding-rate history of perpetual swaps (e.g. BTC/USDT:USDT)."""
    with _errors(), _collector(exchange) as col:
        for sym in symbol:
            out.print(col.funding(sym, since=since, until=until).summary())


# ------------------------------------------------------------------------------------------------ data


@data_app.command("ls")
def data_ls(
    kind: Annotated[str, typer.Option(help="candles, trades, orderbook, tickers or funding.")] = "candles",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List stored series: exchange, symbol, timeframe, first, last, rows, gaps."""
    from workbench.data.audit import list_series

    with _errors():
        df = list_series(_store(), kind)
        if as_json:
            out.print_json(df.to_json(orient="records", date_format="iso"))
        else:
            _print_frame(df, title=f"{kind} in {_store().root}")


@data_app.command("audit")
def data_audit(
    exchange: Annotated[str | None, typer.Option("--exchange", "-e")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t")] = None,
    outlier_z: Annotated[
        float, typer.Option(help="Robust z-score above which a reverting spike is an outlier.")
    ] = 12.0,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Also write every finding to this CSV file.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when anything is found.")] = False,
) -> None:
    """Audit candles: gaps, duplicates, zero-volume filler bars, OHLC inconsistencies, outliers."""
    from workbench.data.audit import audit, audit_summary

    with _errors():
        store = _store()
        findings = audit(store, exchange, symbol, timeframe, outlier_z=outlier_z)
        summary = audit_summary(store, findings)
        if exchange:
            summary = summary[summary["exchange"] == exchange]
        if symbol:
            summary = summary[summary["symbol"] == symbol]
        if timeframe:
            summary = summary[summary["timeframe"] == timeframe]
        _print_frame(summary, title="audit summary")
        _print_frame(findings, title="findings", max_rows=50)
        if csv:
            findings.to_csv(csv, index=False)
            out.print(f"findings written to {csv}")
        if strict and not findings.empty:
            raise typer.Exit(1)


@data_app.command("import")
def data_import(
    path: Annotated[Path, typer.Argument(help="CSV (.csv/.csv.gz) or Parquet file.")],
    exchange: ExchangeOpt,
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")],
) -> None:
    """Import candles (columns: timestamp [ms or ISO], open, high, low, close, volume). All or nothing."""
    from workbench.data.files import import_candles

    with _errors():
        r = import_candles(_store(), path, exchange, symbol, timeframe)
        out.print(f"{r.key}: {r.rows_added} new, {r.rows_updated} updated rows from {path}")


@data_app.command("export")
def data_export(
    exchange: ExchangeOpt,
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output .csv, .csv.gz or .parquet.")],
    start: Annotated[str | None, typer.Option("--start")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Exclusive.")] = None,
) -> None:
    """Export candles with timestamp in UTC milliseconds."""
    from workbench.data.files import export_candles

    with _errors():
        n = export_candles(_store(), exchange, symbol, timeframe, out_path, start, end)
        out.print(f"{n} rows written to {out_path}")


@data_app.command("sql")
def data_sql(
    query: Annotated[
        str, typer.Argument(help="DuckDB SQL over views candles, trades, orderbook, tickers, funding.")
    ],
) -> None:
    """Query the store with DuckDB SQL."""
    with _errors():
        _print_frame(_store().sql(query), max_rows=1000)


# ------------------------------------------------------------------------------------------------ config


@config_app.command("show")
def config_show() -> None:
    """Print the resolved configuration (files + environment overrides) as JSON."""
    with _errors():
        s = settings()
        payload = json.loads(s.model_dump_json())
        payload["data_dir"] = str(s.data_dir)
        out.print_json(json.dumps(payload))


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
