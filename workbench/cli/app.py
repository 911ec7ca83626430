"""The ``workbench`` command line: the composition root that wires config, store and exchanges together."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workbench import __version__
from workbench.config import ConfigError, ConfigWarning, Settings, load_settings

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
check_app = typer.Typer(help="Checks of strategies (lookahead).", no_args_is_help=True)
app.add_typer(check_app, name="check")
models_app = typer.Typer(help="The model registry: list, inspect, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")
sentiment_app = typer.Typer(help="Sentiment models: train, evaluate, score text.", no_args_is_help=True)
app.add_typer(sentiment_app, name="sentiment")
patterns_app = typer.Typer(help="Chart and candlestick patterns.", no_args_is_help=True)
app.add_typer(patterns_app, name="patterns")
pipeline_app = typer.Typer(
    help="Run the notebook pipeline with papermill; runs keep lineage.", no_args_is_help=True
)
app.add_typer(pipeline_app, name="pipeline")

# wide tables when piped or captured (rich would otherwise wrap at 80 columns)
out = console = Console(width=None if sys.stdout.isatty() else 220)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 220)


class _State:
    config: Path | None = None
    settings: Settings | None = None


state = _State()


def settings() -> Settings:
    if state.settings is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigWarning)
            # config may not import ccxt: the known exchange ids come from the exchange layer
            state.settings = load_settings(state.config, exchange_ids=_exchange_ids())
        for w in caught:
            if issubclass(w.category, ConfigWarning):
                err.print(
                    f"[yellow]config warning:[/yellow] {escape(str(w.message))}",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        logging.basicConfig(
            level=state.settings.general.log_level,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        from workbench.secrets import env_secret_values, install_redaction

        install_redaction(env_secret_values(state.settings), names=state.settings.security.redact)
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
            help="Config folder, or a file loaded on top of its folder's files "
            "(default: nearest config/workbench.yml).",
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
    with _errors():
        settings()  # a bad config fails every command, also one that would not read it


def _exchange_ids() -> list[str]:
    """``ccxt.exchanges`` without importing ccxt (1-2 s) when it is not loaded yet: the list literal of its
    ``__init__.py``, read as text; the import is the fallback where that literal cannot be found."""
    import ast
    import importlib.util
    import re

    if "ccxt" not in sys.modules:
        try:
            spec = importlib.util.find_spec("ccxt")
            origin = spec.origin if spec is not None else None
            if origin:
                m = re.search(r"^exchanges\s*=\s*(\[[^\]]*\])", Path(origin).read_text(), re.MULTILINE)
                if m:
                    ids = ast.literal_eval(m.group(1))
                    if ids and all(isinstance(x, str) for x in ids):
                        return list(ids)
        except (OSError, ValueError, SyntaxError):
            pass
    from workbench.data.exchanges import exchange_ids

    return exchange_ids()


# (module, class) of the errors shown as one line; a module not imported yet cannot have raised its error,
# so nothing is imported for this (the collect and exchange modules import ccxt)
_USER_ERRORS = (
    ("workbench.data.collect", "CollectError"),
    ("workbench.data.store", "StoreError"),
    ("workbench.data.files", "FileFormatError"),
    ("workbench.data.sample", "SampleError"),
    ("workbench.types", "CandleValidationError"),
    ("workbench.strategies.base", "ParamError"),
    ("workbench.backtest.results", "ResultError"),
)


def _user_error(e: BaseException) -> bool:
    if isinstance(e, ValueError):
        return True
    for mod, name in _USER_ERRORS:
        m = sys.modules.get(mod)
        cls = getattr(m, name, None) if m is not None else None
        if cls is not None and isinstance(e, cls):
            return True
    return False


@contextmanager
def _errors():
    """Turn the workbench's own errors into one clear line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except ConfigError as e:
        from workbench.data.exchanges import redact

        err.print(
            f"[red]config error:[/red] {escape(redact(str(e)))}", highlight=False, markup=True, soft_wrap=True
        )
        raise typer.Exit(2) from None
    except Exception as e:
        if not _user_error(e):
            raise
        from workbench.data.exchanges import redact

        msg = str(e)
        pyd = sys.modules.get("pydantic")
        if pyd is not None and isinstance(e, pyd.ValidationError):  # a setting given on the command line
            from workbench.cli.output import describe_validation_error

            msg = describe_validation_error(e)  # in words, not pydantic's dump with its URL
        err.print(f"[red]error:[/red] {escape(redact(msg))}", highlight=False, soft_wrap=True)
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
            from workbench.data.sample import load_sample, sample_dir

            for r in load_sample(store, sample_dir(s)):
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


@data_app.command("verify")
def data_verify(
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Check parts written before checksums existed and add their checksums."),
    ] = False,
    drop_damaged: Annotated[
        bool,
        typer.Option(
            "--drop-damaged",
            help="Move damaged parts out of their series (to its damaged/ folder) and forget their periods' "
            "coverage, so that collect or import fetches them again.",
        ),
    ] = False,
) -> None:
    """Scrub the store: read every part whole and check it against its manifest. Exit 1 on any damage."""
    with _errors():
        rep = _store().verify(fix=fix, drop_damaged=drop_damaged)
        for p in rep.problems:  # whole paths, one per line (a table would cut them)
            out.print(
                f"damaged: {p['series']}: {p['file']}: {p['problem']}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        out.print(
            f"{rep.series} series, {rep.parts} parts, {rep.bytes / 2**20:.1f} MiB verified: "
            + (f"{len(rep.problems)} problem(s)" if rep.problems else "no problems")
        )
        if rep.fixed:
            out.print(f"{rep.fixed} part(s) without a checksum checked and given one")
        if rep.unverified:
            out.print(
                f"{rep.unverified} part(s) have no checksum (older workbench): run `workbench data verify --fix`"
            )
        if rep.dropped:
            out.print(f"{rep.dropped} damaged part(s) dropped: collect or import their periods again")
        if rep.problems:
            raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------ research

StrategyOpt = Annotated[
    str,
    typer.Option(
        "--strategy",
        help="A name (workbench strategies; built-in or from strategies.paths), FILE.py:CLASS or FILE.py.",
    ),
]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t")]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="First bar of the test (history before it warms up).")
]
EndOpt = Annotated[str | None, typer.Option("--end", help="End, exclusive.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value; repeatable.")]
FeesOpt = Annotated[
    float | None,
    typer.Option(help="Taker fee per fill, fraction of notional [default: trading.yml fees.taker]."),
]
SlipOpt = Annotated[
    float | None,
    typer.Option(help="Slippage, fraction of the open price [default: trading.yml slippage_bps / 10000]."),
]


def _direction(value: str) -> str:
    """``--direction`` checked on the command line, in words (not the settings model's validation dump)."""
    if value not in ("long", "short", "both"):
        import difflib

        close = difflib.get_close_matches(value, ["long", "short", "both"], n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise typer.BadParameter(f"{value!r} is not one of long, short, both{hint}")
    return value


DirectionOpt = Annotated[str, typer.Option(help="long, short or both.", callback=_direction)]


def _out(path: Path) -> Path:
    """An output file's path, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _params(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param {item!r}: expected name=value")
        k, _, v = item.partition("=")
        out[k.strip()] = v.strip()
    return out


def _strategy(spec: str):
    """The strategy class for ``--strategy``: built-in, user file, or a name from ``strategies.paths``."""
    from workbench.strategies.loader import load_strategy, search_paths

    return load_strategy(spec, search_paths(settings()))


def _market(exchange: str, symbols: list[str], timeframe: str):
    """The stored candles of ``symbols``; a missing series is an error that says what is stored, a timeframe
    stored only finer is resampled with a note on stderr (:func:`workbench.cli.output.load_candles`)."""
    from workbench.cli.output import load_candles

    store = _store()

    def note(text: str) -> None:
        err.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)

    frames = {s: load_candles(store, exchange, s, timeframe, note) for s in symbols}
    return frames[symbols[0]] if len(symbols) == 1 else frames


def _slice(data, start, end):
    import pandas as pd

    def cut(df):
        if start is not None:
            df = df[df.index >= pd.Timestamp(start, tz="UTC")]
        if end is not None:
            df = df[df.index < pd.Timestamp(end, tz="UTC")]
        return df

    return cut(data) if isinstance(data, pd.DataFrame) else {k: cut(v) for k, v in data.items()}


def _bt_config(**kw):
    """The backtest settings: costs from trading.yml unless given (one cost model for backtests and sessions)."""
    from workbench.backtest.engine import BacktestConfig

    return BacktestConfig.from_trading(settings().trading, **kw)


@app.command("strategies")
def strategies_cmd() -> None:
    """List the strategies and their parameters (defaults and search ranges)."""
    import pandas as pd

    from workbench.strategies import get_strategy, strategy_names
    from workbench.strategies.loader import discover, search_paths, strategy_source

    with _errors():
        user = discover(search_paths(settings()))
    classes = [get_strategy(n) for n in strategy_names()] + [c for c, _ in user.values()]
    rows = []
    for cls in sorted(classes, key=lambda c: c.name):
        name = cls.name
        space = cls.search_space()
        for p, f in cls.Params.model_fields.items():
            s = space.get(p, {})
            rows.append(
                {
                    "strategy": name,
                    "assets": cls.assets,
                    "param": p,
                    "default": f.default,
                    "range": f"{s.get('low')}..{s.get('high')}" if s else "",
                    "doc": f.description or "",
                    "source": strategy_source(cls),
                }
            )
    _print_frame(pd.DataFrame(rows), title="strategies")


@app.command()
def backtest(
    strategy: StrategyOpt,
    exchange: ExchangeOpt,
    symbol: SymbolsOpt,
    timeframe: TimeframeOpt = "1h",
    start: StartOpt = None,
    end: EndOpt = None,
    param: ParamOpt = None,
    fees: FeesOpt = None,
    slippage: SlipOpt = None,
    direction: DirectionOpt = "long",
    size: Annotated[
        float, typer.Option(help="Fraction of equity (or quote per asset with --notional).")
    ] = 1.0,
    notional: Annotated[
        bool, typer.Option(help="Size positions in quote currency instead of equity fractions.")
    ] = False,
    sl: Annotated[float | None, typer.Option(help="Stop-loss, fraction of the entry price.")] = None,
    tp: Annotated[float | None, typer.Option(help="Take-profit, fraction of the entry price.")] = None,
    trailing: Annotated[bool, typer.Option(help="Trail the stop-loss.")] = False,
    init_cash: Annotated[float, typer.Option(help="Starting capital, quote currency.")] = 10_000.0,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write metrics, equity and trades as JSON (raw numbers).")
    ] = None,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep the result under <data>/backtests/<id>/.")
    ] = True,
) -> None:
    """Backtest a strategy on stored candles (next-bar-open execution; see docs/user_guide.md).

    Prints the metrics beside buy and hold of the same symbols over the same bars, and stores the result
    (JSON and HTML report) under <data>/backtests/<id>/ (see `workbench backtests`)."""
    from workbench.backtest.benchmark import buy_and_hold_metrics
    from workbench.backtest.engine import run_backtest
    from workbench.cli.output import check_period, compare_table

    with _errors():
        cls = _strategy(strategy)
        strat = cls(**_params(param))
        cfg = _bt_config(  # the settings first: a bad option fails before any data is read
            fees=fees,
            slippage=slippage,
            direction=direction,
            size=size,
            size_type="notional" if notional else "fraction",
            sl_stop=sl,
            tp_stop=tp,
            trailing=trailing,
            init_cash=init_cash,
        )
        data = _market(exchange, symbol, timeframe)
        check_period(data, start, end)
        data = _slice(data, None, end)
        res = run_backtest(data, strat, cfg, start=start)
        bh = buy_and_hold_metrics(res.candles, res.start, res.end, cfg.init_cash)
        out.print(
            f"{res.strategy} {res.params} on {exchange} {', '.join(res.symbols)} {res.timeframe or timeframe}, "
            f"{res.start:%Y-%m-%d %H:%M} .. {res.end:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )
        out.print(
            compare_table(
                {"strategy": res.metrics, "buy and hold": bh},
                res.symbols,
                title=f"metrics; benchmark: {res.benchmark} (no costs)",
                beta_of=res.benchmark,
            )
        )
        if store:
            from workbench.cli.backtests import save_backtest

            saved = save_backtest(res, bh, data)
            out.print(
                f"stored as {saved.id} ({saved.path}); `workbench backtests show {saved.id}`", highlight=False
            )
        if json_out:
            res.save_json(_out(json_out))
            out.print(f"JSON written to {json_out}")
        if report:
            from workbench.viz.report import write_report

            write_report(res, _out(report), candles=data, strategy=strat)
            out.print(f"report written to {report}")


@app.command()
def sweep(
    strategy: StrategyOpt,
    exchange: ExchangeOpt,
    symbol: SymbolsOpt,
    grid: Annotated[
        list[str], typer.Option("--grid", "-g", help="name=start:stop:step (inclusive), name=a,b,c.")
    ],
    timeframe: TimeframeOpt = "1h",
    start: StartOpt = None,
    end: EndOpt = None,
    fees: FeesOpt = None,
    slippage: SlipOpt = None,
    direction: DirectionOpt = "long",
    metric: Annotated[str, typer.Option(help="Rank by this metric.")] = "sharpe",
    top: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every combination's metrics as JSON.")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a heatmap report.")] = None,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep the result under <data>/backtests/<id>/.")
    ] = True,
) -> None:
    """Evaluate every combination of a parameter grid (fused numba kernels for the built-ins).

    Prints the top combinations (formatted as in the reports; --json keeps raw numbers) and buy and hold of the
    same symbols over the same bars, and stores the result under <data>/backtests/<id>/."""
    import pandas as pd

    from workbench.backtest.benchmark import benchmark_name, buy_and_hold_metrics
    from workbench.backtest.sweep import parse_grid
    from workbench.backtest.sweep import sweep as run_sweep
    from workbench.cli.output import check_period, compare_table, format_frame_values
    from workbench.metricdefs import format_metric, quote_currency

    with _errors():
        cls = _strategy(strategy)
        g = parse_grid(grid, cls)
        cfg = _bt_config(fees=fees, slippage=slippage, direction=direction)
        # as in backtest: the strategy warms up on the bars before --start, the simulation starts there
        market = _market(exchange, symbol, timeframe)
        check_period(market, start, end)
        data = _slice(market, None, end)
        res = run_sweep(data, cls, g, cfg, metric=metric, start=start)
        cur = quote_currency(symbol)
        out.print(
            f"{res.n_valid} valid of {res.n_combinations} combinations in {res.seconds:.2f} s "
            f"({res.n_valid / max(res.seconds, 1e-9):,.0f}/s, engine {res.engine})"
        )
        _print_frame(format_frame_values(res.top(top), cur), title=f"top {top} by {metric}")
        bh_start = pd.Timestamp(start, tz="UTC") if start is not None else None
        bh = buy_and_hold_metrics(data, bh_start, None, cfg.init_cash)
        bench = benchmark_name(symbol)
        best = {k: v for k, v in res.best.items() if k != "params"}
        out.print(
            compare_table(
                {f"best by {metric}": best, "buy and hold": bh},
                symbol,
                title=f"best combination {res.best.get('params')} beside {bench} (no costs)",
                keys=[k for k in (*res.table.columns, "dsr_normal_approx") if k in best or k in bh],
            )
        )
        if "dsr_normal_approx" in res.best:
            out.print(
                f"best {res.best['params']}: Sharpe {format_metric('sharpe', res.best['sharpe'])}, deflated "
                f"Sharpe (for {res.n_valid} trials) {format_metric('dsr_normal_approx', res.best['dsr_normal_approx'])}"
            )
        if store:
            from workbench.cli.backtests import save_sweep

            saved = save_sweep(
                res, bh, bench, exchange=exchange, symbols=symbol, timeframe=timeframe, top=top
            )
            out.print(
                f"stored as {saved.id} ({saved.path}); `workbench backtests show {saved.id}`", highlight=False
            )
        if json_out:
            _out(json_out).write_text(json.dumps(res.to_dict(), indent=1, default=str))
            out.print(f"JSON written to {json_out}")
        if html:
            from workbench.viz.sweep import write_sweep_report

            write_sweep_report(res, _out(html), top=top)
            out.print(f"heatmap written to {html}")


@app.command()
def optimize(
    strategy: StrategyOpt,
    exchange: ExchangeOpt,
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: TimeframeOpt = "1h",
    trials: Annotated[int, typer.Option(help="Optuna trials per fold.")] = 50,
    walk_forward: Annotated[
        int, typer.Option("--walk-forward", help="Folds (train then test, in time order).")
    ] = 3,
    mode: Annotated[str, typer.Option(help="expanding or rolling training windows.")] = "expanding",
    storage: Annotated[str | None, typer.Option(help="Optuna RDB URL (default: ml.optuna.storage).")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    fees: FeesOpt = None,
    slippage: SlipOpt = None,
    direction: DirectionOpt = "long",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Fix a parameter: name=value.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Walk-forward Optuna optimisation: in-sample vs out-of-sample Sharpe and the deflated Sharpe, and the
    stitched out-of-sample result beside buy and hold of the same bars. A progress bar on a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workbench.backtest.benchmark import benchmark_name, buy_and_hold_metrics
    from workbench.backtest.optimize import optimize as run_opt
    from workbench.cli.output import check_period, compare_table, format_frame_values
    from workbench.metricdefs import format_metric, quote_currency

    with _errors():
        s = settings()
        cls = _strategy(strategy)
        fixed = cls.make_params(_params(param)).model_dump() if param else {}
        fixed = {k: fixed[k] for k in _params(param)}
        cfg = _bt_config(fees=fees, slippage=slippage, direction=direction)
        url = storage or s.optuna_storage
        market = _market(exchange, [symbol], timeframe)
        check_period(market, start, end)
        data = _slice(market, start, end)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
            transient=True,
        ) as bar:
            task = bar.add_task("walk-forward", total=walk_forward * trials)

            def progress(fold: int, folds: int, done: int, n: int) -> None:
                bar.update(task, completed=fold * n + done, description=f"fold {fold + 1}/{folds}, trials")

            res = run_opt(
                data,
                cls,
                trials=trials,
                folds=walk_forward,
                mode=mode,
                storage=url,
                fixed=fixed,
                config=cfg,
                progress=progress,
            )
        cur = quote_currency([symbol])
        _print_frame(format_frame_values(res.table(), cur), title=f"walk-forward ({mode}), storage {url}")
        oos = res.oos_equity.index
        bh = buy_and_hold_metrics(data, oos[0], oos[-1], cfg.init_cash)
        out.print(
            compare_table(
                {"out of sample (stitched)": res.oos_metrics, "buy and hold": bh},
                [symbol],
                title=f"out-of-sample bars {oos[0]:%Y-%m-%d %H:%M} .. {oos[-1]:%Y-%m-%d %H:%M} UTC beside "
                f"{benchmark_name([symbol])} (no costs)",
                beta_of=benchmark_name([symbol]),
            )
        )
        f2 = lambda k, v: format_metric(k, v, cur)  # noqa: E731
        out.print(
            f"mean Sharpe in-sample {f2('sharpe', res.is_sharpe)}, out-of-sample {f2('sharpe', res.oos_sharpe)} "
            f"(gap {f2('sharpe', res.gap)}); stitched OOS: Sharpe {f2('sharpe', res.oos_metrics['sharpe'])}, "
            f"return {f2('total_return', res.oos_metrics['total_return'])}, PSR {f2('psr', res.oos_metrics['psr'])}",
            highlight=False,
        )
        if json_out:
            _out(json_out).write_text(json.dumps(res.to_dict(), indent=1, default=str))
            out.print(f"JSON written to {json_out}")


@check_app.command("lookahead")
def check_lookahead_cmd(
    strategy: StrategyOpt,
    exchange: ExchangeOpt,
    symbol: SymbolsOpt,
    timeframe: TimeframeOpt = "1h",
    param: ParamOpt = None,
    cuts: Annotated[
        int, typer.Option(help="Cuts spread over the history, besides the cuts at every signal.")
    ] = 20,
    max_cuts: Annotated[
        int, typer.Option(help="At most this many cuts at signals (a random subset of signals beyond).")
    ] = 10_000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report (cuts, leaking bars) as JSON.")
    ] = None,
) -> None:
    """Fail (exit 1) if any past decision of the strategy changes when the future is cut off: cuts at every bar
    where the target changes (and the bar before it) plus spread cuts; lists the bars that leaked."""
    import pandas as pd

    from workbench.strategies.lookahead import check_lookahead

    with _errors():
        strat = _strategy(strategy)(**_params(param))
        rep = check_lookahead(strat, _market(exchange, symbol, timeframe), n_cuts=cuts, max_cuts=max_cuts)
        out.print(rep.summary(), highlight=False, soft_wrap=True)
        if rep.leaks:
            _print_frame(pd.DataFrame(rep.leaks), title=f"leaking bars ({rep.n_leaks})", max_rows=50)
        if json_out:
            _out(json_out).write_text(json.dumps(rep.to_dict(), indent=1))
            out.print(f"JSON written to {json_out}")
        if not rep.ok:
            raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------ ml


def _registry():
    from workbench.ml.registry import Registry

    return Registry.from_settings(settings())


def _ml_threads() -> None:
    """torch's threads for this process: ``ml.torch_threads``, set once before any model runs."""
    from workbench.ml.trainer import set_threads

    set_threads(settings().ml.torch_threads)


@app.command()
def train(
    model: Annotated[str, typer.Option("--model", help="mlp, gru, lstm or tcn.")],
    exchange: ExchangeOpt,
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: TimeframeOpt = "1h",
    target: Annotated[str, typer.Option(help="direction (up/down) or return.")] = "direction",
    horizon: Annotated[int, typer.Option(help="Label horizon, bars.")] = 24,
    window: Annotated[
        int | None, typer.Option(help="Bars per sample for sequence models (default 32).")
    ] = None,
    validation: Annotated[str, typer.Option(help="walk-forward or purged-kfold.")] = "walk-forward",
    folds: Annotated[int, typer.Option(help="Out-of-sample folds.")] = 5,
    trials: Annotated[
        int, typer.Option(help="Optuna trials (0: no tuning). Tunes on the first 70%, tests on the rest.")
    ] = 0,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping decides).")] = 30,
    start: StartOpt = None,
    end: EndOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Registry name (default: model-symbol-timeframe-target).")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Promote the new version (refused if it loses to a baseline out of sample).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --promote: promote even if it loses to a baseline.")
    ] = False,
    fees: FeesOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Train a price model: out-of-sample scores beside baselines, an OOS backtest, and a registered version."""

    from workbench.backtest.benchmark import buy_and_hold_metrics
    from workbench.backtest.oos import backtest_predictions
    from workbench.cli.output import compare_table, round_floats
    from workbench.ml.train import train_model

    with _errors():
        s = settings()
        _ml_threads()
        data = _slice(_market(exchange, [symbol], timeframe), start, end)
        res = train_model(
            data,
            arch=model,
            target=target,
            horizon=horizon,
            window=window,
            validation=validation,
            folds=folds,
            trials=trials,
            storage=s.optuna_storage,
            epochs=epochs,
            seed=s.ml.seed,
            registry=_registry(),
            name=name,
            promote=promote,
            force=force,
        )
        r = res.result
        t = r.table().reset_index(names="model")
        _print_frame(
            round_floats(t), title=f"out-of-sample ({validation}, {folds} folds, horizon {horizon} bars)"
        )
        _print_frame(round_floats(r.folds), title="folds")
        report = {
            "name": res.name,
            "version": res.version,
            "metrics": r.metrics,
            "tuned": res.tuned,
            "promoted": res.promoted,
            "promotion_note": res.promotion_note,
        }
        if target == "direction":
            bt = backtest_predictions(data, r.oos["prediction"], _bt_config(fees=fees, direction="both"))
            bh = buy_and_hold_metrics(data, bt.start, bt.end, bt.config.init_cash)
            out.print(
                compare_table(
                    {"ml strategy (OOS only)": bt.metrics, "buy and hold (same bars)": bh},
                    [symbol],
                    title=f"backtest on out-of-sample predictions {bt.start:%Y-%m-%d} .. {bt.end:%Y-%m-%d}",
                    keys=(
                        "total_return",
                        "sharpe",
                        "max_drawdown",
                        "beta",
                        "n_trades",
                        "win_rate",
                        "exposure",
                    ),
                    beta_of=bt.benchmark,
                )
            )
            report["oos_backtest"] = {"ml": bt.metrics, "buy_and_hold": bh}
        console.print(f"registered {res.name} {res.version}" + (" (promoted)" if res.promoted else ""))
        if json_out:
            _out(json_out).write_text(json.dumps(report, indent=1, default=str))
        if res.promotion_note and res.promoted:
            err.print(f"[yellow]warning:[/yellow] {res.promotion_note}", highlight=False, soft_wrap=True)
        elif res.promotion_note:
            err.print(
                f"[red]error:[/red] {res.promotion_note}; --force promotes it anyway",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)


@app.command()
def predict(
    model: Annotated[str, typer.Option("--model", help="Registry name.")],
    exchange: ExchangeOpt,
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: TimeframeOpt = "1h",
    version: Annotated[str, typer.Option(help="promoted (default), latest or vNNNN.")] = "promoted",
    last: Annotated[int, typer.Option(help="Show the last N predictions.")] = 10,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write all predictions to CSV.")] = None,
) -> None:
    """Score stored candles with a registered model (the training-time feature pipeline)."""
    import pandas as pd

    from workbench.ml.predict import PredictionService

    with _errors():
        _ml_threads()
        svc = PredictionService.from_registry(_registry(), model, version)
        p = svc.predict_batch(_market(exchange, [symbol], timeframe))
        _print_frame(
            pd.DataFrame({"time": p.index, "prediction": p.to_numpy()}).dropna().tail(last),
            title=f"{model} {svc.version} ({svc.target}, decided at each bar's close)",
        )
        if csv:
            p.rename("prediction").to_csv(_out(csv), index_label="time")


@models_app.command("ls")
def models_ls() -> None:
    """Every registered model version."""
    with _errors():
        _print_frame(_registry().ls(), title="models")


@models_app.command("show")
def models_show(name: str, version: Annotated[str | None, typer.Option()] = None) -> None:
    """A version's metadata: lineage, hyperparameters, out-of-sample metrics."""
    with _errors():
        out.print_json(json.dumps(_registry().meta(name, version), default=str))


@models_app.command("promote")
def models_promote(name: str, version: str) -> None:
    """Make VERSION the one strategies and the prediction service load."""
    with _errors():
        r = _registry()
        r.promote(name, version)
        out.print(f"{name}: {r.promoted(name)} promoted")


@models_app.command("rollback")
def models_rollback(name: str) -> None:
    """Promote again the version that was promoted before the current one."""
    with _errors():
        out.print(f"{name}: rolled back to {_registry().rollback(name)}")


def _sentiment_path(model: str) -> Path:
    """Where older versions saved a trained sentiment model (still read by `sentiment score`)."""
    return settings().data_dir / "sentiment" / f"{model}.joblib"


def _sentiment_name(model: str) -> str:
    """The registry name of a sentiment model trained by `workbench sentiment train --model MODEL`."""
    return f"sentiment-{model}"


@sentiment_app.command("train")
def sentiment_train(
    model: Annotated[
        str,
        typer.Option(
            help="default (crypto_news: TF-IDF + crypto cues + LR), tfidf_char, tfidf, vader, minilm_tfidf, "
            "minilm_finetuned or minilm_ensemble (the best on the tweets; about 20 minutes on 2 cores)"
        ),
    ] = "default",
    baselines: Annotated[
        bool, typer.Option(help="Also evaluate the majority class, VADER and the TF-IDF baseline.")
    ] = True,
) -> None:
    """Train on the shipped labelled financial tweets (train split), evaluate on the validation and test splits,
    and store the model as a new version of `sentiment-MODEL` in the model registry."""
    import pandas as pd

    from workbench.ml.sentiment import (
        compare_models,
        evaluate,
        load_dataset,
        make_model,
        register_sentiment_model,
    )

    with _errors():
        # the sentiment models size their own torch threads (workbench.ml.sentiment); ml.torch_threads is
        # for the price and volatility models
        tr, va = load_dataset("train"), load_dataset("valid")
        models = {model: make_model(model)}
        if baselines:
            models = {
                "majority": make_model("majority"),
                "vader": make_model("vader"),
                "tfidf (baseline)": make_model("tfidf"),
                **models,
            }
        table = compare_models(models, tr["text"], tr["label"], va["text"], va["label"])
        _print_frame(
            table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table,
            title=f"validation split ({len(va)} texts)",
        )
        te = load_dataset("test")
        ev = evaluate(models[model], te["text"], te["label"])
        out.print(
            f"{model} on the test split ({len(te)} texts): accuracy {ev['accuracy']:.3f}, macro-F1 {ev['macro_f1']:.3f}"
        )
        valid_ev = evaluate(models[model], va["text"], va["label"])
        name = _sentiment_name(model)
        version = register_sentiment_model(
            _registry(), name, models[model], tr, metrics={"valid": valid_ev, "test": ev}
        )
        out.print(f"registered {name} {version} (workbench models ls; promote with workbench models promote)")


@sentiment_app.command("score")
def sentiment_score(
    texts: Annotated[list[str], typer.Argument(help="Headlines or posts to score.")],
    model: Annotated[
        str, typer.Option(help="A model saved by `workbench sentiment train`, or vader.")
    ] = "default",
) -> None:
    """Score texts: P(bullish) - P(bearish) in [-1, 1], and the most likely label."""
    import pandas as pd

    from workbench.ml.sentiment import LABELS, load_model, make_model

    with _errors():
        path, registry = _sentiment_path(model), _registry()
        if model == "vader":
            m = make_model("vader")
        elif registry.versions(_sentiment_name(model)):
            m, _ = registry.load_artifact(_sentiment_name(model), None, kind="sentiment")
        elif path.is_file():
            m = load_model(path)
        else:
            raise ValueError(
                f"no trained sentiment model {model!r} in the registry: run `workbench sentiment train --model {model}`"
            )
        proba = m.predict_proba(texts)
        _print_frame(
            pd.DataFrame(
                {"text": texts, "score": m.score(texts), "label": [LABELS[i] for i in proba.argmax(axis=1)]}
            ),
            title=f"sentiment ({model})",
        )


@patterns_app.command("scan")
def patterns_scan(
    exchange: ExchangeOpt,
    symbol: Annotated[str, typer.Option("--symbol", "-s")],
    timeframe: TimeframeOpt = "1h",
    start: StartOpt = None,
    end: EndOpt = None,
    evaluate: Annotated[
        bool, typer.Option(help="Also evaluate what each pattern predicted, in and out of sample.")
    ] = True,
    split: Annotated[float, typer.Option(help="In-sample fraction for the evaluation.")] = 0.7,
    last: Annotated[int, typer.Option(help="Show the last N detections.")] = 20,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write every detection to CSV.")] = None,
) -> None:
    """Detect chart patterns (double tops/bottoms, head and shoulders, triangles, flags) from confirmed swing
    points, causally, and evaluate each pattern and TA-Lib candlestick pattern out of sample."""
    from workbench.features.patterns import detect_chart_patterns, evaluate_patterns

    with _errors():
        c = _slice(_market(exchange, [symbol], timeframe), start, end)
        found = detect_chart_patterns(c)
        cols = [x for x in ("time", "pattern", "direction", "start", "level", "target") if x in found.columns]
        _print_frame(
            found[cols].tail(last), title=f"chart patterns on {symbol} {timeframe} ({len(found)} found)"
        )
        if csv:
            found.to_csv(_out(csv), index=False)
        if evaluate:
            ev = evaluate_patterns(c, split=split)
            oos = ev[(ev["period"] == "out_of_sample")]
            oos = oos[oos["count"] >= 5].sort_values(["horizon", "edge"], ascending=[True, False])
            keep = [
                x
                for x in (
                    "kind",
                    "pattern",
                    "horizon",
                    "count",
                    "hit_rate",
                    "base_hit_rate",
                    "edge",
                    "edge_z",
                )
                if x in oos.columns
            ]
            _print_frame(
                oos[keep].head(40),
                title=f"out of sample (last {1 - split:.0%}): patterns with >= 5 detections",
            )


# ------------------------------------------------------------------------------------------------ pipeline

PipelineOpt = Annotated[
    Path | None,
    typer.Option("--pipeline", help="Pipeline file (default: pipeline.yml in the config folder)."),
]


def _pipeline_spec(path: Path | None):
    from workbench.pipeline import PipelineSpec, default_pipeline_file

    return PipelineSpec.load(path or default_pipeline_file(settings()))


def _stage_progress(name: str, status: str, seconds: float | None) -> None:
    icon = {"running": "[cyan]>[/cyan]", "succeeded": "[green]ok[/green]", "failed": "[red]FAILED[/red]"}[
        status
    ]
    err.print(f"{icon} {name}" + (f" ({seconds:.1f} s)" if seconds is not None else ""))


def _pipeline_errors():
    from workbench.pipeline import PipelineError

    return PipelineError


@pipeline_app.command("run")
def pipeline_run(
    pipeline: PipelineOpt = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (YAML value); repeatable.")
    ] = None,
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to run (default: all).")] = None,
    timeout: Annotated[int, typer.Option(help="Seconds per cell before a stage fails.")] = 1800,
) -> None:
    """Execute the stage notebooks into data/runs/<run_id>/ with a manifest of the run's lineage."""
    from workbench.pipeline import parse_overrides, run_pipeline

    with _errors():
        try:
            overrides = parse_overrides(_params(param))
            m = run_pipeline(
                settings(),
                _pipeline_spec(pipeline),
                overrides=overrides,
                stages=stages.split(",") if stages else None,
                timeout=timeout,
                on_stage=_stage_progress,
            )
        except _pipeline_errors() as e:
            err.print(f"[red]pipeline failed:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        run_dir = settings().data_dir / "runs" / m["run_id"]
        out.print(f"run {m['run_id']} succeeded: {run_dir}")
        for name, st in m["stages"].items():
            out.print(f"  {name:<10} {st['seconds']:>7.1f} s  {Path(st['executed']).with_suffix('.html')}")
        if m.get("promoted"):
            out.print(f"promoted: {', '.join(m['promoted'])}")
        for label, reason in (m.get("not_promoted") or {}).items():
            err.print(f"[yellow]not promoted:[/yellow] {label}: {reason}", highlight=False, soft_wrap=True)


@pipeline_app.command("resume")
def pipeline_resume(run_id: str, pipeline: PipelineOpt = None) -> None:
    """Restart a failed run from its failed stage, with the same parameters."""
    from workbench.pipeline import resume_pipeline

    with _errors():
        try:
            spec = _pipeline_spec(pipeline) if pipeline else None  # default: the run's own pipeline file
            m = resume_pipeline(settings(), spec, run_id, on_stage=_stage_progress)
        except _pipeline_errors() as e:
            err.print(f"[red]pipeline failed:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        out.print(f"run {m['run_id']} {m['status']}")


@pipeline_app.command("ls")
def pipeline_ls() -> None:
    """Runs, newest last."""
    import pandas as pd

    from workbench.pipeline import list_runs

    with _errors():
        rows = [
            {
                "run_id": r["run_id"],
                "status": r["status"],
                "started": r["started"],
                "finished": r.get("finished"),
                "stages": ", ".join(f"{k}:{v['status']}" for k, v in r["stages"].items()),
            }
            for r in list_runs(settings())
        ]
        _print_frame(pd.DataFrame(rows), title="pipeline runs")


@pipeline_app.command("show")
def pipeline_show(run_id: str) -> None:
    """A run's manifest."""
    with _errors():
        p = settings().data_dir / "runs" / run_id / "manifest.json"
        if not p.is_file():
            raise ValueError(f"no run {run_id!r} (workbench pipeline ls)")
        out.print_json(p.read_text())


@pipeline_app.command("schedule")
def pipeline_schedule(
    cron: Annotated[str, typer.Option(help="Cron expression (minute hour day month weekday).")] = "0 * * * *",
    pipeline: Annotated[
        Path | None, typer.Option(help="Pipeline file for the scheduled run (default: as pipeline run).")
    ] = None,
    install: Annotated[bool, typer.Option(help="Append the line to the user's crontab.")] = False,
) -> None:
    """Print (or install) a cron line and a systemd timer that run the pipeline since the last run."""
    import subprocess

    from workbench.pipeline import schedule_lines

    with _errors():
        try:
            lines = schedule_lines(settings(), cron, pipeline, sys.executable)
        except _pipeline_errors() as e:
            err.print(f"[red]error:[/red] {e}", highlight=False)
            raise typer.Exit(1) from None
        out.print("# crontab line (crontab -e):", highlight=False)
        out.print(lines["cron"], highlight=False, soft_wrap=True)
        out.print("\n# or systemd: ~/.config/systemd/user/workbench-pipeline.service", highlight=False)
        out.print(lines["service"], highlight=False, soft_wrap=True)
        out.print(
            "# ~/.config/systemd/user/workbench-pipeline.timer (systemctl --user enable --now workbench-pipeline.timer)",
            highlight=False,
        )
        out.print(lines["timer"], highlight=False, soft_wrap=True)
        if install:
            current = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
            if lines["cron"] in current:
                out.print("already installed")
                return
            subprocess.run(["crontab", "-"], input=current + lines["cron"] + "\n", text=True, check=True)
            out.print("installed in the user's crontab")


# ------------------------------------------------------------------------------------------------ config


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (files + environment overrides, paths resolved) as JSON."""
    with _errors():
        out.print_json(json.dumps(settings().effective()))


def main() -> None:  # console-script entry point
    import gc

    # what was imported lives as long as the process: leave it out of every later collection (a full one walked
    # these ~10^5 objects each time; building a stored result's 10^5 equity points paid that twice over)
    gc.freeze()
    app()


if __name__ == "__main__":
    main()
